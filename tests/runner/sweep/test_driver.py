"""The sweep driver: every group's eta_c resolved, every evaluated run recorded
once, and the sweep Dataset written with its provenance."""

import json

from phantom_theory.sweep import open_sweep
from tests.conftest import assert_same_table


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
