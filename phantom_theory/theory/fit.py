"""Fitting the theory models: exact inference where the theory is linear-Gaussian
given a few scales (``exact``: quadrature over the scales, iid draws), NUTS
otherwise or on request (nutpie when it is installed, compiled once per
parameterisation and re-sampled on each fold's data without recompiling; PyMC's
NUTS otherwise), and exact draws for the conjugate baseline. Every fit passes a
diagnostics gate (NUTS: r_hat, bulk ESS, divergences; exact: the grid's
convergence) or is marked failed with its numbers.

Every choice a fit makes comes from the rows it may see: the held-out
architecture's outcomes are masked before any row is read (``fit_data``), and the
sampler's parameterisation, the exact grid and whether the rows are nested are
decided on the fold's own rows.
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
from .exact import GRID_POINTS, ExactPosterior, supports
from .models import FitData, Theory, fit_data, get_theory

# pytensor warns at import that pip's numpy has no BLAS it can link; the models
# here are small, and nutpie's numba backend does not use pytensor's BLAS at all.
logging.getLogger("pytensor.configdefaults").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


INFERENCES = ("exact", "nuts")


@dataclass(frozen=True)
class FitOptions:
    """Inference settings and the diagnostics gate. inference: "exact" (quadrature,
    for the theories that support it; the others are sampled) or "nuts". NUTS:
    sampler "auto" (nutpie if installed, else PyMC), "nutpie" or "pymc", gated by
    r_hat <= rhat_max, bulk ESS >= ess_min, divergences <= max_divergences. Exact:
    grid_points cells per axis, gated by the grid's convergence (<= grid_tol) and
    ESS (the iid draws) >= ess_min."""

    inference: str = field(default="exact", metadata={
        "help": "exact (quadrature over the scales, iid draws; theories that support "
                "it, the others by NUTS) or nuts"})
    draws: int = field(default=1000, metadata={"help": "posterior draws per chain (>= 1)"})
    tune: int = field(default=1500, metadata={"help": "NUTS tuning steps per chain (>= 0)"})
    chains: int = field(default=4, metadata={"help": "independent chains (>= 1)"})
    target_accept: float = field(default=0.99, metadata={
        "help": "NUTS target acceptance, in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler and the predictions"})
    sampler: str = field(default="auto", metadata={
        "help": "the NUTS sampler (inference = nuts): auto (nutpie if installed), nutpie or pymc"})
    rhat_max: float = field(default=1.01, metadata={"help": "gate: largest r_hat accepted"})
    ess_min: float = field(default=400.0, metadata={"help": "gate: smallest bulk ESS accepted"})
    max_divergences: int = field(default=0, metadata={"help": "gate: most divergences accepted"})
    grid_points: int = field(default=GRID_POINTS, metadata={
        "help": "exact inference: grid cells per scale axis (even, >= 8)"})
    grid_tol: float = field(default=0.01, metadata={
        "help": "exact gate: largest change of a posterior mean (in sds) or sd (relative) "
                "when the grid is halved, and largest sd the draws gain within their cells"})

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
        if self.inference not in INFERENCES:
            raise PhantomError(f"inference must be exact or nuts, not {self.inference!r}")
        if self.grid_points < 8 or self.grid_points % 2:
            raise PhantomError(f"grid_points must be an even number of at least 8, not "
                               f"{self.grid_points}")
        if not 0 < self.grid_tol < 1:
            raise PhantomError(f"grid_tol must lie strictly between 0 and 1, not {self.grid_tol}")
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


def resolved_inference(theory: str | Theory, options: FitOptions,
                       data: FitData | None = None) -> str:
    """The inference a fit uses: "exact" when asked for and the theory supports it (on
    ``data``'s rows, when given), or when the theory is not sampled at all (its
    conjugate posterior); "nuts" otherwise."""
    theory = get_theory(theory)
    if not theory.sampled:
        return "exact"
    return "exact" if options.inference == "exact" and supports(theory, data) else "nuts"


@dataclass
class Fit:
    """One fit: flat posterior draws and the gate's verdict. ``inference`` says how it
    was fitted (exact or nuts), ``nested`` whether its rows are nested (no context on
    two architectures), and ``exact`` holds the quadrature of an exact fit (its
    held-out densities: ``exact.exact_heldout_lpd``)."""

    theory: str
    held_out: str | None
    posterior: dict                 # name -> (chains, draws, ...) arrays
    diagnostics: dict
    sampler: str
    seconds: float
    data: FitData = field(repr=False, default=None)
    inference: str = "nuts"
    nested: bool = False
    exact: ExactPosterior | None = field(repr=False, default=None)

    @property
    def passed(self) -> bool:
        """Whether the fit passed the diagnostics gate."""
        return self.diagnostics["passed"]

    def flat(self) -> dict:
        """The posterior as name -> (samples, ...) arrays, chains and draws merged."""
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.posterior.items()}

    def describe(self) -> str:
        """One line: theory, held-out architecture, the gate's numbers (max r_hat, min
        bulk ESS and divergences; for an exact fit the grid's change on halving, the
        draws' in-cell spread and the iid draws), sampler and seconds."""
        d = self.diagnostics
        name = f"{self.theory}{' without ' + self.held_out if self.held_out else ''}"
        nested = ", nested rows" if self.nested else ""
        if "grid_rel_change" in d:
            return (f"{name}: exact over {d['grid_cells']} grid cells, change on halving "
                    f"{100 * d['grid_rel_change']:.2f}%, in-cell spread "
                    f"{100 * d['grid_jitter']:.2f}%, {d['min_ess_bulk']:.0f} iid draws"
                    f"{nested} ({self.sampler}, {self.seconds:.1f} s)")
        return (f"{name}: max r_hat {d['max_rhat']:.4f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
                f"{d['divergences']} divergences{nested} ({self.sampler}, {self.seconds:.1f} s)")


