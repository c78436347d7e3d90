"""The pure commands (show, plot, sweep-show, plot-sweep; fit and its gate, predict
and score, loao, report) through
``phantom_theory.cli.main``: they work on files that ``phantom run`` and ``phantom
sweep`` wrote, and every bad file gets one clear line on stderr, exit status 2, no
traceback, and nothing overwritten."""

import re

import numpy as np
import pytest
import xarray as xr

from phantom_theory.cli import main
from tests.conftest import fails as fails_with


def fails(capsys, argv, *fragments):
    return fails_with(capsys, argv, *fragments, main=main)


def test_run_show_and_plot_work(saved_run, capsys, tmp_path):
    assert main(["show", str(saved_run)]) == 0
    out = capsys.readouterr().out
    assert "outcome" in out and "phi" in out and "jumps" in out
    assert main(["plot", str(saved_run), "-o", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_an_existing_plot_is_not_overwritten(capsys, saved_run, tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"keep")
    fails(capsys, ["plot", str(saved_run), "-o", str(target)], "--overwrite")
    assert target.read_bytes() == b"keep"


@pytest.mark.parametrize("command", ["show", "plot"])
def test_a_corrupt_file(capsys, tmp_path, command):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"this is not netCDF at all")
    extra = ["-o", str(tmp_path / "out.png")] if command == "plot" else []
    fails(capsys, [command, str(bad), *extra], "not a readable netCDF file")


@pytest.mark.parametrize("command", ["show", "plot"])
def test_a_foreign_netcdf_file(capsys, tmp_path, command):
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(foreign)
    extra = ["-o", str(tmp_path / "out.png")] if command == "plot" else []
    fails(capsys, [command, str(foreign), *extra], "not a phantom-theory trajectory")


def test_a_missing_file(capsys, tmp_path):
    fails(capsys, ["show", str(tmp_path / "nope.nc")], "no such file")


def test_sweep_show_and_plot_sweep_work(cli_sweep, capsys):
    assert main(["sweep-show", str(cli_sweep / "out")]) == 0
    out = capsys.readouterr().out
    assert "eta_c" in out and "tiny-gpt2" in out and "start-begin" in out
    assert main(["plot-sweep", str(cli_sweep / "out"), "-o", str(cli_sweep / "s.png")]) == 0
    assert (cli_sweep / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_show_refuses_a_trajectory(capsys, saved_run):
    fails(capsys, ["sweep-show", str(saved_run)], "not a phantom-theory sweep")


# -- the theory commands, on a small tiny-model sweep --------------------------------

SWEEP = """
models = ["tiny-gpt2", "tiny-neox", "tiny-gpt2-deep"]
contexts = ["start-begin", "shame-guilt"]
modes = ["full", "lora"]
optimizers = ["sgd"]
steps = 10
[lr]
lo = 1e-8
hi = 100.0
tolerance = 0.3
grid_points = 6
"""
QUICK = ["--draws", "300", "--tune", "300", "--chains", "2"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from runner.cli import main as phantom

    root = tmp_path_factory.mktemp("theory")
    (root / "spec.toml").write_text(SWEEP)
    assert phantom(["sweep", str(root / "spec.toml"), "--out", str(root / "sweep"),
                    "--quiet"]) == 0
    assert phantom(["quantities", "--spec", str(root / "spec.toml"), "--out",
                 str(root / "quantities.nc"), "--quiet"]) == 0
    return root


def fit_on(root):
    return ["--fit-on", str(root / "sweep"), str(root / "quantities.nc")]


def test_a_fit_that_fails_the_gate_exits_non_zero_with_its_numbers(results, capsys):
    err = fails(capsys, ["fit", *fit_on(results), "--theory", "hier", "--draws", "20",
                         "--tune", "20", "--chains", "2", "--out", str(results / "starved.nc")],
                "failed the diagnostics gate", "max r_hat", "bulk ESS")
    assert re.search(r"min bulk ESS \d+", err)
    assert (results / "starved.nc").exists()


def test_allow_unconverged_accepts_and_records_it(results, capsys):
    import xarray as xr

    path = results / "accepted.nc"
    assert main(["fit", *fit_on(results), "--theory", "hier", "--draws", "20", "--tune", "20",
                 "--chains", "2", "--allow-unconverged", "--out", str(path)]) == 0
    assert "FAILED the diagnostics gate" in capsys.readouterr().out
    posterior = xr.load_dataset(path, group="posterior")
    assert posterior.attrs["allow_unconverged"] == 1 and posterior.attrs["diagnostics_passed"] == 0


def test_predict_writes_a_hashed_prediction_that_score_verifies(results, capsys):
    path = results / "prediction.nc"
    assert main(["predict", "--held-out", "tiny-neox", *fit_on(results), *QUICK,
                 "--allow-unconverged", "--out", str(path)]) == 0
    out = capsys.readouterr().out
    digest = re.search(r"prediction SHA-256 ([0-9a-f]{64})", out).group(1)
    assert main(["score", str(path), "--sweep", str(results / "sweep")]) == 0
    scored = capsys.readouterr().out
    assert f"prediction SHA-256 {digest} (verified: " in scored and "tiny-neox" in scored
    assert "the diagnostics gate" in scored


def _commit(repo, path, date):
    import os
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    for args in (["init", "-q"], ["add", path.name], ["commit", "-q", "-m", "pre-register"]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c",
                        "user.email=test@example.org", *args], check=True, env=env,
                       capture_output=True)


def test_score_commit_checks_the_pre_registration(results, capsys, tmp_path):
    """--commit passes for a prediction committed before the sweep was written and
    fails, naming why, for one committed after it or changed since its commit."""
    import shutil

    before, after = tmp_path / "before", tmp_path / "after"
    for repo, date in ((before, "2001-01-01T00:00:00+00:00"), (after, "2090-01-01T00:00:00+00:00")):
        repo.mkdir()
        shutil.copy2(results / "prediction.nc", repo / "pred.nc")
        _commit(repo, repo / "pred.nc", date)
    sweep = str(results / "sweep")
    assert main(["score", str(before / "pred.nc"), "--sweep", sweep, "--commit", "HEAD"]) == 0
    assert "pre-registered: the file is its content at commit" in capsys.readouterr().out
    fails(capsys, ["score", str(after / "pred.nc"), "--sweep", sweep, "--commit", "HEAD"],
          "is later than its first run", "no pre-registration")
    # the bound is the held-out model's first run, not when sweep.nc was last written
    # (a growing sweep rewrites it): runs recorded as made in 2000 beat a 2001 commit
    table = xr.load_dataset(results / "sweep" / "sweep.nc")
    held_out = table.run_model.values.astype(str) == "tiny-neox"
    created = table.run_created.values.astype(object)
    created[held_out] = "2000-06-01T00:00:00+00:00"
    table["run_created"] = ("run", created)
    table.to_netcdf(tmp_path / "early.nc")
    fails(capsys, ["score", str(before / "pred.nc"), "--sweep", str(tmp_path / "early.nc"),
                   "--commit", "HEAD"], "is later than its first run (2000-06-01")
    edited = xr.load_dataset(before / "pred.nc")
    edited.attrs["hdi_prob"] = 0.999
    from phantom_theory.theory.predict import prediction_digest

    edited.attrs["prediction_sha256"] = prediction_digest(edited)   # a careful forger
    (before / "pred.nc").unlink()
    edited.to_netcdf(before / "pred.nc")
    fails(capsys, ["score", str(before / "pred.nc"), "--sweep", sweep, "--commit", "HEAD"],
          "is not the prediction committed in", "attr hdi_prob")
    fails(capsys, ["score", str(results / "prediction.nc"), "--sweep", sweep, "--commit",
                   "HEAD"], "not in a git repository")


def test_loao_then_report_make_a_self_contained_page(results, capsys):
    out = results / "theory"
    assert main(["loao", *fit_on(results), *QUICK, "--theories", "hier", "sharpness",
                 "--workers", "1", "--allow-unconverged", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "elpd_loao" in text and "HDI covers" in text
    for name in ("table.nc", "comparison.nc", "scores.nc", "fits/hier.nc"):
        assert (out / name).exists(), name
    assert len(list((out / "predictions").glob("*.nc"))) == 6
    assert main(["report", str(results), "-o", str(results / "report.html")]) == 0
    page = (results / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert not re.search(r'(?:src|href)="(?!data:)', page), "the page links outside itself"
    for heading in ("Sweep", "Theory comparison", "Architecture effects", "Blind predictions"):
        assert heading in page


def test_loao_replaces_a_results_folder_whole_and_report_refuses_a_mixed_one(results, capsys):
    """A second loao into the same folder is refused without --overwrite; with it,
    the folder is replaced whole (a new run id in every file and the manifest). A
    file of the first run put back into it makes report refuse the folder."""
    import json
    import shutil

    out = results / "theory-twice"
    argv = ["loao", *fit_on(results), *QUICK, "--theories", "sharpness", "--workers", "1",
            "--allow-unconverged", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "manifest.json").read_text())
    shutil.copy2(out / "scores.nc", results / "first-scores.nc")
    fails(capsys, argv, "--overwrite")
    assert json.loads((out / "manifest.json").read_text()) == first
    assert main([*argv, "--overwrite"]) == 0
    second = json.loads((out / "manifest.json").read_text())
    assert second["run_id"] != first["run_id"]
    assert sorted(second["files"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*.nc"))
    assert xr.open_dataset(out / "table.nc").attrs["loao_run_id"] == second["run_id"]
    assert not list(results.glob(".theory-twice*"))
    shutil.copy2(results / "first-scores.nc", out / "scores.nc")
    (results / "first-scores.nc").unlink()
    fails(capsys, ["report", str(results), "-o", str(results / "mixed.html")],
          "theory-twice is mixed", "scores.nc")
    (out / "manifest.json").unlink()   # a folder without a manifest: the run ids decide
    fails(capsys, ["report", str(results), "-o", str(results / "mixed.html")],
          "mixes the results of two loao runs")
    assert not (results / "mixed.html").exists()
    shutil.rmtree(out)


def test_fit_on_needs_two_paths(results, capsys):
    fails(capsys, ["fit", "--fit-on", str(results / "sweep"), "--out", str(results / "x.nc")],
          "--fit-on takes two paths")


def test_an_unknown_held_out_model(results, capsys):
    fails(capsys, ["predict", "--held-out", "gpt5", *fit_on(results), "--out",
                   str(results / "y.nc")], "'gpt5'")


# -- held-out contexts: kept out of every fit, recorded, predicted and scored ---------

def test_predict_context_writes_a_context_prediction_that_score_verifies(results, capsys):
    path = results / "context-prediction.nc"
    assert main(["predict", "--context", "shame-guilt", *fit_on(results), "--theory",
                 "universal", *QUICK, "--allow-unconverged", "--out", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prediction for held-out context(s) shame-guilt" in out
    digest = re.search(r"prediction SHA-256 ([0-9a-f]{64})", out).group(1)
    ds = xr.load_dataset(path)
    assert ds.attrs["phantom_schema"] == "phantom-theory/context-prediction/1"
    assert list(ds.context.values) == ["shame-guilt"]
    assert sorted(ds.model.values) == ["tiny-gpt2", "tiny-gpt2-deep", "tiny-neox"]
    assert ds.attrs["held_out_contexts"] == "shame-guilt"
    assert main(["score", str(path), "--sweep", str(results / "sweep")]) == 0
    scored = capsys.readouterr().out
    assert f"prediction SHA-256 {digest} (verified: " in scored
    assert "universal on held-out context(s) shame-guilt: HDI covers" in scored
    assert len(re.findall(r"^shame-guilt\s+tiny-", scored, re.M)) == int(
        np.isfinite(ds.eta_c_median).sum())
    from phantom_theory.report import build_report

    page = build_report(results)   # the report scores it against the folder's sweep
    assert "Held-out contexts: universal" in page and digest[:16] in page
    assert "universal on held-out context(s) shame-guilt: HDI covers" in page


def test_a_contexts_file_is_the_other_spelling_of_context(results, capsys, tmp_path):
    """--contexts-file with one [[context]] table of id shame-guilt makes the very
    prediction --context shame-guilt made (the same hash)."""
    (tmp_path / "held.toml").write_text('[[context]]\nid = "shame-guilt"\n'
                                        'sentence = "x"\ncorrect = "a"\ncompetitor = "b"\n')
    path = tmp_path / "from-file.nc"
    assert main(["predict", "--contexts-file", str(tmp_path / "held.toml"), *fit_on(results),
                 "--theory", "universal", *QUICK, "--allow-unconverged", "--out",
                 str(path)]) == 0
    capsys.readouterr()
    first = xr.load_dataset(results / "context-prediction.nc").attrs["prediction_sha256"]
    assert xr.load_dataset(path).attrs["prediction_sha256"] == first


def test_a_fit_records_the_contexts_it_held_out(results, capsys):
    path = results / "without-context.nc"
    assert main(["fit", *fit_on(results), "--theory", "universal", *QUICK,
                 "--held-out-contexts", "start-begin", "--allow-unconverged",
                 "--out", str(path)]) == 0
    capsys.readouterr()
    posterior = xr.load_dataset(path, group="posterior")
    assert posterior.attrs["held_out_contexts"] == "start-begin"
    assert posterior.attrs["held_out_contexts_named"] == "start-begin"
    assert posterior.attrs["held_out_contexts_recorded"] == ""


@pytest.fixture(scope="module")
def crossed_sweep(results):
    """The sweep's sweep.nc with a crossed spec that holds out shame-guilt."""
    import json

    sweep = xr.load_dataset(results / "sweep" / "sweep.nc")
    spec = json.loads(sweep.attrs["sweep_spec"])
    spec["crossed"] = {"file": "crossed.toml", "held_out": ["shame-guilt"], "orientation": {}}
    sweep.attrs["sweep_spec"] = json.dumps(spec, sort_keys=True)
    path = results / "crossed-sweep.nc"
    sweep.to_netcdf(path)
    return path


def test_loao_on_a_crossed_sweep_keeps_its_held_out_contexts_out(results, crossed_sweep,
                                                                 capsys):
    """Every file of a loao on a crossed sweep records the context its spec holds out,
    and its table keeps that context's rows out of every fit."""
    out = results / "crossed-theory"
    assert main(["loao", "--fit-on", str(crossed_sweep), str(results / "quantities.nc"),
                 *QUICK, "--theories", "sharpness", "--workers", "1", "--allow-unconverged",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    table = xr.load_dataset(out / "table.nc")
    assert table.attrs["held_out_contexts"] == "shame-guilt"
    assert table.attrs["held_out_contexts_recorded"] == "shame-guilt"
    assert not table.observed.sel(context="shame-guilt").any()
    assert table.observed.sel(context="start-begin").any()
    files = [out / "comparison.nc", out / "scores.nc", *sorted((out / "predictions").glob("*.nc"))]
    for path in files:
        assert xr.load_dataset(path).attrs["held_out_contexts"] == "shame-guilt", path
    posterior = xr.load_dataset(out / "fits" / "sharpness.nc", group="posterior")
    assert posterior.attrs["held_out_contexts"] == "shame-guilt"


def test_compare_records_the_held_out_contexts(results, capsys):
    path = results / "comparison-without-context.nc"
    assert main(["compare", *fit_on(results), *QUICK, "--theories", "sharpness", "linear0",
                 "--workers", "1", "--held-out-contexts", "shame-guilt", "--allow-unconverged",
                 "--out", str(path)]) == 0
    capsys.readouterr()
    attrs = xr.load_dataset(path).attrs
    assert attrs["held_out_contexts"] == attrs["held_out_contexts_named"] == "shame-guilt"
    assert attrs["held_out_contexts_recorded"] == ""


def test_held_out_contexts_add_to_those_the_sweep_records(results, crossed_sweep, capsys):
    fails(capsys, ["fit", "--fit-on", str(crossed_sweep), str(results / "quantities.nc"),
                   "--held-out-contexts", "start-begin", "--out", str(results / "none.nc")],
          "holding out context(s) shame-guilt, start-begin leaves no outcome row")


@pytest.mark.parametrize("argv,fragments", [
    (["--context", "shame-guilt", "--held-out", "tiny-neox"], ("not allowed with",)),
    ([], ("one of the arguments --held-out --context --contexts-file is required",)),
    (["--context", "nope"], ("'nope'", "neither the sweep")),
    (["--context", "shame-guilt", "start-begin"], ("leaves no outcome row",)),
    (["--contexts-file", "none.toml"], ("no such contexts file", "none.toml")),
])
def test_predict_context_refusals(results, capsys, argv, fragments):
    fails(capsys, ["predict", *argv, *fit_on(results), "--theory", "universal", "--out",
                   str(results / "refused.nc")], *fragments)
    assert not (results / "refused.nc").exists()


def test_a_contexts_file_without_contexts_is_refused(results, capsys, tmp_path):
    (tmp_path / "spec.toml").write_text(SWEEP)
    fails(capsys, ["predict", "--contexts-file", str(tmp_path / "spec.toml"), *fit_on(results),
                   "--out", str(tmp_path / "p.nc")], "has no [[context]] tables")
    (tmp_path / "noid.toml").write_text('[[context]]\nsentence = "x"\n')
    fails(capsys, ["predict", "--contexts-file", str(tmp_path / "noid.toml"), *fit_on(results),
                   "--out", str(tmp_path / "p.nc")], "[[context]] table 1", "has no id")


def test_a_sweep_holding_out_an_unknown_context_is_refused(results, capsys, tmp_path):
    import json

    sweep = xr.load_dataset(results / "sweep" / "sweep.nc")
    spec = json.loads(sweep.attrs["sweep_spec"])
    spec["crossed"] = {"held_out": ["lost-gone"]}
    sweep.attrs["sweep_spec"] = json.dumps(spec)
    sweep.to_netcdf(tmp_path / "sweep.nc")
    fails(capsys, ["fit", "--fit-on", str(tmp_path / "sweep.nc"), str(results / "quantities.nc"),
                   "--out", str(tmp_path / "f.nc")], "'lost-gone'", "the sweep's spec records")
