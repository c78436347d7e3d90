"""Blind predictions: they cannot see the held-out outcomes, they are hashed (every
field that scoring reads), a commit pre-registers them, and their intervals are
calibrated on simulated tables. The same for predictions of held-out contexts, whose
effect comes from the context population."""

import subprocess

import numpy as np
import pytest
from scipy import stats

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.models import THEORIES
from phantom_theory.theory.predict import (
    check_commit,
    open_prediction,
    predict_architecture,
    predict_contexts,
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


def _committed(prediction, repo, name):
    """``prediction`` written as ``name`` in a fresh git repository and committed."""
    repo.mkdir()
    _git(repo, "init", "-q")
    write_prediction(prediction, repo / name)
    _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", "pre-register")
    return repo / name


@pytest.fixture()
def committed(sharp_prediction, tmp_path):
    """The prediction written in a fresh git repository and committed there."""
    return _committed(sharp_prediction[2], tmp_path / "repo", "pred.nc")


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


# -- held-out contexts: contexts no fit saw, on architectures the fit did see ---------

def hold_out_contexts(table, contexts):
    """The table with ``contexts``' rows kept (for scoring) but out of every fit."""
    table = table.copy(deep=True)
    table["observed"].loc[dict(context=list(contexts))] = False
    return table


@pytest.fixture(scope="module")
def universal_context_fit():
    """M_universal fitted exactly (iid draws) on a simulated crossed table of 8
    architectures x 31 contexts, tau_gamma 0.5 and sigma 0.1, with context00 held out,
    and the prediction of context00."""
    rng = np.random.default_rng(4)
    params = {"mu": 0.3, "tau_gamma": 0.5, "sigma": 0.1, "z_gamma": rng.normal(0, 1, 31)}
    table, _ = simulate_table("universal", 8, 31, seed=5, params=params)
    table = hold_out_contexts(table, ["context00"])
    fit = TheoryFitter("universal", table, FitOptions(draws=2000, chains=4, seed=6)).fit()
    return table, fit, predict_contexts(fit, table, ["context00"], seed=7)


def test_a_held_out_context_widens_the_predictive_by_the_context_scale(universal_context_fit):
    """Var log eta_c on the held-out context minus that on an observed context (the
    same architecture) is E[tau_gamma^2]: the held-out effect is a population draw,
    an observed one is pinned by its rows. (Exactly, the held-out effect varies by
    tau_gamma^2 (1 + 1/J_o), the observed one by its posterior variance, about
    sigma^2 / 8: together a 3% excess here.)"""
    table, fit, prediction = universal_context_fit
    post = fit.flat()
    observed = np.arange(1, 31)
    draws = THEORIES["universal"].predict(post, fit.data, 0, observed, np.random.default_rng(8))
    var_observed = draws.var(axis=0).mean()
    var_heldout = prediction.log_eta_c_draws.sel(model="arch00", context="context00").var()
    expected = np.mean(post["tau_gamma"] ** 2)
    assert float(var_heldout) > 5 * var_observed
    assert float(var_heldout) - var_observed == pytest.approx(expected, rel=0.10)


def test_a_held_out_contexts_effect_is_one_draw_shared_by_every_architecture(
        universal_context_fit):
    """Two architectures on the held-out context differ only by their noise (log Q
    difference of variance 2 sigma^2): one gamma draw per posterior sample serves
    both. A draw per cell would add 2 Var(gamma), about 25 times more here."""
    table, fit, prediction = universal_context_fit
    post = fit.flat()
    log_q = prediction.log_eta_c_draws.sel(context="context00") \
        + table.log_scale.sel(context="context00")
    difference = log_q.sel(model="arch00") - log_q.sel(model="arch05")
    assert float(difference.var()) == pytest.approx(2 * np.mean(post["sigma"] ** 2), rel=0.10)


def test_a_held_out_contexts_effect_is_independent_of_the_observed_ones(universal_context_fit):
    """gamma of the held-out context, drawn from its population, is uncorrelated with
    every observed context's effect (8000 iid draws: |r| < 0.05)."""
    _, fit, prediction = universal_context_fit
    _, gamma = THEORIES["universal"].effects(fit.flat(), fit.data, np.random.default_rng(0))
    heldout = prediction.context_effect_draws.sel(context="context00").values
    correlations = [np.corrcoef(heldout, gamma[:, j])[0, 1] for j in range(1, 31)]
    assert np.max(np.abs(correlations)) < 0.05


def test_predicting_a_context_the_fit_saw_is_refused(universal_context_fit):
    table, fit, _ = universal_context_fit
    with pytest.raises(PhantomError, match="saw context 'context03'"):
        predict_contexts(fit, table, ["context00", "context03"])
    with pytest.raises(PhantomError, match="'nowhere' is not in the table"):
        predict_contexts(fit, table, ["nowhere"])
    with pytest.raises(PhantomError, match="not this one"):
        predict_contexts(fit, table.isel(context=slice(0, 10)), ["context00"])


def test_a_context_without_quantities_is_refused(universal_context_fit):
    table, fit, _ = universal_context_fit
    bare = table.copy(deep=True)
    bare["has_quantities"].loc[dict(context="context00")] = False
    with pytest.raises(PhantomError, match="'context00' has no measured-at-init quantities"):
        predict_contexts(fit, bare, ["context00"])


def test_a_context_prediction_cannot_see_the_held_out_outcomes(universal_context_fit):
    """Scrambling the held-out context's outcomes leaves its prediction and hash
    unchanged."""
    table, fit, prediction = universal_context_fit
    scrambled = table.copy(deep=True)
    scrambled["log_q"].loc[dict(context="context00")] = 123.0
    scrambled["eta_c"].loc[dict(context="context00")] = 1e9
    options = FitOptions(draws=2000, chains=4, seed=6)
    again = predict_contexts(TheoryFitter("universal", scrambled, options).fit(), scrambled,
                             ["context00"], seed=7)
    assert again.attrs["prediction_sha256"] == prediction.attrs["prediction_sha256"]


def test_a_context_prediction_is_hashed_and_scored_per_cell(universal_context_fit, tmp_path):
    """Round trip and tamper check as for an architecture; the score of each (model,
    context) cell on hand-set measurements: the median itself (error 0, covered), ten
    times it (error 9 / 10, not covered), NaN (not scored)."""
    _, _, prediction = universal_context_fit
    write_prediction(prediction, tmp_path / "c.nc")
    back = open_prediction(tmp_path / "c.nc")
    assert back.attrs["prediction_sha256"] == prediction.attrs["prediction_sha256"]
    measured = back.eta_c_median.copy()
    measured.loc[dict(model="arch01")] *= 10
    measured.loc[dict(model="arch02")] = np.nan
    result = score(back, measured)
    cells = {c["model"]: c for c in result["cells"]}
    assert result["n_cells"] == 7 and "arch02" not in cells
    assert cells["arch00"]["relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert cells["arch00"]["covered"] and not cells["arch01"]["covered"]
    assert cells["arch01"]["relative_error"] == pytest.approx(0.9)
    assert result["coverage"] == pytest.approx(6 / 7)
    back["eta_c_hdi_high"][0, 0] = 1e9
    back.to_netcdf(tmp_path / "tampered.nc")
    with pytest.raises(PhantomError, match="does not match its recorded SHA-256"):
        open_prediction(tmp_path / "tampered.nc")


def test_a_committed_context_prediction_passes_the_commit_check(universal_context_fit, tmp_path):
    path = _committed(universal_context_fit[2], tmp_path / "repo", "contexts.nc")
    assert len(check_commit(path, "HEAD")["commit"]) == 40


def coverage_of_heldout_contexts(theory: str, replicates: int, seed: int) -> tuple[int, int]:
    """Simulation-based calibration of the context prediction: parameters from the
    theory's prior, a crossed table from them, a fit without context00, and whether
    the 94% HDI of arch00 on context00 covers its simulated eta_c (one cell per table,
    so the trials are independent)."""
    rng = np.random.default_rng(seed)
    covered = 0
    for r in range(replicates):
        params = prior_draw(theory, 4, 8, rng)
        table, _ = simulate_table(theory, 4, 8, seed=seed * 1000 + r, params=params)
        table = hold_out_contexts(table, ["context00"])
        fit = TheoryFitter(theory, table, FitOptions(draws=500, chains=2, seed=r)).fit()
        cell = predict_contexts(fit, table, ["context00"], seed=r).sel(
            model="arch00", context="context00")
        truth = float(table.eta_c.sel(model="arch00", context="context00"))
        covered += float(cell.eta_c_hdi_low) <= truth <= float(cell.eta_c_hdi_high)
    return covered, replicates


def test_held_out_context_hdis_are_calibrated_fast():
    covered, n = coverage_of_heldout_contexts("universal", 100, seed=21)
    assert stats.binomtest(covered, n, 0.94).pvalue > 0.01, f"{covered}/{n}"


@pytest.mark.slow
def test_held_out_context_hdis_are_calibrated_long():
    covered, n = coverage_of_heldout_contexts("hier", 200, seed=22)
    assert stats.binomtest(covered, n, 0.94).pvalue > 0.01, f"{covered}/{n}"
