"""Comparing theory models: PSIS-LOO over rows, exact leave-one-architecture-out
(LOAO) over architectures, stacking weights for both, and the blind predictions
that the LOAO folds make along the way.

Every theory predicts the same observable, log eta_c (log Q and log c_sharp are
log eta_c shifted by measured-at-init quantities, a shift with unit Jacobian), so
their predictive densities are comparable.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from ..schema import label
from .fit import Fit, FitOptions, TheoryFitter, is_nested, resolved_inference
from .models import DEFAULT_THEORIES, get_theory
from .predict import predict_architecture

PARETO_K_HIGH = 0.7
NESTED_NOTE = ("nested table: no context is seen on two architectures, so the context scale "
               "tau_gamma and the noise sigma are not separately identified (only "
               "tau_gamma^2 + sigma^2 is); a crossed design separates them")


def psis_loo(fit: Fit) -> dict:
    """PSIS-LOO of a fit on its rows: elpd, its standard error, p_loo, Pareto k."""
    import arviz as az

    theory = get_theory(fit.theory)
    loglik = theory.pointwise_loglik(fit.flat(), fit.data)
    if not theory.parameters:
        # nothing fitted (linear0): each row's leave-one-out density is its density,
        # exactly; there is nothing to importance-sample, so no Pareto k
        pointwise = loglik[0]
        return {"elpd": float(pointwise.sum()),
                "se": float(np.sqrt(len(pointwise)) * pointwise.std(ddof=1))
                if len(pointwise) > 1 else np.nan,
                "p": 0.0, "pointwise": pointwise, "pareto_k_max": np.nan,
                "n_pareto_k_high": 0}
    chains, draws = next(iter(fit.posterior.values())).shape[:2]
    idata = az.from_dict(posterior={"sigma": fit.posterior["sigma"]},
                         log_likelihood={"y": loglik.reshape(chains, draws, -1)})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # high Pareto k is reported, not warned about
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k)
    return {"elpd": float(loo.elpd_loo), "se": float(loo.se), "p": float(loo.p_loo),
            "pointwise": np.asarray(loo.loo_i), "pareto_k_max": float(k.max()),
            "n_pareto_k_high": int((k > PARETO_K_HIGH).sum())}


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Stacking of predictive distributions (Yao et al. 2018): the weights w on the
    simplex maximising sum_u log sum_k w_k exp(lpd[k, u]), lpd (models, units)."""
    lpd = np.asarray(lpd, dtype=float)
    n = lpd.shape[0]
    if n == 1:
        return np.ones(1)

    def objective(z):
        log_w = np.log(softmax(np.append(z, 0.0)))
        return -logsumexp(lpd + log_w[:, None], axis=0).sum()

    result = minimize(objective, np.zeros(n - 1), method="BFGS")
    return softmax(np.append(result.x, 0.0))


def _heldout_lpd(fit: Fit, table: xr.Dataset, held_out: str) -> float:
    """Density of the held-out rows under a fit on the other architectures:
    log p(rows | others), exact for a fit by quadrature (``exact_heldout_lpd``),
    else the Monte Carlo log mean_s p(rows | theta_s)."""
    from .exact import exact_heldout_lpd

    value = exact_heldout_lpd(fit, table, held_out)
    if value is not None:
        return float(value)
    theory = get_theory(fit.theory)
    arch = list(table.model.values).index(held_out)
    row = table.sel(model=held_out)
    observed = np.flatnonzero(row.observed.values & np.isfinite(row[theory.target].values))
    density = theory.heldout_logdensity(fit.flat(), fit.data, arch, observed,
                                        row[theory.target].values[observed])
    return float(logsumexp(density) - np.log(len(density)))


def evaluate_theory(theory: str, table: xr.Dataset, options: FitOptions,
                    attrs: dict | None = None) -> dict:
    """Fit one theory on every architecture and once without each: PSIS-LOO, the
    LOAO densities, and a blind prediction per architecture."""
    fitter = TheoryFitter(theory, table, options)
    full = fitter.fit()
    result = {"theory": theory, "full": full, "loo": psis_loo(full), "folds": {}}
    for held_out in table.model.values[table.observed.any("context").values]:
        fit = fitter.fit(held_out=str(held_out))
        result["folds"][str(held_out)] = {
            "lpd": _heldout_lpd(fit, table, str(held_out)), "diagnostics": fit.diagnostics,
            "prediction": predict_architecture(fit, table, str(held_out), options.seed,
                                               attrs)}
    return result


