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


def _two_mode_spec(tmp_path):
    from runner.sweep import load_spec
    from tests.conftest import SMALL, write_spec

    text = SMALL.replace('modes = ["lora"]', 'modes = ["full", "lora"]').replace(
        'contexts = ["shame-guilt", "start-begin"]', 'contexts = ["shame-guilt"]').replace(
        "tolerance = 0.05", "tolerance = 0.05\nfind_max = false")
    return load_spec(write_spec(tmp_path, text))


def test_a_staged_sweep_keeps_the_groups_of_earlier_stages(tmp_path):
    from runner.sweep import run_sweep

    spec = _two_mode_spec(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(spec, out, only={"mode": ["lora"]})
    assert list(first.mode.values) == ["lora"]
    lora_runs = first.sizes["run"]
    # the next stage's folder may lose its run files: the thin record carries stage 1
    for path in out.glob("runs/*/*/lora-*/*.nc"):
        path.unlink()
    both = run_sweep(spec, out, only={"mode": ["full"]})
    assert sorted(both.mode.values) == ["full", "lora"]
    assert set(both.eta_c_status.sel(seed=0).values.ravel()) == {"resolved"}
    np.testing.assert_array_equal(both.eta_c.sel(mode="lora").values,
                                  first.eta_c.sel(mode="lora").values)
    assert int((both.run_mode == "lora").sum()) == lora_runs
    assert open_sweep(out / "sweep.nc").sizes["run"] == both.sizes["run"]


def test_the_thin_record_is_written_after_every_batch(tmp_path, monkeypatch):
    import pytest

    from runner.sweep import driver, executors, run_sweep

    spec = _two_mode_spec(tmp_path)
    real, calls = driver.search_batch, []

    def second_batch_dies(spec_, store, keys, *args, **kwargs):
        calls.append(keys)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec_, store, keys, *args, **kwargs)

    monkeypatch.setattr(executors, "search_batch", second_batch_dies)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "out")
    partial = open_sweep(tmp_path / "out" / "sweep.nc")
    assert list(partial.mode.values) == ["full"]
    assert set(partial.eta_c_status.values.ravel()) == {"resolved"}


def test_a_stop_within_a_batch_loses_no_finished_run(tmp_path, monkeypatch):
    import pytest

    from runner.sweep import executors, run_sweep
    from runner.training import loop

    spec = _two_mode_spec(tmp_path)
    monkeypatch.setattr(executors, "CHECKPOINT_SECONDS", 0.0)
    real, calls = loop.run, []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "run", counted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "out", engine="sequential")
    thin = open_sweep(tmp_path / "out" / "sweep.nc")
    assert thin.sizes["run"] == 3
    for path in (tmp_path / "out").glob("runs/**/*.nc"):   # only the thin record is left
        path.unlink()
    calls.clear()
    monkeypatch.setattr(loop, "run", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    done = run_sweep(spec, tmp_path / "out", engine="sequential")
    assert len(calls) == done.sizes["run"] - 3


def test_a_resumed_search_starts_where_it_started(tmp_path, monkeypatch):
    """Each group's search start is recorded (starts.json) and reused: a resume whose
    linear prediction came out differently in the last digits (another device)
    still proposes the runs it recorded, so nothing is run again."""
    from runner import at_init
    from runner.sweep import run_sweep
    from runner.training import loop

    spec = _two_mode_spec(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(spec, out, engine="sequential")
    assert (out / "starts.json").is_file()
    real = at_init.linear_predictions

    def perturbed(*args, **kwargs):   # a GPU's float32 gradients: other last digits
        return {c: (m0, g0, eta * (1 + 1e-5)) for c, (m0, g0, eta) in real(*args, **kwargs).items()}

    monkeypatch.setattr(at_init, "linear_predictions", perturbed)
    for path in out.glob("runs/**/*.nc"):   # resume from the thin record alone
        path.unlink()
    calls = []
    monkeypatch.setattr(loop, "run", lambda *a, **k: calls.append(1))
    again = run_sweep(spec, out, engine="sequential")
    assert calls == [] and again.sizes["run"] == first.sizes["run"]
    np.testing.assert_array_equal(again.seed_lr.values, first.seed_lr.values)


def test_a_stage_after_a_reusable_spec_change_keeps_the_earlier_stages(tmp_path):
    """Between stages the spec may change in ways that leave every run's definition
    alone (here the batch size): the next stage keeps the earlier groups' eta_c."""
    import dataclasses

    from runner.sweep import run_sweep

    spec = _two_mode_spec(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(spec, out, only={"mode": ["lora"]})
    both = run_sweep(dataclasses.replace(spec, slots=spec.slots + 1), out,
                     only={"mode": ["full"]})
    np.testing.assert_array_equal(both.eta_c.sel(mode="lora").values,
                                  first.eta_c.sel(mode="lora").values)
    assert set(both.eta_c_status.sel(seed=0).values.ravel()) == {"resolved"}
