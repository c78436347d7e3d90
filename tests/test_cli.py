"""The command line: the documented commands work, and every bad input gets one
clear line on stderr, exit status 2, no traceback, and nothing overwritten."""

import shutil

import pytest

from runner.cli import main

RUN = ["run", "--model", "tiny-gpt2", "--context", "start-begin", "--mode", "lora",
       "--lr", "1e-2", "--steps", "8", "--quiet"]


def fails(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("phantom: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "x.nc"
    assert main([*RUN, "--out", str(path)]) == 0
    return path


def test_run_show_and_plot_work(saved_run, capsys, tmp_path):
    assert main(["show", str(saved_run)]) == 0
    out = capsys.readouterr().out
    assert "outcome" in out and "phi" in out and "jumps" in out
    assert main(["plot", str(saved_run), "-o", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_model(capsys, tmp_path):
    fails(capsys, ["run", "--model", "no-such-model", "--out", str(tmp_path / "a.nc")],
          "unknown model 'no-such-model'")


def test_unknown_context(capsys, tmp_path):
    fails(capsys, ["run", "--context", "no-such-context", "--out", str(tmp_path / "a.nc")],
          "unknown context 'no-such-context'")


@pytest.mark.parametrize("lr", ["0", "-1e-3"])
def test_non_positive_learning_rate(capsys, tmp_path, lr):
    fails(capsys, ["run", f"--lr={lr}", "--out", str(tmp_path / "a.nc")],
          "learning rate must be positive")


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_non_positive_steps(capsys, tmp_path, steps):
    fails(capsys, ["run", f"--steps={steps}", "--out", str(tmp_path / "a.nc")],
          "steps must be a positive integer")


def test_a_malformed_number(capsys, tmp_path):
    fails(capsys, ["run", "--lr", "fast", "--out", str(tmp_path / "a.nc")], "--lr")


def test_a_multi_token_word_names_its_tokens(capsys, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree("data/contexts", data / "contexts")
    (data / "contexts" / "extra.toml").write_text(
        '[[context]]\nid = "shame-deep-sense"\nsentence = "She felt a"\n'
        'correct = "shame"\ncompetitor = "deep sense"\n')
    monkeypatch.setenv("PHANTOM_DATA", str(data))
    fails(capsys, ["run", "--context", "shame-deep-sense", "--out", str(tmp_path / "a.nc")],
          "'deep sense' is 2 tokens", "['▁deep', '▁sense']")


def test_an_output_in_a_missing_folder(capsys, tmp_path):
    fails(capsys, [*RUN, "--out", str(tmp_path / "missing" / "a.nc")], "does not exist")


def test_an_existing_output_is_not_overwritten(capsys, saved_run):
    before = saved_run.read_bytes()
    fails(capsys, [*RUN, "--out", str(saved_run)], "--overwrite")
    assert saved_run.read_bytes() == before


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
    import numpy as np
    import xarray as xr

    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(foreign)
    extra = ["-o", str(tmp_path / "out.png")] if command == "plot" else []
    fails(capsys, [command, str(foreign), *extra], "not a phantom-theory trajectory")


def test_a_missing_file(capsys, tmp_path):
    fails(capsys, ["show", str(tmp_path / "nope.nc")], "no such file")


def test_contexts_check_reports_ranks_and_overlaps(capsys):
    assert main(["contexts", "check", "tiny-neox"]) == 0
    out = capsys.readouterr().out
    assert "shame-guilt" in out and "S_ck" in out


def test_contexts_list_shows_a_models_selection_in_order(capsys):
    from runner.contexts import read_contexts, selected_path

    assert main(["contexts", "list", "--selected", "gemma3-270m", "--ids"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids == [c.id for c in read_contexts(selected_path("gemma3-270m"))]
    assert len(ids) == 10 and ids[:2] == ["upset-sad", "mistake-error"]   # the committed file
    fails(capsys, ["contexts", "list", "--selected", "no-such-model"],
          "phantom contexts select no-such-model")


TINY_SWEEP = """
models = ["tiny-gpt2"]
contexts = ["start-begin"]
modes = ["lora"]
optimizers = ["adamw"]
steps = 5
[lr]
lo = 1e-4
hi = 1.0
tolerance = 0.5
grid_points = 3
"""


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-sweep")
    (root / "tiny.toml").write_text(TINY_SWEEP)
    assert main(["sweep", str(root / "tiny.toml"), "--out", str(root / "out"), "--quiet"]) == 0
    return root


def test_sweep_show_and_plot_sweep_work(cli_sweep, capsys):
    assert main(["sweep-show", str(cli_sweep / "out")]) == 0
    out = capsys.readouterr().out
    assert "eta_c" in out and "tiny-gpt2" in out and "start-begin" in out
    assert main(["plot-sweep", str(cli_sweep / "out"), "-o", str(cli_sweep / "s.png")]) == 0
    assert (cli_sweep / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_a_missing_sweep_spec(capsys, tmp_path):
    fails(capsys, ["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")],
          "no such sweep spec")


def test_an_unknown_executor(capsys, cli_sweep):
    fails(capsys, ["sweep", str(cli_sweep / "tiny.toml"), "--out", str(cli_sweep / "out"),
                   "--executor", "slurm"], "unknown executor")


def test_sweep_show_refuses_a_trajectory(capsys, saved_run):
    fails(capsys, ["sweep-show", str(saved_run)], "not a phantom-theory sweep")
