"""Sweeps: the spec, the resumable store, the eta_c table, kill-and-resume, Ray."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.sweep import open_sweep
from runner.sweep import SweepSpec, load_spec, run_sweep

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
name = "small"
models = ["tiny-neox"]
contexts = ["shame-guilt", "start-begin"]
modes = ["lora"]
optimizers = ["sgd"]
seeds = [0]
steps = 20
[lr]
lo = 1e-6
hi = 10.0
tolerance = 0.05
grid_points = 6
[run]
dtype = "float64"
"""


def write_spec(tmp_path, text=SMALL, name="small.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    spec = load_spec(write_spec(root))
    ds = run_sweep(spec, root / "out")
    return spec, root / "out", ds


TABLE = ("eta_c", "eta_c_lo", "eta_c_hi", "eta_c_status", "eta_max", "eta_max_status",
         "n_runs", "non_monotone")


def assert_same_table(a, b):
    """The two sweeps' eta_c tables are equal (NaN equal to NaN)."""
    for name in TABLE:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_the_shipped_specs_load():
    demo, study = load_spec(ROOT / "data/sweeps/demo.toml"), load_spec(ROOT / "data/sweeps/study.toml")
    assert len(demo.groups()) == 50
    assert len(study.models) == 5 and len(study.contexts) == 10
    assert set(study.modes) == {"full", "lora"}


@pytest.mark.parametrize("edit,message", [
    (("steps = 20", "steps = 20\nbogus = 1"), "unknown key"),
    (('models = ["tiny-neox"]', "models = []"), "lists no models"),
    (("lo = 1e-6", "lo = 100.0"), "0 < lo < hi"),
    (('dtype = "float64"', 'dtype = "float64"\nlr = 0.1'), "may not set"),
    (('optimizers = ["sgd"]', 'optimizers = ["lbfgs"]'), "optimizer must be"),
])
def test_a_bad_spec_is_refused_with_a_clear_message(tmp_path, edit, message):
    with pytest.raises(PhantomError, match=message):
        load_spec(write_spec(tmp_path, SMALL.replace(*edit)))


def test_the_spec_round_trips_through_json(small_sweep):
    spec, _, _ = small_sweep
    assert SweepSpec.from_json(spec.to_json()) == spec


def test_every_group_gets_a_resolved_eta_c(small_sweep):
    _, _, ds = small_sweep
    assert set(ds.eta_c_status.values.ravel()) == {"resolved"}
    assert (ds.eta_c_hi / ds.eta_c_lo - 1 <= 0.05).all()


def test_every_evaluated_run_is_recorded_and_on_disk_once(small_sweep):
    _, root, ds = small_sweep
    files = sorted(str(p.relative_to(root)) for p in root.glob("runs/**/*.nc"))
    assert sorted(ds.run_file.values.tolist()) == files
    assert int(ds.n_runs.sum()) == ds.sizes["run"] == len(files)


def test_the_sweep_dataset_round_trips_with_provenance(small_sweep):
    _, root, ds = small_sweep
    back = open_sweep(root / "sweep.nc")
    assert_same_table(back, ds)
    for key in ("git_commit", "sweep_spec_sha256", "search_tolerance", "run_dtype", "torch_version"):
        assert key in back.attrs, key
    assert json.loads(back.attrs["sweep_spec"])["steps"] == 20


def test_the_architecture_eta_c_is_the_geometric_mean_over_contexts(small_sweep):
    _, _, ds = small_sweep
    values = ds.eta_c.sel(model="tiny-neox", mode="lora", optimizer="sgd").values.ravel()
    expected = np.exp(np.log(values).mean())
    assert float(ds.eta_c_arch.sel(model="tiny-neox", mode="lora", optimizer="sgd")) == \
        pytest.approx(expected)


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


def test_a_finer_search_or_more_groups_reuse_the_finished_runs(tmp_path):
    """Changing the search or the groups, not the runs, extends the sweep: every
    finished run is reused untouched, and a dropped group's runs are removed."""
    spec = load_spec(write_spec(tmp_path))
    narrow = dataclasses.replace(spec, contexts=("shame-guilt",))
    first = run_sweep(narrow, tmp_path / "out")
    out = tmp_path / "out"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/*.nc")}
    finer = dataclasses.replace(spec, search=dataclasses.replace(spec.search, tolerance=0.02))
    ds = run_sweep(finer, out)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert set(first.run_file.values.tolist()) < set(ds.run_file.values.tolist())
    assert set(ds.context.values) == set(spec.contexts)
    back = run_sweep(dataclasses.replace(finer, contexts=("shame-guilt",)), out)
    assert not list(out.glob("runs/*/start-begin/*.nc"))
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


def test_the_ray_executor_gives_the_local_table(tmp_path, small_sweep):
    ray = pytest.importorskip("ray")
    spec, _, local = small_sweep
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = run_sweep(spec, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    assert ds.attrs["executor"] == "ray"
    assert_same_table(ds, local)
