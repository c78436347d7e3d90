"""Sampling the theory models: nutpie when it is installed (compiled once, then
re-sampled on each fold's data without recompiling), PyMC's NUTS otherwise, and
exact draws for the conjugate baseline. Every fit passes a diagnostics gate
(r_hat, bulk ESS, divergences) or is marked failed with its numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import PhantomError
from ..schema import SCHEMA_ATTR, SCHEMAS
from .models import FitData, Theory, fit_data, get_theory

# pytensor warns at import that pip's numpy has no BLAS it can link; the models
# here are small, and nutpie's numba backend does not use pytensor's BLAS at all.
logging.getLogger("pytensor.configdefaults").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


@dataclass(frozen=True)
class FitOptions:
    """Sampler settings and the diagnostics gate (r_hat <= rhat_max, bulk ESS >=
    ess_min, divergences <= max_divergences). sampler: "auto" (nutpie if
    installed, else PyMC), "nutpie" or "pymc"."""

    draws: int = field(default=1000, metadata={"help": "posterior draws per chain (>= 1)"})
    tune: int = field(default=1500, metadata={"help": "tuning steps per chain (>= 0)"})
    chains: int = field(default=4, metadata={"help": "independent chains (>= 1)"})
    target_accept: float = field(default=0.99, metadata={
        "help": "NUTS target acceptance, in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler and the predictions"})
    sampler: str = field(default="auto", metadata={"help": "auto (nutpie if installed), nutpie "
                                                           "or pymc"})
    rhat_max: float = field(default=1.01, metadata={"help": "gate: largest r_hat accepted"})
    ess_min: float = field(default=400.0, metadata={"help": "gate: smallest bulk ESS accepted"})
    max_divergences: int = field(default=0, metadata={"help": "gate: most divergences accepted"})

    def __post_init__(self):
        checks = [(self.draws >= 1, f"draws must be at least 1, not {self.draws}"),
                  (self.tune >= 0, f"tune must be at least 0, not {self.tune}"),
                  (self.chains >= 1, f"chains must be at least 1, not {self.chains}"),
                  (0 < self.target_accept < 1,
                   f"target_accept must lie strictly between 0 and 1, not {self.target_accept}"),
                  (self.seed >= 0, f"the seed must be a non-negative integer, not {self.seed}"),
                  (self.rhat_max >= 1, f"rhat_max must be at least 1, not {self.rhat_max}"),
                  (self.ess_min >= 0 and self.max_divergences >= 0,
                   "ess_min and max_divergences must be non-negative")]
        for ok, message in checks:
            if not ok:
                raise PhantomError(message)
        if self.sampler not in ("auto", "nutpie", "pymc"):
            raise PhantomError(f"sampler must be auto, nutpie or pymc, not {self.sampler!r}")
        if self.sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise PhantomError("the nutpie sampler is not installed: pip install nutpie")


def resolved_sampler(options: FitOptions) -> str:
    """The sampler a fit uses: ``options.sampler``, with "auto" resolved to nutpie when
    it is installed and PyMC otherwise."""
    if options.sampler != "auto":
        return options.sampler
    return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"


@dataclass
class Fit:
    """One fit: flat posterior draws and the gate's verdict."""

    theory: str
    held_out: str | None
    posterior: dict                 # name -> (chains, draws, ...) arrays
    diagnostics: dict
    sampler: str
    seconds: float
    data: FitData = field(repr=False, default=None)

    @property
    def passed(self) -> bool:
        """Whether the fit passed the diagnostics gate."""
        return self.diagnostics["passed"]

    def flat(self) -> dict:
        """The posterior as name -> (samples, ...) arrays, chains and draws merged."""
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.posterior.items()}

    def describe(self) -> str:
        """One line: theory, held-out architecture, max r_hat, min bulk ESS,
        divergences, sampler and seconds."""
        d = self.diagnostics
        return (f"{self.theory}{' without ' + self.held_out if self.held_out else ''}: "
                f"max r_hat {d['max_rhat']:.4f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
                f"{d['divergences']} divergences ({self.sampler}, {self.seconds:.1f} s)")


def diagnose(posterior: dict, names, divergences: int, options: FitOptions) -> dict:
    """The diagnostics gate over the parameters ``names``: max r_hat, min bulk ESS,
    divergences, and passed when r_hat <= rhat_max, ESS >= ess_min and divergences
    <= max_divergences."""
    import arviz as az

    dataset = az.convert_to_dataset({n: posterior[n] for n in names})
    rhat = float(az.rhat(dataset).to_array().max())
    ess = float(az.ess(dataset, method="bulk").to_array().min())
    return {"max_rhat": rhat, "min_ess_bulk": ess, "divergences": int(divergences),
            "passed": bool(rhat <= options.rhat_max and ess >= options.ess_min
                           and divergences <= options.max_divergences)}


