"""The resumable sweep store: a finished sweep runs nothing again, another spec in
the same folder is refused (or discarded with overwrite), a finer search reuses
the finished runs, and a killed sweep resumes to the same table."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.sweep import open_sweep
from runner.sweep import load_spec, run_sweep
from tests.conftest import ROOT, assert_same_table, write_spec


def test_rerunning_a_finished_sweep_runs_nothing_again(small_sweep):
    spec, root, ds = small_sweep
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("runs/**/*.nc")}
    again = run_sweep(spec, root)
    assert {p: p.stat().st_mtime_ns for p in root.glob("runs/**/*.nc")} == stamps
    assert_same_table(again, ds)


def test_a_changed_spec_in_the_same_folder_is_refused(small_sweep):
    spec, root, _ = small_sweep
    with pytest.raises(PhantomError, match="differs in steps"):
        run_sweep(dataclasses.replace(spec, steps=21), root)


@pytest.mark.parametrize("method", ["bisect", "root"])
def test_a_finer_search_or_more_groups_reuse_the_finished_runs(tmp_path, method):
    """Changing the search or the groups, not the runs, extends the sweep: every
    finished run is reused untouched, and a dropped group's runs are removed. A finer
    bisection asks for every run the coarser one made; a finer root search starts
    from the same seed but may close in on other points."""
    spec = load_spec(write_spec(tmp_path))
    spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, method=method))
    narrow = dataclasses.replace(spec, contexts=("shame-guilt",))
    first = run_sweep(narrow, tmp_path / "out")
    out = tmp_path / "out"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/*.nc")}
    finer = dataclasses.replace(spec, search=dataclasses.replace(spec.search, tolerance=0.02))
    ds = run_sweep(finer, out)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    reused = set(first.run_file.values.tolist()) & set(ds.run_file.values.tolist())
    if method == "bisect":
        assert set(first.run_file.values.tolist()) < set(ds.run_file.values.tolist())
    else:
        assert reused   # at least the seed run, as it was
    assert set(ds.context.values) == set(spec.contexts)
    back = run_sweep(dataclasses.replace(finer, contexts=("shame-guilt",)), out)
    assert list(out.glob("runs/*/shame-guilt/*/*.nc"))
    assert not list(out.glob("runs/*/start-begin/**/*.nc"))
    assert set(back.run_file.values.tolist()) <= {
        str(p.relative_to(out)) for p in out.glob("runs/**/*.nc")}


def test_overwrite_discards_a_sweep_with_another_spec(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    narrow = dataclasses.replace(spec, contexts=("shame-guilt",))
    run_sweep(narrow, tmp_path / "out")
    ds = run_sweep(dataclasses.replace(narrow, steps=15), tmp_path / "out", overwrite=True)
    assert set(ds.run_file.values.tolist()) == {
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").glob("runs/**/*.nc")}


def test_a_sweep_killed_mid_way_resumes_to_the_same_table(tmp_path, small_sweep):
    """SIGKILL a sweep while it runs, run it again: every run exists exactly once,
    none lost, and the eta_c table equals an uninterrupted sweep's."""
    _, _, uninterrupted = small_sweep
    spec_path = write_spec(tmp_path)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "runner.cli", "sweep", str(spec_path), "--out", str(out),
               "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/**/*.nc"))) < 8:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(out.glob("runs/**/*.nc")))
    assert 8 <= done_before < uninterrupted.sizes["run"], "the kill did not land mid-way"
    assert not (out / "sweep.nc").exists()

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ds = open_sweep(out / "sweep.nc")
    files = sorted(str(p.relative_to(out)) for p in out.glob("runs/**/*.nc"))
    assert sorted(ds.run_file.values.tolist()) == files            # none lost, none extra
    assert len(set(files)) == len(files) == ds.sizes["run"]        # none duplicated
    assert not list(out.glob("runs/**/.*tmp*"))
    assert sorted(files) == sorted(uninterrupted.run_file.values.tolist())
    assert_same_table(ds, uninterrupted)


def test_a_thin_record_resumes_without_running_anything(tmp_path, small_sweep):
    """The sweep table and spec alone (no trajectories, as data/real publishes them)
    replay every search on a new machine and run nothing new."""
    import shutil

    spec, root, ds = small_sweep
    thin = tmp_path / "thin"
    thin.mkdir()
    for name in ("sweep.nc", "spec.json"):
        shutil.copy2(root / name, thin / name)
    resumed = run_sweep(spec, thin)
    assert not list(thin.glob("runs/**/*.nc"))
    assert_same_table(resumed, ds)