@dataclass
class Evaluation:
    """Every theory's full fit, PSIS-LOO, LOAO densities and blind predictions."""

    table: xr.Dataset
    results: dict   # theory -> evaluate_theory's result

    def comparison(self) -> xr.Dataset:
        """Per theory: PSIS-LOO elpd, LOAO elpd (se = sd of the fold lpds * sqrt(#folds)),
        the fold lpds, stacking weights on both, and whether every fit passed the gate."""
        theories = list(self.results)
        held_out = list(next(iter(self.results.values()))["folds"])
        loo = [self.results[t]["loo"] for t in theories]
        lpd = np.array([[self.results[t]["folds"][h]["lpd"] for h in held_out] for t in theories])
        pointwise = np.array([r["pointwise"] for r in loo])
        passed = [self.results[t]["full"].passed and all(
            f["diagnostics"]["passed"] for f in self.results[t]["folds"].values()) for t in theories]
        ds = xr.Dataset(
            {"elpd_loo": ("theory", [r["elpd"] for r in loo]),
             "elpd_loo_se": ("theory", [r["se"] for r in loo]),
             "p_loo": ("theory", [r["p"] for r in loo]),
             "pareto_k_max": ("theory", [r["pareto_k_max"] for r in loo]),
             "n_pareto_k_high": ("theory", [r["n_pareto_k_high"] for r in loo]),
             "elpd_loao": ("theory", lpd.sum(axis=1)),
             "elpd_loao_se": ("theory", lpd.std(axis=1, ddof=1) * np.sqrt(lpd.shape[1])
                              if lpd.shape[1] > 1 else np.full(len(theories), np.nan)),
             "lpd_loao": (("theory", "held_out"), lpd),
             "stacking_loo": ("theory", stacking_weights(pointwise)),
             "stacking_loao": ("theory", stacking_weights(lpd)),
             "fits_passed": ("theory", passed),
             "sampler": ("theory", [self.results[t]["full"].sampler for t in theories])},
            coords={"theory": theories, "held_out": held_out})
        label(ds, "comparison")
        ds.attrs["nested"] = int(is_nested(self.table))
        ds.attrs["inference"] = ",".join(f"{t}:{self.results[t]['full'].inference}"
                                         for t in theories)
        return ds

    def predictions(self) -> dict[tuple[str, str], xr.Dataset]:
        """The blind prediction of each (theory, held-out architecture) fold."""
        return {(t, h): fold["prediction"] for t, r in self.results.items()
                for h, fold in r["folds"].items()}

    def fits(self) -> list[Fit]:
        """Each theory's fit on every architecture."""
        out = []
        for result in self.results.values():
            out.append(result["full"])
        return out

    def fold_diagnostics(self) -> list[tuple[str, str, dict]]:
        """(theory, held-out architecture, sampler diagnostics) of every LOAO fold."""
        return [(t, h, fold["diagnostics"]) for t, r in self.results.items()
                for h, fold in r["folds"].items()]


def evaluate(table: xr.Dataset, theories=DEFAULT_THEORIES, options: FitOptions = FitOptions(),
             workers: int = 2, attrs: dict | None = None) -> Evaluation:
    """Evaluate several theories, the sampled ones in parallel worker processes
    (each compiles its own model once and re-samples it for every fold)."""
    # Only NUTS fits are worth a worker process; exact ones take seconds.
    sampled = [t for t in theories
               if get_theory(t).sampled and resolved_inference(t, options) == "nuts"]
    results = {}
    if workers > 1 and len(sampled) > 1:
        # The heaviest model (the most parameters) first, so that it does not
        # finish last alone.
        order = sorted(sampled, key=lambda t: -len(get_theory(t).parameters))
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(order)),
                                                    mp_context=context) as pool:
            futures = {t: pool.submit(evaluate_theory, t, table, options, attrs) for t in order}
            results.update({t: f.result() for t, f in futures.items()})
    for theory in theories:
        if theory not in results:
            results[theory] = evaluate_theory(theory, table, options, attrs)
    return Evaluation(table, {t: results[t] for t in theories})


def comparison_table(ds: xr.Dataset) -> str:
    """The comparison Dataset as a text table, best LOAO elpd first, with each
    theory's diagnostics gate and its count of rows with high Pareto k."""
    lines = [f"{'theory':12s} {'elpd_loo':>9s} {'se':>6s} {'p_loo':>6s} {'k_max':>6s} "
             f"{'elpd_loao':>10s} {'se':>6s} {'w_loo':>6s} {'w_loao':>7s}  gate"]
    order = np.argsort(-ds.elpd_loao.values)
    for i in order:
        row = ds.isel(theory=i)
        flags = "passed" if bool(row.fits_passed) else "FAILED"
        if int(row.n_pareto_k_high):
            flags += f", {int(row.n_pareto_k_high)} rows with Pareto k > {PARETO_K_HIGH}"
        lines.append(f"{str(row.theory.values):12s} {float(row.elpd_loo):9.2f} "
                     f"{float(row.elpd_loo_se):6.2f} {float(row.p_loo):6.2f} "
                     f"{float(row.pareto_k_max):6.2f} {float(row.elpd_loao):10.2f} "
                     f"{float(row.elpd_loao_se):6.2f} {float(row.stacking_loo):6.2f} "
                     f"{float(row.stacking_loao):7.2f}  {flags}")
    if int(ds.attrs.get("nested", 0)):
        lines.append(NESTED_NOTE)
    if "linear0" in ds.theory.values:
        base = float(ds.elpd_loao.sel(theory="linear0"))
        beaten = [str(t) for t in ds.theory.values
                  if t != "linear0" and float(ds.elpd_loao.sel(theory=t)) > base]
        lines.append("LOAO ELPD above the zero-parameter baseline linear0: "
                     + (", ".join(beaten) if beaten else "none"))
    return "\n".join(lines)


