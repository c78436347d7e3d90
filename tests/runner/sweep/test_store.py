"""The resumable sweep store: a finished sweep runs nothing again, another spec in
the same folder is refused (or replaced whole with overwrite), a finer search reuses
the finished runs, a killed sweep resumes to the same table, one sweep at a time
holds a folder, and a run file is reused only for its own run definition."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.schema import GROUP_DIMS
from phantom_theory.sweep import open_sweep
from phantom_theory.trajectory import open_run
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


# -- one writer per folder, and runs reused only for their own definition -------------

def test_a_second_store_on_a_locked_folder_is_refused_with_the_holders_pid(tmp_path):
    from runner.sweep import SweepStore

    spec = load_spec(write_spec(tmp_path))
    holder = SweepStore(tmp_path / "out", spec)
    try:
        with pytest.raises(PhantomError, match=rf"in use by another sweep \(pid {os.getpid()},"):
            SweepStore(tmp_path / "out", dataclasses.replace(spec, steps=30), overwrite=True)
        assert (tmp_path / "out" / "spec.json").read_text() == spec.to_json()
    finally:
        holder.release()
    SweepStore(tmp_path / "out", spec).release()   # free again once released


def _copy(root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    return copy


def _rewrite(path, **attrs):
    import xarray as xr

    ds = xr.load_dataset(path)
    ds.attrs.update(attrs)
    path.unlink()
    ds.to_netcdf(path)


@pytest.mark.parametrize("attr,value", [("run_dtype", "float32"), ("run_steps", 30),
                                        ("run_lora_rank", 4), ("outcome_trend_alpha", 0.1),
                                        ("results_version", 0)])
def test_a_run_file_of_another_definition_is_not_reused(small_sweep, tmp_path, attr, value):
    """A run file is reused only if it was made by the very run asked for: any run
    option, outcome or jump option, or results version that differs is an error
    naming the file and the field; with overwrite the run is made again."""
    from runner.sweep import SweepStore

    spec, root, ds = small_sweep
    copy = _copy(root, tmp_path)

    def run(i):
        return (tuple(np.asarray(ds[f"run_{d}"].values[i]).item() for d in GROUP_DIMS),
                float(ds.run_lr.values[i]))

    group, lr = run(3)
    path = copy / str(ds.run_file.values[3])
    _rewrite(path, **{attr: value})
    store = SweepStore(copy, spec)
    try:
        with pytest.raises(PhantomError, match=rf"{path.name}.*its {attr} is {value!r}"):
            store.load(group, lr)
        assert store.load(*run(4)) is not None   # the others are reused
    finally:
        store.release()
    store = SweepStore(copy, spec, overwrite=True)
    try:
        assert store.load(group, lr) is None     # made again, replacing the file
    finally:
        store.release()


def test_a_thin_record_of_another_definition_is_not_reused(small_sweep, tmp_path):
    """spec.json of one sweep beside the sweep.nc of another (the mixing the lock
    prevents) is refused: the record's run definition is not the spec's."""
    import shutil

    spec, root, _ = small_sweep
    thin = tmp_path / "thin"
    thin.mkdir()
    for name in ("sweep.nc", "spec.json"):
        shutil.copy2(root / name, thin / name)
    _rewrite(thin / "sweep.nc", run_steps=30)
    with pytest.raises(PhantomError, match=r"sweep.nc.*its run_steps is 30, the spec's is 20"):
        run_sweep(spec, thin)


def test_a_file_predating_an_option_counts_as_its_default():
    from runner.sweep.store import definition_mismatch

    expected = {"run_dtype": "float64", "run_memory_check": "on", "results_version": 1}
    defaults = {"run_memory_check": "on", "results_version": 1, "run_dtype": "float32"}
    assert definition_mismatch({"run_dtype": "float64"}, expected, defaults) is None
    assert definition_mismatch({}, expected, defaults) == ("run_dtype", "float32", "float64")


def test_overwrite_builds_the_replacement_beside_the_sweep_and_swaps_it_in(tmp_path,
                                                                          monkeypatch):
    """--overwrite never blends: killed part-way, the old sweep is intact and the
    replacement waits beside it; run again, the replacement resumes and is swapped
    in whole, and no file of the old sweep is left."""
    from runner.sweep import store as store_module

    spec = load_spec(write_spec(tmp_path))
    narrow = dataclasses.replace(spec, contexts=("shame-guilt",))
    out = tmp_path / "out"
    run_sweep(narrow, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".phantom.lock"}
    other = dataclasses.replace(narrow, steps=15)
    saved = []
    real_save = store_module.SweepStore.save

    def dying_save(self, ds):
        if len(saved) == 3:
            raise KeyboardInterrupt
        saved.append(1)
        return real_save(self, ds)

    monkeypatch.setattr(store_module.SweepStore, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(other, out, overwrite=True)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".phantom.lock"}
    assert after == before                                   # the old sweep, untouched
    staging = tmp_path / ".out.replacing"
    assert len(list(staging.glob("runs/**/*.nc"))) == 3
    monkeypatch.setattr(store_module.SweepStore, "save", real_save)
    ds = run_sweep(other, out, overwrite=True)
    assert not staging.exists()
    files = sorted(str(p.relative_to(out)) for p in out.glob("runs/**/*.nc"))
    assert sorted(ds.run_file.values.tolist()) == files
    assert json.loads((out / "spec.json").read_text())["steps"] == 15
    assert {int(open_run(out / f).attrs["run_steps"]) for f in files} == {15}


def test_overwrite_never_replaces_a_folder_that_holds_no_sweep(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(PhantomError, match="holds no sweep spec"):
        run_sweep(spec, tmp_path / "mine", overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir() if p.name != ".phantom.lock"] == [
        "notes.txt"]


CONCURRENT = """
name = "concurrent"
models = ["tiny-gpt2"]
contexts = ["start-begin", "shame-guilt"]
modes = ["lora"]
optimizers = ["adamw"]
steps = 30
[lr]
lo = 1e-4
hi = 1.0
tolerance = 0.2
grid_points = 4
"""


@pytest.mark.slow
def test_two_sweeps_on_one_folder_never_mix(tmp_path):
    """A real sweep holds its folder: while it runs (frozen with SIGSTOP, holding
    the lock), the same sweep and a 20-step sweep with --overwrite, both real
    processes, are refused with its pid and change nothing; it then finishes alone,
    and the same sweep run after it computes nothing again."""
    first = write_spec(tmp_path, CONCURRENT, "first.toml")
    other = write_spec(tmp_path, CONCURRENT.replace("steps = 30", "steps = 20"), "other.toml")
    out = tmp_path / "out"

    def sweep(spec, *extra):
        return [sys.executable, "-m", "runner.cli", "sweep", str(spec), "--out", str(out),
                "--quiet", *extra]

    log = tmp_path / "holder.err"
    with open(log, "w") as err:
        holder = subprocess.Popen(sweep(first), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    lock = out / ".phantom.lock"
    deadline = time.time() + 300
    while time.time() < deadline and not (lock.is_file()
                                          and f"pid {holder.pid}," in lock.read_text()):
        assert holder.poll() is None, log.read_text()
        time.sleep(0.05)
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        snapshot = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
        rivals = [subprocess.Popen(sweep(spec, *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
                  for spec, extra in ((first, ()), (other, ("--overwrite",)))]
        for rival in rivals:
            err = rival.communicate(timeout=300)[1]
            assert rival.returncode == 2, err
            assert f"in use by another sweep (pid {holder.pid}," in err and err.count("\n") == 1
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == snapshot
        assert not (tmp_path / ".out.replacing").exists()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert holder.wait(timeout=600) == 0, log.read_text()
    ds = open_sweep(out / "sweep.nc")
    files = sorted(out.glob("runs/**/*.nc"))
    assert json.loads(ds.attrs["sweep_spec"])["steps"] == 30
    assert {int(open_run(f).attrs["run_steps"]) for f in files} == {30}
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = subprocess.run(sweep(first), cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert {f: f.stat().st_mtime_ns for f in files} == stamps   # nothing computed twice


def test_the_thin_record_carries_the_frozen_embedding_evidence(small_sweep):
    """Every run of the LoRA sweep logs its matrices' digests; the record counts the
    logged states whose embedding digest is not the start's: 0 under LoRA."""
    _, root, ds = small_sweep
    assert (ds.run_embedding_changes.values == 0).all()
    assert (ds.run_readout_changes.values == 0).all()


