"""Time of the full leave-one-architecture-out pipeline, and nutpie against PyMC's
default NUTS, in one run.

    python benchmarks/fit_pipeline.py [--workers 2] [--skip-pymc]

1. The pipeline: a table simulated from M_class (5 architectures in two classes x
   10 contexts),
   three theory models (M_universal, M_hier, M_class) plus the conjugate sharpness
   baseline: each fitted on all architectures and once without each, with PSIS-LOO,
   the LOAO densities and a blind prediction per fold. Wall time, compiles included.
2. M_hier on the same table, 4 chains: the smallest bulk ESS per second of
   nutpie (sampling only, and with its compile) against pm.sample with PyMC's own
   NUTS (its whole call, which includes PyMC's compile), and their ratio.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from phantom_theory.theory.compare import evaluate
from phantom_theory.theory.fit import FitOptions, TheoryFitter, diagnose
from phantom_theory.theory.models import DEFAULT_THEORIES, fit_data
from phantom_theory.theory.simulate import simulate_table

warnings.filterwarnings("ignore")
os.environ.setdefault("PYTENSOR_FLAGS", "compiledir=.cache/pytensor")
os.environ.setdefault("NUMBA_CACHE_DIR", ".cache/numba")

PARAMS = {"mu": 0.3, "tau": 0.3, "tau_gamma": 0.4, "sigma": 0.15, "delta": 1.0, "weight": 0.5,
          "b_sigma": 0.2}


def main():
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-pymc", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    params = {**PARAMS, "z_alpha": rng.normal(size=5), "z_gamma": rng.normal(size=10),
              "b_mean": np.array([0.0, 2.0]), "lora_logit": np.array([-2.0, 2.0])}
    table, _ = simulate_table("class", 5, 10, seed=2, params=params)
    options = FitOptions(inference="nuts")   # the sampler pipeline; exact fits need no benchmark

    started = time.perf_counter()
    evaluation = evaluate(table, DEFAULT_THEORIES, options, workers=args.workers)
    pipeline = time.perf_counter() - started
    comparison = evaluation.comparison()
    passed = ", ".join(f"{t} {'passed' if p else 'FAILED'}" for t, p in
                       zip(comparison.theory.values, comparison.fits_passed.values, strict=True))
    print(f"LOAO pipeline, 5 x 10 simulated table, 3 theory models + baseline, "
          f"{args.workers} worker(s): {pipeline:.1f} s wall ({passed})")

    fitter = TheoryFitter("hier", table, FitOptions(sampler="nutpie", inference="nuts"))
    started = time.perf_counter()
    fitter._prepare(fit_data(table))
    compile_seconds = time.perf_counter() - started
    fit = fitter.fit()
    nutpie_rate = fit.diagnostics["min_ess_bulk"] / fit.seconds
    nutpie_total = fit.diagnostics["min_ess_bulk"] / (fit.seconds + compile_seconds)
    print(f"nutpie, M_hier: min bulk ESS {fit.diagnostics['min_ess_bulk']:.0f} in "
          f"{fit.seconds:.2f} s sampling ({nutpie_rate:.0f} ESS/s), compile {compile_seconds:.1f} s "
          f"({nutpie_total:.0f} ESS/s with it)")
    if args.skip_pymc:
        return
    import pymc as pm

    model = fitter.theory.model(fit.data, {"model": list(map(str, table.model.values)),
                                           "context": list(map(str, table.context.values))})
    started = time.perf_counter()
    with model:
        idata = pm.sample(draws=options.draws, tune=options.tune, chains=options.chains,
                          target_accept=options.target_accept, random_seed=0, progressbar=False,
                          compute_convergence_checks=False, nuts_sampler="pymc")
    seconds = time.perf_counter() - started
    posterior = {name: idata.posterior[name].values for name in idata.posterior.data_vars}
    names = [n for n in fitter.theory.diagnosed if n in posterior]
    pymc = diagnose(posterior, names, int(idata.sample_stats["diverging"].sum()), options)
    pymc_rate = pymc["min_ess_bulk"] / seconds
    print(f"PyMC NUTS, M_hier: min bulk ESS {pymc['min_ess_bulk']:.0f} in {seconds:.2f} s "
          f"({pymc_rate:.0f} ESS/s, its compile included)")
    print(f"ESS/s ratio nutpie / PyMC: {nutpie_rate / pymc_rate:.1f}x sampling only, "
          f"{nutpie_total / pymc_rate:.1f}x with nutpie's compile")


if __name__ == "__main__":
    main()