def diagnose(posterior: dict, names, divergences: int, options: FitOptions) -> dict:
    """The diagnostics gate over the parameters ``names``: max r_hat, min bulk ESS,
    divergences, and passed when r_hat <= rhat_max, ESS >= ess_min and divergences
    <= max_divergences."""
    import arviz as az

    if not names:   # nothing was fitted (linear0): nothing can fail to converge
        return {"max_rhat": float("nan"), "min_ess_bulk": float("nan"),
                "divergences": int(divergences), "passed": True}
    dataset = az.convert_to_dataset({n: posterior[n] for n in names})
    rhat = float(az.rhat(dataset).to_array().max())
    ess = float(az.ess(dataset, method="bulk").to_array().min())
    return {"max_rhat": rhat, "min_ess_bulk": ess, "divergences": int(divergences),
            "passed": bool(rhat <= options.rhat_max and ess >= options.ess_min
                           and divergences <= options.max_divergences)}


def choose_parameterization(data: FitData, levels: bool = True) -> bool:
    """Whether to centre the context effects, decided on ``data``: the rows of the fold
    being fitted, the held-out architecture's already masked out.

    The model is the same either way; only the sampler's geometry changes. The
    effects are centred when the data pin them down: their estimated variance
    exceeds the sampling variance of one effect's estimate (reliability above one
    half), from a method-of-moments fit of the model's own layout (the additive
    two-way layout, or contexts alone when ``levels`` is False: there the
    architectures' differences are noise). Where the effects are small against
    the noise the centred form has a funnel and the non-centred one does not;
    where they are large, the reverse.
    """
    y = np.full((data.n_models, data.n_contexts), np.nan)
    y[data.arch, data.context] = data.y
    rows = np.isfinite(y)
    if rows.sum() < 3:
        return True
    grand = np.nanmean(y)
    a = np.zeros(y.shape[0])
    g = np.zeros(y.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # rows or columns without cells
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


def is_nested(table, target: str = "log_q", held_out: str | None = None) -> bool:
    """Whether the table's outcome rows (without ``held_out``'s) are nested: no context
    is seen on two architectures. There the context scale tau_gamma and the noise
    sigma cannot be told apart (only tau_gamma^2 + sigma^2 is identified)."""
    return fit_data(table, held_out, target).nested


def coords_of(table) -> dict:
    """The table's ``model`` and ``context`` coordinates as lists of names."""
    return {"model": [str(m) for m in table.model.values],
            "context": [str(c) for c in table.context.values]}


# Compiled models by (theory, priors, layout, sampler, parameterisation): a fitter on
# another table of the same layout, or a fold that needs the other geometry, reuses
# them. The graph reads its rows as data, so it holds nothing of any table.
_COMPILED: dict[tuple, tuple] = {}


class TheoryFitter:
    """Fits one theory to a table, again and again on different folds. A fold's
    rows decide its inference details (the NUTS parameterisation, the exact grid);
    the NUTS model is compiled once per parameterisation and layout, and a fold
    swaps its data in, as does another table of the same layout (``with_table``)."""

    def __init__(self, theory: str | Theory, table, options: FitOptions = FitOptions()):
        self.theory = get_theory(theory)
        self.table, self.options = table, options
        self.inference = resolved_inference(self.theory, options)
        self.sampler = "exact" if self.inference == "exact" else resolved_sampler(options)

    def with_table(self, table) -> TheoryFitter:
        """A fitter of the same theory on another table with the same architectures
        and contexts, sharing the compiled models (no recompiling: the replicates of
        a calibration study, say)."""
        for dim in ("model", "context"):
            if list(table[dim].values) != list(self.table[dim].values):
                raise PhantomError(f"with_table needs the same {dim}s as the fitter's table "
                                   f"({', '.join(map(str, self.table[dim].values))}); "
                                   "build a new TheoryFitter for another layout")
        other = copy.copy(self)
        other.table = table
        return other

    def _compiled(self, data: FitData):
        """(pm.Model, nutpie compiled model or None) for ``data``'s parameterisation."""
        coords = coords_of(self.table)
        sampler = resolved_sampler(self.options)
        key = (type(self.theory).__qualname__, self.theory.name, repr(self.theory.priors),
               tuple(coords["model"]), tuple(coords["context"]), sampler,
               data.centred_contexts)
        if key not in _COMPILED:
            model = self.theory.model(data, coords)
            compiled = None
            if sampler == "nutpie":
                import nutpie

                compiled = nutpie.compile_pymc_model(model)
            _COMPILED[key] = (model, compiled)
        return _COMPILED[key]

    def fit(self, held_out: str | None = None, seed: int | None = None) -> Fit:
        """Fit without ``held_out``'s outcome rows (its at-init quantities stay)."""
        options = self.options
        seed = options.seed if seed is None else seed
        data = fit_data(self.table, held_out, self.theory.target)
        inference = resolved_inference(self.theory, options, data)
        started = time.perf_counter()
        quadrature = None
        if not self.theory.sampled:
            posterior = self.theory.exact_posterior(data, options.chains, options.draws, seed)
            names = [n for n in self.theory.parameters if n in posterior]
            diagnostics = diagnose(posterior, names, 0, options)
            sampler = "exact"
        elif inference == "exact":
            quadrature = ExactPosterior(self.theory, data, options.grid_points)
            posterior = quadrature.draw(options.chains, options.draws, seed)
            diagnostics = quadrature.diagnostics(options.grid_tol, options.ess_min,
                                                 options.chains * options.draws)
            sampler = "exact"
        else:
            data = dataclasses.replace(data, centred_contexts=choose_parameterization(
                data, self.theory.has_levels))
            posterior, divergences = self._sample(data, seed)
            names = [n for n in self.theory.parameters if n in posterior]
            diagnostics = diagnose(posterior, names, divergences, options)
            sampler = resolved_sampler(options)
        return Fit(self.theory.name, held_out, posterior, diagnostics, sampler,
                   time.perf_counter() - started, data, inference, data.nested, quadrature)

    def _sample(self, data: FitData, seed: int):
        options = self.options
        model, compiled = self._compiled(data)
        arrays = self.theory.data_arrays(data)
        if compiled is not None:
            import nutpie

            # Data the compiled graph does not use (an index only read for its
            # shape, say) was optimised away; swap in what remains.
            compiled = compiled.with_data(
                **{k: v for k, v in arrays.items() if k in compiled.shared_data})
            idata = nutpie.sample(compiled, draws=options.draws, tune=options.tune,
                                  chains=options.chains, seed=seed, progress_bar=False,
                                  target_accept=options.target_accept)
        else:
            import pymc as pm

            with model:
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
            "inference": fit.inference, "nested": int(fit.nested),
            "centred_contexts": int(fit.data.centred_contexts),
            "seconds": round(fit.seconds, 3),
            **{f"diagnostics_{k}": (int(v) if isinstance(v, bool) else v)
               for k, v in fit.diagnostics.items()},
            **{f"fit_{k}": v for k, v in asdict(options).items()}, **attrs}
    idata.posterior.attrs.update(meta)
    return idata
