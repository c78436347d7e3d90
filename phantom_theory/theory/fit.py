"""Sampling the theory models: nutpie when it is installed (compiled once, then
re-sampled on each fold's data without recompiling), PyMC's NUTS otherwise, and
exact draws for the conjugate baseline. Every fit passes a diagnostics gate
(r_hat, bulk ESS, divergences) or is marked failed with its numbers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field

from ..errors import PhantomError
from .theories import THEORIES, FitData, Theory, choose_parameterization, fit_data

# pytensor warns at import that pip's numpy has no BLAS it can link; the models
# here are small, and nutpie's numba backend does not use pytensor's BLAS at all.
logging.getLogger("pytensor.configdefaults").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


@dataclass(frozen=True)
class FitOptions:
    """Sampler settings and the diagnostics gate (r_hat <= rhat_max, bulk ESS >=
    ess_min, divergences <= max_divergences). sampler: "auto" (nutpie if
    installed, else PyMC), "nutpie" or "pymc"."""

    draws: int = 1000
    tune: int = 1500
    chains: int = 4
    target_accept: float = 0.99
    seed: int = 0
    sampler: str = "auto"
    rhat_max: float = 1.01
    ess_min: float = 400.0
    max_divergences: int = 0

    def __post_init__(self):
        if self.sampler not in ("auto", "nutpie", "pymc"):
            raise PhantomError(f"sampler must be auto, nutpie or pymc, not {self.sampler!r}")
        if self.sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise PhantomError("the nutpie sampler is not installed: pip install nutpie")


def resolved_sampler(options: FitOptions) -> str:
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
        return self.diagnostics["passed"]

    def flat(self) -> dict:
        """name -> (samples, ...) with chains and draws merged."""
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.posterior.items()}

    def describe(self) -> str:
        d = self.diagnostics
        return (f"{self.theory}{' without ' + self.held_out if self.held_out else ''}: "
                f"max r_hat {d['max_rhat']:.4f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
                f"{d['divergences']} divergences ({self.sampler}, {self.seconds:.1f} s)")


def diagnose(posterior: dict, names, divergences: int, options: FitOptions) -> dict:
    import arviz as az

    dataset = az.convert_to_dataset({n: posterior[n] for n in names})
    rhat = float(az.rhat(dataset).to_array().max())
    ess = float(az.ess(dataset, method="bulk").to_array().min())
    return {"max_rhat": rhat, "min_ess_bulk": ess, "divergences": int(divergences),
            "passed": bool(rhat <= options.rhat_max and ess >= options.ess_min
                           and divergences <= options.max_divergences)}


def coords_of(table) -> dict:
    return {"model": [str(m) for m in table.model.values],
            "context": [str(c) for c in table.context.values]}


class TheoryFitter:
    """Fits one theory to a table, again and again on different folds. The model
    is built and compiled once with all rows; a fold swaps its data in."""

    def __init__(self, theory: str | Theory, table, options: FitOptions = FitOptions()):
        self.theory = THEORIES[theory] if isinstance(theory, str) else theory
        self.table, self.options = table, options
        self.sampler = "exact" if not self.theory.sampled else resolved_sampler(options)
        self.centred = choose_parameterization(table, self.theory.target,
                                               self.theory.has_levels)
        self._model = self._compiled = None

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
        names = [n for n in self.theory.diagnosed if n in posterior]
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

    coords = coords_of(table)
    dims = {"gamma": ["context"], "z_gamma": ["context"],
            "b_mean": ["class"], "lora_logit": ["class"]}
    idata = az.from_dict(posterior=fit.posterior, coords={**coords, "class": ["class_0", "class_1"]},
                         dims={k: v for k, v in dims.items() if k in fit.posterior})
    meta = {"phantom_schema": "phantom-theory/fit/1", "theory": fit.theory,
            "held_out": fit.held_out or "", "sampler": fit.sampler,
            "centred_contexts": int(fit.data.centred_contexts),
            "seconds": round(fit.seconds, 3),
            **{f"diagnostics_{k}": (int(v) if isinstance(v, bool) else v)
               for k, v in fit.diagnostics.items()},
            **{f"fit_{k}": v for k, v in asdict(options).items()}, **attrs}
    idata.posterior.attrs.update(meta)
    return idata
