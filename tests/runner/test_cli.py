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


# -- custom contexts, the crossed set and broken selections ------------------------------

ADHOC = ["run", "--model", "tiny-gpt2", "--mode", "lora", "--lr", "1e-2", "--steps", "3",
         "--quiet"]
CUSTOM = ('[[context]]\nid = "begin-start"\nsentence = "At nine the meeting will"\n'
          'correct = "begin"\ncompetitor = "start"\n')


def test_an_adhoc_context_runs_and_is_recorded_under_a_derived_id(capsys, tmp_path):
    from phantom_theory.trajectory import open_run
    from runner.contexts.pool import adhoc_context

    out = tmp_path / "a.nc"
    assert main([*ADHOC, "--sentence", "The meeting will", "--correct", "begin",
                 "--competitor", "start", "--out", str(out)]) == 0
    ds = open_run(out)
    expected = adhoc_context("The meeting will", "begin", "start")
    assert ds.context.item() == expected.id == adhoc_context("The meeting will  ", "begin",
                                                             " start").id
    assert expected.id.startswith("begin-start-") and len(expected.id) == len("begin-start-") + 8
    assert (ds.attrs["context_sentence"], ds.attrs["context_correct"],
            ds.attrs["context_competitor"], ds.attrs["context_source"]) == (
        "The meeting will", "begin", "start", "command line")


@pytest.mark.parametrize("extra,fragments", [
    (["--sentence", "The meeting will", "--correct", "shame-guilt", "--competitor", "start"],
     ("'shame-guilt' is 3 tokens", "['▁shame', '<unk>', '<unk>']")),
    (["--sentence", "The meeting will", "--correct", "zzyzx", "--competitor", "start"],
     ("'zzyzx' is not in tiny-gpt2's vocabulary",)),
    (["--sentence", "The meeting will", "--correct", "start", "--competitor", "start"],
     ("both 'start'",)),
    (["--sentence", "  ", "--correct", "begin", "--competitor", "start"],
     ("the sentence is empty",)),
    (["--sentence", "The meeting will", "--correct", "deep sense", "--competitor", "start"],
     ("one word without spaces", "'deep sense'")),
    (["--sentence", "The meeting will", "--correct", "begin"], ("--competitor missing",)),
    (["--sentence", "The meeting will", "--correct", "begin", "--competitor", "start",
      "--context", "start-begin"], ("drop --context start-begin",)),
    (["--sentence", "The meeting will", "--correct", "begin", "--competitor", "start",
      "--contexts-file", "x.toml"], ("not both",)),
])
def test_a_bad_adhoc_context_is_one_line_and_writes_nothing(capsys, tmp_path, extra, fragments):
    out = tmp_path / "a.nc"
    fails(capsys, [*ADHOC, *extra, "--out", str(out)], *fragments)
    assert not out.exists()


def test_a_contexts_file_runs_its_context_and_records_the_file(capsys, tmp_path):
    from phantom_theory.trajectory import open_run

    path, out = tmp_path / "custom.toml", tmp_path / "a.nc"
    path.write_text(CUSTOM)
    assert main([*ADHOC, "--contexts-file", str(path), "--out", str(out)]) == 0
    ds = open_run(out)
    assert ds.context.item() == "begin-start" and ds.attrs["context_source"] == "custom.toml"
    assert ds.attrs["context_sentence"] == "At nine the meeting will"


@pytest.mark.parametrize("text,fragments", [
    (None, ("no such contexts file",)),
    ("", ("holds no contexts",)),
    ("[[context]\n", ("is not valid TOML",)),
    ('[[context]]\nid = "a"\nsentence = "s"\ncorrect = "x"\n', ("lacks ['competitor']",)),
    ('[[context]]\nid = "a"\nsentence = "s"\ncorrect = "x"\ncompetitor = 5\n',
     ("competitor of context 1", "not 5")),
    ('[[context]]\nid = "a"\nsentence = "s"\ncorrect = "x"\ncompetitor = "x"\n',
     ("both 'x'",)),
    ('context = 5\n', ("holds no contexts",)),
    (CUSTOM + CUSTOM.replace("begin-start", "glad-happy"), ("holds 2 contexts", "--context")),
    (CUSTOM.replace('id = "begin-start"', 'id = "start-begin"'), ("defined twice",)),
])
def test_a_bad_contexts_file_is_one_line_and_writes_nothing(capsys, tmp_path, text, fragments):
    path, out = tmp_path / "custom.toml", tmp_path / "a.nc"
    if text is not None:
        path.write_text(text)
    fails(capsys, [*ADHOC, "--contexts-file", str(path), "--out", str(out)], *fragments)
    assert not out.exists()


def test_quantities_measure_a_contexts_files_contexts(capsys, tmp_path):
    import xarray as xr

    path, out = tmp_path / "custom.toml", tmp_path / "q.nc"
    path.write_text(CUSTOM)
    assert main(["quantities", "tiny-gpt2", "--contexts-file", str(path), "--modes", "lora",
                 "--optimizers", "sgd", "--hessian-method", "power", "--hessian-max-iter", "2",
                 "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out) as ds:
        # the planted competitor 'begin' is ahead of 'start'; here it is the target
        assert list(ds.context.values) == ["begin-start"] and float(ds.m0.squeeze()) > 0


@pytest.mark.parametrize("argv,fragments", [
    (["--crossed", "tiny-gpt2", "tiny-neox", "--n", "0"], ("at least 1, not 0",)),
    (["--crossed", "tiny-gpt2", "--n", "4", "--n-held-out", "4"], ("below n = 4",)),
    (["--crossed", "tiny-gpt2", "--target-margin", "2"], ("--target-margin",)),
    (["--crossed", "tiny-gpt2", "tiny-neox", "--n", "40"],
     ("pool pair(s) are single tokens in every tokenizer", "fewer than the 40", "tiny-gpt2 splits",
      "tiny-neox splits", "is not in the vocabulary")),
    (["tiny-gpt2", "--n-held-out", "2"], ("crossed set only",)),
    ([], ("name the model",)),
    (["tiny-gpt2", "--n", "0"], ("at least 1, not 0",)),
    (["tiny-gpt2", "--min-margin", "100", "--max-margin", "200"],
     ("no context of the", "nothing was written")),
])
def test_a_selection_that_cannot_be_made_writes_nothing(capsys, tmp_path, argv, fragments):
    out = tmp_path / "selection.toml"
    fails(capsys, ["contexts", "select", *argv, "--out", str(out)], *fragments)
    assert not out.exists()


def test_a_broken_selection_file_fails_only_the_commands_that_need_it(capsys, tmp_path,
                                                                      monkeypatch):
    data = tmp_path / "data"
    shutil.copytree("data/contexts", data / "contexts")
    broken = data / "contexts" / "selected" / "broken.toml"
    broken.write_text("[selection]\nmodel = \"broken\"\n")   # what an empty selection was
    monkeypatch.setenv("PHANTOM_DATA", str(data))
    assert main([*RUN, "--out", str(tmp_path / "a.nc")]) == 0
    assert main(["models", "list"]) == 0
    assert main(["contexts", "list", "--ids"]) == 0
    capsys.readouterr()
    fails(capsys, ["contexts", "list", "--selected", "broken"], str(broken),
          "phantom contexts select broken --overwrite")
    fails(capsys, ["run", "--context", "nope", "--out", str(tmp_path / "b.nc")],
          "unknown context 'nope'", "broken.toml was skipped")
