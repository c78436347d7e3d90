"""One overwrite rule for every writer: an existing output is never replaced without
--overwrite, and the refusal comes before any work (no model is loaded, nothing is
fitted). A sweep folder is replaced only whole, and never when it holds no sweep."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import fails

FIT_ON = ["--fit-on", "sweep", "quantities.nc"]

# (writer, command line writing to TARGET, whether TARGET is a folder)
WRITERS = [
    ("run", ["run", "--model", "tiny-gpt2", "--steps", "3", "--quiet", "--out", "TARGET"],
     False),
    ("quantities", ["quantities", "tiny-gpt2", "--quiet", "--out", "TARGET"], False),
    ("plot", ["plot", "run.nc", "-o", "TARGET.png"], False),
    ("plot-sweep", ["plot-sweep", "sweep", "-o", "TARGET.png"], False),
    ("fit", ["fit", *FIT_ON, "--out", "TARGET"], False),
    ("compare", ["compare", *FIT_ON, "--out", "TARGET"], False),
    ("predict", ["predict", "--held-out", "tiny-gpt2", *FIT_ON, "--out", "TARGET"], False),
    ("report", ["report", "sweep", "-o", "TARGET"], False),
    ("contexts select", ["contexts", "select", "tiny-gpt2", "--out", "TARGET"], False),
    ("loao", ["loao", *FIT_ON, "--out", "TARGET"], True),
]


@pytest.fixture()
def folder(tmp_path, monkeypatch, saved_run, cli_sweep):
    shutil.copy2(saved_run, tmp_path / "run.nc")
    shutil.copytree(cli_sweep / "out", tmp_path / "sweep")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("writer,argv,is_folder", WRITERS, ids=[w[0] for w in WRITERS])
def test_an_existing_output_is_not_replaced_without_overwrite(folder, capsys, writer, argv,
                                                              is_folder):
    name = next(a for a in argv if a.startswith("TARGET")).replace("TARGET", "existing")
    target = folder / name
    if is_folder:
        target.mkdir()
        (target / "scores.nc").write_bytes(b"keep")
        kept = target / "scores.nc"
    else:
        target.write_bytes(b"keep")
        kept = target
    fails(capsys, [a.replace("TARGET", "existing") for a in argv], "--overwrite")
    assert kept.read_bytes() == b"keep"
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        ["run.nc", "sweep", name]), "something else was written"


def test_overwrite_replaces_an_output(folder, capsys):
    from runner.cli import main

    (folder / "x.png").write_bytes(b"old")
    assert main(["plot", "run.nc", "-o", "x.png", "--overwrite"]) == 0
    assert (folder / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_folder_of_another_spec_is_refused(folder, capsys):
    from tests.conftest import TINY_SWEEP

    (folder / "longer.toml").write_text(TINY_SWEEP.replace("steps = 5", "steps = 6"))
    before = {p: p.read_bytes() for p in (folder / "sweep").rglob("*") if p.is_file()}
    fails(capsys, ["sweep", "longer.toml", "--out", "sweep", "--quiet"], "differs in",
          "steps", "--overwrite")
    assert {p: p.read_bytes() for p in (folder / "sweep").rglob("*") if p.is_file()} == before


def test_overwrite_never_replaces_a_folder_that_is_not_a_sweep(folder, capsys):
    from tests.conftest import TINY_SWEEP

    (folder / "tiny.toml").write_text(TINY_SWEEP)
    (folder / "notes").mkdir()
    (folder / "notes" / "draft.txt").write_text("keep")
    fails(capsys, ["sweep", "tiny.toml", "--out", "notes", "--overwrite", "--quiet"],
          "holds no sweep spec")
    assert (folder / "notes" / "draft.txt").read_text() == "keep"
