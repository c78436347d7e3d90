"""Fitting the theory models on simulated tables with known answers: recovery, the
diagnostics gate of both inferences, and choices made on the fold's own rows."""

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import (
    FitOptions,
    TheoryFitter,
    choose_parameterization,
    fit_to_dataset,
    is_nested,
    resolved_inference,
)
from phantom_theory.theory.models import THEORIES, fit_data
from phantom_theory.theory.simulate import simulate_table
from tests.phantom_theory.theory.conftest import FAST, KNOWN, known_params, within_hdi

# The one layout the default suite samples with NUTS (M_hier, 5 x 6, centred): the
# compiled model is shared by every test that samples it.
NUTS_LAYOUT = (5, 6)


def nuts_table(seed=6):
    return simulate_table("hier", *NUTS_LAYOUT, seed=seed, params=known_params(*NUTS_LAYOUT))


def test_a_well_specified_fit_passes_the_gate(hier_fit):
    _, _, _, fit = hier_fit
    assert fit.passed, fit.describe()
    assert fit.inference == "exact" and fit.sampler == "exact"
    assert fit.diagnostics["divergences"] == 0
    assert fit.diagnostics["grid_rel_change"] <= FitOptions().grid_tol


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
    """Classes planted in the class statistic (0.1 apart, within-class sd 0.02) and in
    the LoRA cost: every architecture placed, the costs per class told apart."""
    params = known_params(6, 8, seed=4, delta=1.0, weight=0.5, s_mean=np.array([0.1, 0.2]),
                          s_sigma=0.02, cost_mean=np.array([-1.0, 1.0]), cost_sigma=0.3)
    table, truth = simulate_table("class", 6, 8, seed=5, params=params)
    fit = TheoryFitter("class", table, FAST).fit()
    assert fit.inference == "exact" and fit.passed, fit.describe()
    probability = THEORIES["class"].class_probability(fit.flat(), fit.data).mean(axis=0)
    assert np.all((probability > 0.9) == (truth["classes"] == 1)), probability
    cost = THEORIES["class"].lora_by_class(fit.flat())["lora_cost_mean"].mean(axis=0)
    assert cost[0] < -0.5 < 0.5 < cost[1]


def test_a_starved_sampler_fails_the_gate_with_its_numbers():
    table, _ = nuts_table()
    fit = TheoryFitter("hier", table, FitOptions(inference="nuts", draws=30, tune=30,
                                                 chains=2)).fit()
    assert fit.inference == "nuts" and not fit.passed
    assert fit.diagnostics["min_ess_bulk"] < 400 and "r_hat" in fit.describe()


def test_a_coarse_grid_or_too_few_draws_fails_the_exact_gate():
    table, _ = nuts_table()
    coarse = TheoryFitter("hier", table, FitOptions(grid_points=8)).fit()
    assert not coarse.passed
    assert coarse.diagnostics["grid_rel_change"] > 0.01 or coarse.diagnostics["grid_jitter"] > 0.01
    few = TheoryFitter("hier", table, FitOptions(draws=30, chains=2)).fit()
    assert few.diagnostics["grid_rel_change"] <= 0.01 and not few.passed
    assert few.diagnostics["min_ess_bulk"] == 60 and "exact over" in few.describe()


def test_inference_falls_back_to_nuts_where_exact_is_not_supported():
    from phantom_theory.theory.models.priors import Normal

    options = FitOptions()
    assert resolved_inference("hier", options) == "exact"
    assert resolved_inference("hier", FitOptions(inference="nuts")) == "nuts"
    assert resolved_inference("sharpness", FitOptions(inference="nuts")) == "exact"
    # tau_gamma with a normal prior is not one of the families integrated exactly
    changed = THEORIES["hier"].with_priors(tau_gamma=Normal(0.0, 1.0))
    assert resolved_inference(changed, options) == "nuts"


@pytest.mark.parametrize(("field", "value"), [("inference", "laplace"), ("grid_points", 7),
                                              ("grid_points", 4), ("grid_tol", 0.0)])
def test_fit_options_refuse_a_bad_value_by_name(field, value):
    with pytest.raises(PhantomError, match=field):
        FitOptions(**{field: value})


def test_the_parameterisation_is_chosen_on_the_folds_own_rows():
    """An architecture with outcomes far off the additive layout flips the choice made
    on the whole table; its fold, which cannot see them, makes the other choice."""
    table, _ = nuts_table()
    wild = table.copy(deep=True)
    wild["log_q"].loc[dict(model="arch00")] = 40.0 * np.random.default_rng(0).normal(size=6)
    whole = fit_data(wild, target="log_q")
    fold = fit_data(wild, "arch00", target="log_q")
    assert choose_parameterization(fit_data(table, "arch00")) == choose_parameterization(fold)
    assert choose_parameterization(whole) != choose_parameterization(fold)


def test_a_nested_table_is_detected_and_recorded():
    crossed, _ = simulate_table("hier", 4, 4, seed=1)
    nested, _ = simulate_table("hier", 4, 8, seed=1, design="nested")
    assert not is_nested(crossed) and is_nested(nested)
    two, _ = simulate_table("hier", 2, 4, seed=1)
    # Holding out one of two architectures leaves one: no context is seen twice.
    assert not is_nested(two) and is_nested(two, held_out="arch00")
    fit = TheoryFitter("universal", nested, FitOptions(draws=100, chains=2)).fit()
    idata = fit_to_dataset(fit, nested, FitOptions(draws=100, chains=2), {})
    assert fit.nested and idata.posterior.attrs["nested"] == 1
    assert idata.posterior.attrs["inference"] == "exact"
    assert idata.posterior.attrs["fit_inference"] == "exact"
