"""The Bayesian theory models on simulated tables with known answers."""

import numpy as np
import pytest
from scipy import stats

from phantom_theory.errors import PhantomError
from phantom_theory.theory.compare import evaluate, stacking_weights
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.predict import (
    open_prediction,
    predict_architecture,
    score,
    write_prediction,
)
from phantom_theory.theory.simulate import prior_draw, simulate_table
from phantom_theory.theory.theories import THEORIES

FAST = FitOptions(draws=500, tune=700, chains=2, target_accept=0.95)
KNOWN = {"mu": 0.3, "tau_gamma": 0.4, "sigma": 0.15, "tau": 0.5}


def known_params(n_models, n_contexts, seed=1, **extra):
    rng = np.random.default_rng(seed)
    return {**KNOWN, "z_gamma": rng.normal(0, 1, n_contexts),
            "z_alpha": rng.normal(0, 1, n_models), **extra}


@pytest.fixture(scope="module")
def hier_fit():
    table, truth = simulate_table("hier", 6, 10, seed=2, params=known_params(6, 10))
    fitter = TheoryFitter("hier", table, FitOptions(seed=3))
    return table, truth, fitter, fitter.fit()


def within_hdi(draws, value):
    from phantom_theory.theory.predict import hdi

    low, high = hdi(draws)
    return low <= value <= high


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


def test_a_blind_fit_cannot_see_the_held_out_outcomes(hier_fit):
    """Scrambling the held-out architecture's outcomes leaves its prediction,
    and the hash of it, unchanged."""
    table, _, fitter, _ = hier_fit
    held_out = str(table.model.values[0])
    scrambled = table.copy(deep=True)
    scrambled["log_q"].loc[dict(model=held_out)] = 123.0
    scrambled["eta_c"].loc[dict(model=held_out)] = 1e9
    first = predict_architecture(fitter.fit(held_out=held_out, seed=7), table, held_out)
    other = TheoryFitter("hier", scrambled, FitOptions(seed=3))
    second = predict_architecture(other.fit(held_out=held_out, seed=7), scrambled, held_out)
    assert first.attrs["prediction_sha256"] == second.attrs["prediction_sha256"]


def test_a_prediction_is_hashed_and_tampering_is_caught(hier_fit, tmp_path):
    table, _, fitter, _ = hier_fit
    held_out = str(table.model.values[1])
    prediction = predict_architecture(fitter.fit(held_out=held_out), table, held_out)
    write_prediction(prediction, tmp_path / "p.nc")
    back = open_prediction(tmp_path / "p.nc")
    assert back.attrs["prediction_sha256"] == prediction.attrs["prediction_sha256"]
    result = score(back, table.eta_c.sel(model=held_out))
    assert result["relative_error"] < 1.0 and result["n_contexts"] == 10
    back["eta_c_median"][0] = 1.0
    back.to_netcdf(tmp_path / "tampered.nc")
    with pytest.raises(PhantomError, match="does not match its recorded SHA-256"):
        open_prediction(tmp_path / "tampered.nc")


def test_stacking_puts_the_weight_on_the_better_model():
    rng = np.random.default_rng(0)
    good, bad = rng.normal(-1, 0.1, 40), rng.normal(-3, 0.1, 40)
    weights = stacking_weights(np.stack([bad, good]))
    assert weights.sum() == pytest.approx(1.0) and weights[1] > 0.95


def test_loao_prefers_the_hierarchical_model_when_architectures_differ():
    params = known_params(5, 8, seed=8)
    params["tau"] = 1.0
    table, _ = simulate_table("hier", 5, 8, seed=9, params=params)
    evaluation = evaluate(table, ("universal", "hier"), FAST, workers=1)
    comparison = evaluation.comparison()
    assert float(comparison.elpd_loao.sel(theory="hier")) > float(
        comparison.elpd_loao.sel(theory="universal"))
    assert float(comparison.elpd_loo.sel(theory="hier")) > float(
        comparison.elpd_loo.sel(theory="universal"))


def coverage_of_heldout_predictions(replicates: int, seed: int) -> tuple[int, int]:
    """Simulation-based calibration of the blind prediction: draw parameters from
    M_hier's prior, a table from them, fit without architecture 0, and count how
    often the 94% HDI covers its true eta_c (geometric mean over contexts)."""
    rng = np.random.default_rng(seed)
    fitter, covered = None, 0
    for r in range(replicates):
        params = prior_draw("hier", 5, 6, rng)
        table, truth = simulate_table("hier", 5, 6, seed=seed * 1000 + r, params=params)
        if fitter is None:
            fitter = TheoryFitter("hier", table, FAST)
        fitter.table = table   # the compiled model is reused; only the data change
        prediction = predict_architecture(fitter.fit(held_out="arch00", seed=r), table, "arch00")
        truth_eta = truth["eta_c_arch"][0]
        covered += float(prediction.eta_c_arch_hdi_low) <= truth_eta <= float(
            prediction.eta_c_arch_hdi_high)
    return covered, replicates


def binomial_band(n, p=0.94, tail=0.005):
    return stats.binom.ppf(tail, n, p), stats.binom.isf(tail, n, p)


def test_held_out_hdis_are_calibrated_fast():
    covered, n = coverage_of_heldout_predictions(24, seed=11)
    low, high = binomial_band(n)
    assert low <= covered <= high, f"{covered}/{n} outside [{low}, {high}]"


@pytest.mark.slow
def test_held_out_hdis_are_calibrated_long():
    covered, n = coverage_of_heldout_predictions(200, seed=12)
    low, high = binomial_band(n)
    assert low <= covered <= high, f"{covered}/{n} outside [{low}, {high}]"