def test_a_changed_embedding_is_counted():
    import xarray as xr

    from runner.sweep.store import hash_changes

    ds = xr.Dataset({"embedding_sha256": ("step", np.array(["a", "", "b", "b"], dtype=object))},
                    attrs={"embedding_sha256_start": "a", "embedding_sha256_end": "b"})
    changes = hash_changes(ds)
    assert changes["embedding_changes"] == 2.0   # the two logged steps; T is the end
    assert np.isnan(changes["readout_changes"])
    ds["embedding_sha256"] = ("step", np.array(["a", "b", "", ""], dtype=object))
    assert hash_changes(ds)["embedding_changes"] == 2.0   # one logged step, then the end


def test_a_run_made_on_another_device_is_the_same_run(small_sweep, tmp_path):
    """The device says where a run executed, not what it computed: a CPU study's
    folder takes the runs of a GPU stage (a file recording run_device cuda is reused,
    not refused), and the thin record keeps each run's device, engine and cost."""
    from runner.sweep import SweepStore

    spec, root, ds = small_sweep
    assert set(ds.run_device.values) == {"cpu"} and set(ds.run_engine.values) == {"batched"}
    assert (ds.run_seconds_per_step.values > 0).all()
    copy = _copy(root, tmp_path)
    path = copy / str(ds.run_file.values[0])
    _rewrite(path, run_device="cuda:0", device="cuda:0")
    group = tuple(np.asarray(ds[f"run_{d}"].values[0]).item() for d in GROUP_DIMS)
    store = SweepStore(copy, spec)
    try:
        record = store.load(group, float(ds.run_lr.values[0]))
    finally:
        store.release()
    assert record is not None and record["device"] == "cuda:0"
    with pytest.raises(PhantomError, match="device 'tpu' of --device is not a torch"):
        run_sweep(spec, copy, device="tpu")
