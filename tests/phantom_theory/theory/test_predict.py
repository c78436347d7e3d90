"""Blind predictions: they cannot see the held-out outcomes, they are hashed, and
their intervals are calibrated on simulated tables."""

import numpy as np
import pytest
from scipy import stats

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.predict import (
    open_prediction,
    predict_architecture,
    score,
    write_prediction,
)
from phantom_theory.theory.simulate import prior_draw, simulate_table
from tests.phantom_theory.theory.conftest import FAST


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


def coverage_of_heldout_predictions(replicates: int, seed: int) -> tuple[int, int]:
    """Simulation-based calibration of the blind prediction: draw parameters from
    M_hier's prior, a table from them, fit without architecture 0, and count how
    often the 94% HDI covers its true eta_c (geometric mean over contexts)."""
    rng = np.random.default_rng(seed)
    fitter, covered = None, 0
    for r in range(replicates):
        params = prior_draw("hier", 5, 6, rng)
        table, truth = simulate_table("hier", 5, 6, seed=seed * 1000 + r, params=params)
        # The compiled model is reused; only the data change.
        fitter = TheoryFitter("hier", table, FAST) if fitter is None else fitter.with_table(table)
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
