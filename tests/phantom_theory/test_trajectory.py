"""The trajectory Dataset: labels, the run identity, and the netCDF round trip."""

import numpy as np
import pytest
import xarray as xr

from phantom_theory import open_run
from phantom_theory.trajectory import write_run


@pytest.fixture(scope="module")
def saved(run_of, tmp_path_factory):
    ds = run_of("tiny-neox", "lora")
    path = tmp_path_factory.mktemp("runs") / "run.nc"
    write_run(ds, path)
    return ds, path


def test_every_variable_has_a_long_name_and_numbers_have_units(run_of):
    ds = run_of("tiny-gpt2", "lora")
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name
        if var.dtype.kind == "f":
            assert "units" in var.attrs, name


def test_the_run_identity_is_in_coordinates(run_of):
    ds = run_of("tiny-gpt2", "lora")
    assert {"model", "context", "mode", "optimizer", "lr", "seed", "step"} <= set(ds.coords)


def test_the_netcdf_round_trip_preserves_values(saved):
    ds, path = saved
    back = open_run(path)
    for name in ds.data_vars:
        if ds[name].dtype.kind == "O":
            assert list(np.atleast_1d(back[name].values)) == list(np.atleast_1d(ds[name].values)), name
        else:
            np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)


def test_the_netcdf_round_trip_preserves_attributes(saved):
    ds, path = saved
    back = open_run(path)
    for key, value in ds.attrs.items():
        assert np.all(back.attrs[key] == value), key
    assert back.phi.attrs == ds.phi.attrs


def test_a_run_without_jumps_round_trips(tmp_path, run_of):
    ds = run_of("tiny-gpt2", "lora", lr=1e-4)
    assert ds.sizes["jump"] == 0
    write_run(ds, tmp_path / "quiet.nc")
    assert open_run(tmp_path / "quiet.nc").sizes["jump"] == 0


def test_writing_is_atomic_and_never_overwrites_silently(saved):
    from phantom_theory.errors import PhantomError

    ds, path = saved
    before = path.read_bytes()
    with pytest.raises(PhantomError, match="overwrite"):
        write_run(ds, path)
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*tmp*"))


def test_a_foreign_netcdf_is_refused(tmp_path):
    from phantom_theory.errors import PhantomError

    xr.Dataset({"x": ("t", np.arange(3))}).to_netcdf(tmp_path / "foreign.nc")
    with pytest.raises(PhantomError, match="not a phantom-theory trajectory"):
        open_run(tmp_path / "foreign.nc")