def choose_parameterization(table, target: str = "log_q", levels: bool = True) -> bool:
    """Whether to centre the context effects.

    The model is the same either way; only the sampler's geometry changes. The
    effects are centred when the data pin them down: their estimated variance
    exceeds the sampling variance of one effect's estimate (reliability above one
    half), from a method-of-moments fit of the model's own layout (the additive
    two-way layout, or contexts alone when ``levels`` is False: there the
    architectures' differences are noise). Where the effects are small against
    the noise the centred form has a funnel and the non-centred one does not;
    where they are large, the reverse.
    """
    y = np.where(table.observed.values, table[target].values, np.nan)
    rows = np.isfinite(y)
    if rows.sum() < 3:
        return True
    grand = np.nanmean(y)
    a = np.zeros(y.shape[0])
    g = np.zeros(y.shape[1])
    for _ in range(50):   # alternating means: least squares with missing cells
        if levels:
            a = np.nan_to_num(np.nanmean(y - grand - g[None, :], axis=1))
        g = np.nan_to_num(np.nanmean(y - grand - a[:, None], axis=0))
    residual = (y - grand - a[:, None] - g[None, :])[rows]
    n_arch, n_ctx = rows.any(1).sum(), rows.any(0).sum()
    dof = max(rows.sum() - (n_arch if levels else 1) - n_ctx + 1, 1)
    s2 = max(float((residual**2).sum() / dof), 1e-12)
    per_ctx = rows.sum(0)[rows.any(0)].mean()
    tau_gamma2 = np.var(g[rows.any(0)], ddof=1) - s2 / per_ctx if n_ctx > 1 else 0.0
    return bool(tau_gamma2 > s2 / per_ctx)


def coords_of(table) -> dict:
    """The table's ``model`` and ``context`` coordinates as lists of names."""
    return {"model": [str(m) for m in table.model.values],
            "context": [str(c) for c in table.context.values]}


class TheoryFitter:
    """Fits one theory to a table, again and again on different folds. The model
    is built and compiled once with all rows; a fold swaps its data in, and so
    does another table of the same layout (``with_table``)."""

    def __init__(self, theory: str | Theory, table, options: FitOptions = FitOptions()):
        self.theory = get_theory(theory)
        self.table, self.options = table, options
        self.sampler = "exact" if not self.theory.sampled else resolved_sampler(options)
        self.centred = choose_parameterization(table, self.theory.target,
                                               self.theory.has_levels)
        self._model = self._compiled = None

    def with_table(self, table) -> TheoryFitter:
        """A fitter of the same theory on another table with the same architectures
        and contexts, sharing this one's compiled model (no recompiling: the
        replicates of a calibration study, say). The compiled graph has one
        parameterisation, so the new table is sampled in the geometry chosen for
        the table this fitter was built on."""
        for dim in ("model", "context"):
            if list(table[dim].values) != list(self.table[dim].values):
                raise PhantomError(f"with_table needs the same {dim}s as the fitter's table "
                                   f"({', '.join(map(str, self.table[dim].values))}); "
                                   "build a new TheoryFitter for another layout")
        other = copy.copy(self)
        other.table = table
        return other

    def _prepare(self, data: FitData) -> None:
        if self._model is not None or not self.theory.sampled:
            return
        self._model = self.theory.model(data, coords_of(self.table))
        if self.sampler == "nutpie":
            import nutpie

            self._compiled = nutpie.compile_pymc_model(self._model)

    def fit(self, held_out: str | None = None, seed: int | None = None) -> Fit:
        """Fit without ``held_out``'s outcome rows (its at-init quantities stay)."""
        options = self.options
        seed = options.seed if seed is None else seed
        data = dataclasses.replace(fit_data(self.table, held_out, self.theory.target),
                                   centred_contexts=self.centred)
        started = time.perf_counter()
        if not self.theory.sampled:
            posterior = self.theory.exact_posterior(data, options.chains, options.draws, seed)
            divergences = 0
        else:
            self._prepare(data)
            posterior, divergences = self._sample(data, seed)
        names = [n for n in self.theory.parameters if n in posterior]
        diagnostics = diagnose(posterior, names, divergences, options)
        return Fit(self.theory.name, held_out, posterior, diagnostics, self.sampler,
                   time.perf_counter() - started, data)

    def _sample(self, data: FitData, seed: int):
        options = self.options
        arrays = self.theory.data_arrays(data)
        if self.sampler == "nutpie":
            import nutpie

            # Data the compiled graph does not use (an index only read for its
            # shape, say) was optimised away; swap in what remains.
            compiled = self._compiled.with_data(
                **{k: v for k, v in arrays.items() if k in self._compiled.shared_data})
            idata = nutpie.sample(compiled, draws=options.draws, tune=options.tune,
                                  chains=options.chains, seed=seed, progress_bar=False,
                                  target_accept=options.target_accept)
        else:
            import pymc as pm

            with self._model:
                pm.set_data(arrays)
                idata = pm.sample(draws=options.draws, tune=options.tune, chains=options.chains,
                                  target_accept=options.target_accept, random_seed=seed,
                                  progressbar=False, compute_convergence_checks=False)
        posterior = {name: idata.posterior[name].values for name in idata.posterior.data_vars}
        return posterior, int(idata.sample_stats["diverging"].sum())


def fit_to_dataset(fit: Fit, table, options: FitOptions, attrs: dict):
    """An ArviZ InferenceData of the fit, with provenance on every group."""
    import arviz as az

    theory = get_theory(fit.theory)
    idata = az.from_dict(posterior=fit.posterior, coords=theory.model_coords(coords_of(table)),
                         dims={k: list(v) for k, v in theory.param_dims.items()
                               if k in fit.posterior})
    meta = {SCHEMA_ATTR: SCHEMAS["fit"], "theory": fit.theory,
            "held_out": fit.held_out or "", "sampler": fit.sampler,
            "centred_contexts": int(fit.data.centred_contexts),
            "seconds": round(fit.seconds, 3),
            **{f"diagnostics_{k}": (int(v) if isinstance(v, bool) else v)
               for k, v in fit.diagnostics.items()},
            **{f"fit_{k}": v for k, v in asdict(options).items()}, **attrs}
    idata.posterior.attrs.update(meta)
    return idata
