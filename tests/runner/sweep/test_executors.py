"""The executors: Ray gives the local executor's table."""

import pytest

from runner.sweep import run_sweep
from tests.conftest import assert_same_table


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