BASELINE = "linear0"


def side_by_side(comparison: xr.Dataset, scores: list[dict]) -> list[dict]:
    """Per theory, its LOAO ELPD (and its difference from linear0's, with the
    standard error of the pointwise differences where the folds line up) beside its
    blind error over the held-out architectures: the median relative error of the
    architecture's eta_c, and how many 94% HDIs covered it. The difference's se is
    sqrt(#folds) times the sd of the per-fold differences. The 2 / lambda0 anchor
    comes last, with its blind error only (it has no density). Theories are in
    order of LOAO ELPD, best first."""
    by_theory: dict[str, list[dict]] = {}
    for score in scores:
        by_theory.setdefault(score["theory"], []).append(score)
    rows = []
    base = (comparison.sel(theory=BASELINE) if BASELINE in comparison.theory.values else None)
    for i in np.argsort(-comparison.elpd_loao.values):
        row = comparison.isel(theory=i)
        name = str(row.theory.values)
        mine = by_theory.get(name, [])
        entry = {"theory": name, "elpd_loao": float(row.elpd_loao),
                 "elpd_loao_se": float(row.elpd_loao_se), "fits_passed": bool(row.fits_passed),
                 "blind_median_error": (float(np.median([s["relative_error"] for s in mine]))
                                        if mine else np.nan),
                 "blind_covered": sum(bool(s["covered"]) for s in mine), "blind_n": len(mine)}
        if base is not None and "lpd_loao" in comparison:
            diff = row.lpd_loao.values - base.lpd_loao.values   # the same folds
            diff = diff[np.isfinite(diff)]
            entry["delta_elpd"] = float(diff.sum())
            entry["delta_se"] = float(np.sqrt(len(diff)) * diff.std(ddof=1)) if len(diff) > 1 \
                else np.nan
        elif base is not None:
            entry["delta_elpd"] = float(row.elpd_loao - base.elpd_loao)
            entry["delta_se"] = np.nan
        rows.append(entry)
    anchors = [s for s in scores if np.isfinite(s.get("anchor_relative_error", np.nan))]
    seen = {}
    for s in anchors:   # the anchor is the same in every theory's score: one per architecture
        seen.setdefault(s["held_out"], s["anchor_relative_error"])
    if seen:
        rows.append({"theory": "2/lambda0", "elpd_loao": np.nan, "elpd_loao_se": np.nan,
                     "fits_passed": None, "blind_median_error": float(np.median(list(seen.values()))),
                     "blind_covered": 0, "blind_n": 0, "delta_elpd": np.nan, "delta_se": np.nan})
    return rows


def side_by_side_table(comparison: xr.Dataset, scores: list[dict]) -> str:
    """``side_by_side`` as a text table, with a closing line that says which theories
    beat linear0 in both LOAO ELPD and blind error (or that none does)."""
    rows = side_by_side(comparison, scores)
    def number(value, spec):
        return format(value, spec) if np.isfinite(value) else "-"

    lines = [f"{'theory':12s} {'elpd_loao':>10s} {'se':>6s} {'vs linear0':>11s} {'se':>6s} "
             f"{'blind error':>12s} {'HDI covers':>11s}  gate"]
    for r in rows:
        covers = f"{r['blind_covered']}/{r['blind_n']}" if r["blind_n"] else "-"
        error = 100 * r["blind_median_error"]
        lines.append(f"{r['theory']:12s} {number(r['elpd_loao'], '.2f'):>10s} "
                     f"{number(r['elpd_loao_se'], '.2f'):>6s} "
                     f"{number(r.get('delta_elpd', np.nan), '+.2f'):>11s} "
                     f"{number(r.get('delta_se', np.nan), '.2f'):>6s} "
                     f"{number(error, '.1f') + ('%' if np.isfinite(error) else ''):>12s} "
                     f"{covers:>11s}  "
                     + {True: "passed", False: "FAILED", None: "no fit"}[r["fits_passed"]])
    base = next((r for r in rows if r["theory"] == BASELINE), None)
    if base is None:
        lines.append("no linear0 in the comparison: no theory can be said to beat the baseline")
    else:
        both = [r["theory"] for r in rows if r["theory"] not in (BASELINE, "2/lambda0")
                and r.get("delta_elpd", np.nan) > 0
                and r["blind_median_error"] < base["blind_median_error"]]
        lines.append("beats linear0 in both LOAO ELPD and blind median error: "
                     + (", ".join(both) if both else "none"))
    return "\n".join(lines)
