"""Atomic writes leave nothing behind: a temporary file or folder that a killed
writer left is removed by the next write to the same folder, by every writer; a
folder written as a unit appears whole, and its manifest catches a mixed one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.io import (
    FolderLock,
    atomic_folder,
    atomic_write,
    check_manifest,
    remove_stale_temporaries,
    write_manifest,
    write_text,
)


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def plant(folder, name="x.nc"):
    """What a writer killed mid-write leaves: a temporary file and a temporary folder."""
    pid = dead_pid()
    file = folder / f".{name}.{pid}.tmp.nc"
    file.write_bytes(b"half a file")
    staging = folder / f".results.{pid}.tmp"
    staging.mkdir()
    (staging / "table.nc").write_bytes(b"half a folder")
    return [file, staging]


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    stale = plant(tmp_path)
    live = tmp_path / f".y.nc.{os.getpid()}.tmp.nc"   # a writer still running
    live.write_bytes(b"in progress")
    write_text(tmp_path / "a.txt", "text")
    assert not any(p.exists() for p in stale)
    assert live.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_a_failed_write_leaves_the_target_as_it_was_and_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.txt", overwrite=True) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "theory"
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "table.nc").write_text("written")
        raise RuntimeError("killed before the scores")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_folder(target) as folder:
        (folder / "table.nc").write_text("one")
    with pytest.raises(PhantomError, match="--overwrite"), atomic_folder(target):
        pass
    with atomic_folder(target, overwrite=True) as folder:
        (folder / "scores.nc").write_text("two")
    assert [p.name for p in target.iterdir()] == ["scores.nc"]   # replaced, not blended
    assert [p.name for p in tmp_path.iterdir()] == ["theory"]


def test_a_manifest_catches_a_mixed_or_changed_folder(tmp_path):
    (tmp_path / "fits").mkdir()
    (tmp_path / "table.nc").write_text("table")
    (tmp_path / "fits" / "hier.nc").write_text("fit")
    write_manifest(tmp_path, "run-a", "loao")
    assert check_manifest(tmp_path)["run_id"] == "run-a"
    (tmp_path / "fits" / "other.nc").write_text("from another run")
    with pytest.raises(PhantomError, match="fits/other.nc was not written by loao run run-a"):
        check_manifest(tmp_path)
    (tmp_path / "fits" / "other.nc").unlink()
    (tmp_path / "table.nc").write_text("changed")
    with pytest.raises(PhantomError, match="table.nc is not the file loao run run-a wrote"):
        check_manifest(tmp_path)


def test_a_locked_folder_names_its_holder(tmp_path):
    with FolderLock(tmp_path, "sweep"), pytest.raises(
            PhantomError, match=rf"in use by another sweep \(pid {os.getpid()},"):
        FolderLock(tmp_path, "sweep").acquire()
    FolderLock(tmp_path, "sweep").acquire().release()


WRITERS = {
    "run": (["run", "--model", "tiny-gpt2", "--steps", "3", "--quiet", "--out", "out/x.nc"],
            "out"),
    "plot": (["plot", "run.nc", "-o", "out/x.png"], "out"),
    "plot-sweep": (["plot-sweep", "sweep", "-o", "out/s.png"], "out"),
    "report": (["report", "sweep", "-o", "out/r.html"], "out"),
    "sweep (resumed)": (["sweep", "tiny.toml", "--out", "sweep", "--quiet"],
                        "sweep/runs/tiny-gpt2/start-begin/lora-adamw-seed0"),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_removes_stale_temporaries(writer, tmp_path, monkeypatch, saved_run,
                                                cli_sweep):
    from runner.cli import main

    shutil.copy2(saved_run, tmp_path / "run.nc")
    shutil.copytree(cli_sweep / "out", tmp_path / "sweep")
    shutil.copy2(cli_sweep / "tiny.toml", tmp_path / "tiny.toml")
    argv, where = WRITERS[writer]
    (tmp_path / where).mkdir(parents=True, exist_ok=True)
    stale = plant(tmp_path / where)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert not any(p.exists() for p in stale), writer
