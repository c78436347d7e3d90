"""netCDF reading and writing: atomic writes, schema-checked reads, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import PhantomError

SCHEMA_ATTR = "phantom_schema"


def check_output_path(path, overwrite: bool = False) -> Path:
    """Refuse an output path in a missing folder, or an existing file without overwrite."""
    path = Path(path)
    if path.is_dir():
        raise PhantomError(f"output path {path} is a directory; give a file name such as {path / 'run.nc'}")
    if not path.parent.is_dir():
        raise PhantomError(f"the folder {path.parent} for output {path} does not exist; create it first")
    if path.exists() and not overwrite:
        raise PhantomError(f"{path} already exists; pass --overwrite to replace it")
    return path


def _encoding(ds: xr.Dataset) -> dict:
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "fiub" and var.ndim > 0:
            encoding[name] = {"zlib": True, "complevel": 4}
    return encoding


def write_netcdf(ds: xr.Dataset, path, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` atomically: a temporary file in the same folder,
    flushed to disk, then renamed over the target. A crash leaves either the old
    file or the new one, never half of one."""
    path = check_output_path(path, overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def open_checked(path, schema: str, what: str) -> xr.Dataset:
    """Load a netCDF file written by this toolkit, checking its schema attribute."""
    path = Path(path)
    if not path.is_file():
        raise PhantomError(f"no such file: {path}")
    try:
        ds = xr.load_dataset(path, engine="netcdf4")
    except Exception as error:  # netCDF4 raises OSError, RuntimeError or ValueError
        raise PhantomError(
            f"{path} is not a readable netCDF file ({type(error).__name__}: {error}); "
            f"give a {what} written by phantom"
        ) from None
    found = ds.attrs.get(SCHEMA_ATTR)
    if found != schema:
        raise PhantomError(
            f"{path} is not a phantom-theory {what} (its {SCHEMA_ATTR} attribute is "
            f"{found!r}, expected {schema!r})"
        )
    return ds


def string_array(values) -> np.ndarray:
    """Strings as an object array, which xarray writes as netCDF variable-length strings."""
    return np.array(list(values), dtype=object)
