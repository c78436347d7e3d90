"""Blind predictions: they cannot see the held-out outcomes, they are hashed (every
field that scoring reads), a commit pre-registers them, and their intervals are
calibrated on simulated tables."""

import subprocess

import numpy as np
import pytest
from scipy import stats

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.predict import (
    check_commit,
    open_prediction,
    predict_architecture,
    prediction_digest,
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


# -- tamper evidence: the in-file hash, and the commit that pre-registered it ----------

@pytest.fixture(scope="module")
def sharp_prediction():
    """A blind prediction of the conjugate sharpness baseline (drawn exactly, no
    sampler) on a simulated table."""
    from phantom_theory.theory.simulate import simulate_table

    table, _ = simulate_table("hier", 4, 5, seed=5)
    held_out = str(table.model.values[0])
    fit = TheoryFitter("sharpness", table, FAST).fit(held_out=held_out)
    return table, held_out, predict_architecture(fit, table, held_out)


def _swap_labels(ds):
    return ds.assign_coords(context=ds.context.values[::-1])


def _widen(ds):
    ds = ds.copy(deep=True)
    ds["eta_c_hdi_low"] = ds.eta_c_hdi_low / 100
    ds["eta_c_hdi_high"] = ds.eta_c_hdi_high * 100
    return ds


def _edit_draw(ds):
    ds = ds.copy(deep=True)
    ds["log_eta_c_draws"][0, 0] = ds.log_eta_c_draws.values[0, 0] + 1.0
    return ds


def _attrs(**changes):
    def tamper(ds):
        ds = ds.copy()
        ds.attrs.update(changes)
        return ds
    return tamper


# What `score` reads, each changed as a tamperer would; the field --commit names.
TAMPERS = {
    "swap context labels": (_swap_labels, "variable context"),
    "widen the interval": (_widen, "variable eta_c_hdi_high"),
    "raise hdi_prob": (_attrs(hdi_prob=0.9999), "attr hdi_prob"),
    "forge diagnostics": (_attrs(diagnostics_passed=1, diagnostics_max_rhat=1.0),
                          "attr diagnostics_max_rhat"),
    "edit a draw": (_edit_draw, "variable log_eta_c_draws"),
    "rename the held-out model": (_attrs(held_out="someone-else"), "attr held_out"),
    "change the table options": (_attrs(table_options_json='{"mode": "lora"}'),
                                 "attr table_options_json"),
}


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=test", "-c",
                           "user.email=test@example.org", *args],
                          check=True, capture_output=True, text=True)


@pytest.fixture()
def committed(sharp_prediction, tmp_path):
    """The prediction written in a fresh git repository and committed there."""
    _, _, prediction = sharp_prediction
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    write_prediction(prediction, repo / "pred.nc")
    _git(repo, "add", "pred.nc")
    _git(repo, "commit", "-q", "-m", "pre-register")
    return repo / "pred.nc"


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_with_what_score_reads_is_caught(sharp_prediction, committed, tamper):
    """Each edit breaks the in-file hash; recomputing that hash passes the in-file
    check, which only detects accidents, but not the commit check."""
    _, _, prediction = sharp_prediction
    change, field = TAMPERS[tamper]
    forged = change(open_prediction(committed))
    committed.unlink()
    forged.to_netcdf(committed)
    with pytest.raises(PhantomError, match="does not match its recorded SHA-256"):
        open_prediction(committed)
    forged.attrs["prediction_sha256"] = prediction_digest(forged)
    committed.unlink()
    forged.to_netcdf(committed)
    open_prediction(committed)
    with pytest.raises(PhantomError, match=f"is not the prediction committed in .*{field}"):
        check_commit(committed, "HEAD")


def test_the_committed_prediction_passes_and_survives_a_round_trip(sharp_prediction, committed):
    _, _, prediction = sharp_prediction
    assert open_prediction(committed).attrs["prediction_sha256"] == \
        prediction.attrs["prediction_sha256"] == prediction_digest(open_prediction(committed))
    record = check_commit(committed, "HEAD")
    assert len(record["commit"]) == 40 and record["committed"]


def test_fields_compare_as_the_hash_does():
    from phantom_theory.theory.predict import differing_fields

    assert differing_fields({"attr x": float("nan")}, {"attr x": float("nan")}) == []
    assert differing_fields({"attr x": 1.0}, {"attr x": 1.0, "attr y": 2}) == ["attr y"]


def test_a_commit_check_needs_the_file_in_that_commit(sharp_prediction, committed, tmp_path):
    _, _, prediction = sharp_prediction
    with pytest.raises(PhantomError, match="is not a commit"):
        check_commit(committed, "no-such-revision")
    write_prediction(prediction, committed.parent / "later.nc")
    with pytest.raises(PhantomError, match="later.nc is not in commit"):
        check_commit(committed.parent / "later.nc", "HEAD")
    write_prediction(prediction, tmp_path / "loose.nc")
    with pytest.raises(PhantomError, match="not in a git repository"):
        check_commit(tmp_path / "loose.nc", "HEAD")


def test_a_prediction_hashed_the_old_way_is_refused(sharp_prediction, tmp_path):
    _, _, prediction = sharp_prediction
    old = prediction.copy(deep=True)
    del old.attrs["prediction_hash_scheme"]
    old.to_netcdf(tmp_path / "old.nc")
    with pytest.raises(PhantomError, match="left its context labels, interval and diagnostics out"):
        open_prediction(tmp_path / "old.nc")
