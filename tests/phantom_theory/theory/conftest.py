"""What the theory tests share: sampler settings, simulated tables with known
parameters, and one M_hier fit of such a table (fitted once per session)."""

import numpy as np
import pytest

from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.simulate import simulate_table

FAST = FitOptions(draws=500, tune=700, chains=2, target_accept=0.95)
KNOWN = {"mu": 0.3, "tau_gamma": 0.4, "sigma": 0.15, "tau": 0.5}


def known_params(n_models, n_contexts, seed=1, **extra):
    rng = np.random.default_rng(seed)
    return {**KNOWN, "z_gamma": rng.normal(0, 1, n_contexts),
            "z_alpha": rng.normal(0, 1, n_models), **extra}


@pytest.fixture(scope="session")
def hier_fit():
    table, truth = simulate_table("hier", 6, 10, seed=2, params=known_params(6, 10))
    fitter = TheoryFitter("hier", table, FitOptions(seed=3))
    return table, truth, fitter, fitter.fit()


def within_hdi(draws, value):
    from phantom_theory.theory.predict import hdi

    low, high = hdi(draws)
    return low <= value <= high
