"""The command line of the commands that train or load models (run, sweep,
contexts): the documented commands work, and every bad input gets one clear line
on stderr, exit status 2, no traceback, and nothing overwritten."""

import shutil

import pytest

from runner.cli import main
from tests.conftest import RUN, fails


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
          "steps must be an integer from 1 to")


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


def test_contexts_check_reports_ranks_and_overlaps(capsys):
    assert main(["contexts", "check", "tiny-neox"]) == 0
    out = capsys.readouterr().out
    assert "shame-guilt" in out and "S_ck" in out


def test_contexts_list_shows_a_models_selection_in_order(capsys):
    """The ids in the order of the model's selection file, whatever that order is
    (how a selection is ordered is tests/runner/contexts/test_selection.py's)."""
    from runner.contexts.pool import read_contexts, selected_path

    assert main(["contexts", "list", "--selected", "gemma3-270m", "--ids"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids == [c.id for c in read_contexts(selected_path("gemma3-270m"))]
    fails(capsys, ["contexts", "list", "--selected", "no-such-model"],
          "phantom contexts select no-such-model")


def test_a_missing_sweep_spec(capsys, tmp_path):
    fails(capsys, ["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")],
          "no such sweep spec")


def test_an_unknown_executor(capsys, cli_sweep):
    fails(capsys, ["sweep", str(cli_sweep / "tiny.toml"), "--out", str(cli_sweep / "out"),
                   "--executor", "slurm"], "'slurm'", "local", "ray")
