"""Fitting the theory models on simulated tables with known answers: recovery and
the diagnostics gate."""

import numpy as np
import pytest

from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.models import THEORIES
from phantom_theory.theory.simulate import simulate_table
from tests.phantom_theory.theory.conftest import FAST, KNOWN, known_params, within_hdi


def test_a_well_specified_fit_passes_the_gate(hier_fit):
    _, _, _, fit = hier_fit
    assert fit.passed, fit.describe()
    assert fit.sampler in ("nutpie", "pymc")


@pytest.mark.parametrize("name", ["mu", "tau", "sigma", "tau_gamma"])
def test_m_hier_recovers_its_parameters(hier_fit, name):
    _, _, _, fit = hier_fit
    assert within_hdi(fit.flat()[name], KNOWN[name])


def test_m_hier_recovers_the_architecture_levels(hier_fit):
    table, truth, _, fit = hier_fit
    theory = THEORIES["hier"]
    levels, _ = theory.effects(fit.flat(), fit.data, np.random.default_rng(0))
    true_levels = KNOWN["mu"] + truth["alpha"]
    covered = [within_hdi(levels[:, a], true_levels[a]) for a in range(len(true_levels))]
    assert sum(covered) >= len(covered) - 1


def test_the_class_model_recovers_planted_classes():
    params = known_params(6, 8, seed=4, delta=1.0, weight=0.5, b_mean=np.array([0.0, 2.5]),
                          b_sigma=0.2, lora_logit=np.array([-3.0, 3.0]))
    table, truth = simulate_table("class", 6, 8, seed=5, params=params)
    fit = TheoryFitter("class", table, FAST).fit()
    probability = THEORIES["class"].class_probability(fit.flat(), fit.data).mean(axis=0)
    assert np.all((probability > 0.9) == (truth["classes"] == 1)), probability
    success = THEORIES["class"].lora_success_probability(fit.flat()).mean(axis=0)
    assert success[0] < 0.3 < 0.7 < success[1]


def test_a_starved_sampler_fails_the_gate_with_its_numbers():
    table, _ = simulate_table("hier", 4, 6, seed=6, params=known_params(4, 6))
    fit = TheoryFitter("hier", table, FitOptions(draws=30, tune=30, chains=2)).fit()
    assert not fit.passed
    assert fit.diagnostics["min_ess_bulk"] < 400 and "r_hat" in fit.describe()
