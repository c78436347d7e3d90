"""The sweep driver: every group's eta_c resolved, every evaluated run recorded
once, and the sweep Dataset written with its provenance."""

import json

import numpy as np

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


def test_the_root_and_bisect_searches_agree_within_the_tolerance(tmp_path):
    import dataclasses

    from runner.sweep import load_spec, run_sweep
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path))
    answers = {}
    for method in ("bisect", "root"):
        search = dataclasses.replace(spec.search, method=method, tolerance=0.01, find_max=False)
        answers[method] = run_sweep(dataclasses.replace(spec, search=search), tmp_path / method)
    bisect, root = answers["bisect"], answers["root"]
    assert set(root.eta_c_status.values.ravel()) == {"resolved"}
    # each certified bracket contains the other's answer: the same edge, to 1%
    assert ((root.eta_c_lo <= bisect.eta_c_hi) & (bisect.eta_c_lo <= root.eta_c_hi)).all()
    assert (abs(root.eta_c / bisect.eta_c - 1) <= 0.01).all()
    assert int(root.n_runs.sum()) * 2 <= int(bisect.n_runs.sum())
    # the root search started where the linear theory put the flip
    assert (root.seed_lr > 0).all() and (abs(np.log(root.seed_lr / root.eta_c)) < np.log(3)).all()
