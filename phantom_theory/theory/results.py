"""The folder a theory evaluation writes (``phantom loao --out DIR``) and reads back:

    table.nc                      the tidy table the theories were fitted to
    comparison.nc                 PSIS-LOO and LOAO ELPD, stacking weights, the gate
    scores.nc                     every blind prediction scored against the sweep
    fits/<theory>.nc              ArviZ InferenceData of each full fit
    predictions/<theory>--<model>.nc   the pre-registered predictions, hashed
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import xarray as xr

from ..errors import PhantomError
from ..io import SCHEMA_ATTR, open_checked, write_netcdf
from .fit import Fit, FitOptions, fit_to_dataset
from .table import SCHEMA as TABLE_SCHEMA
from .theories import THEORIES, fit_data

COMPARISON_SCHEMA = "phantom-theory/comparison/1"
SCORES_SCHEMA = "phantom-theory/scores/1"
FIT_SCHEMA = "phantom-theory/fit/1"


def write_fit(fit: Fit, table, options: FitOptions, attrs: dict, path) -> Path:
    """The fit as ArviZ InferenceData in netCDF, written atomically."""
    path = Path(path)
    idata = fit_to_dataset(fit, table, options, attrs)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        idata.to_netcdf(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_fit(path, table) -> Fit:
    """A Fit back from its InferenceData file (its data rebuilt from the table)."""
    try:
        posterior = xr.load_dataset(path, group="posterior", engine="netcdf4")
    except (OSError, ValueError) as error:
        raise PhantomError(f"{path} is not a readable fit file ({error})") from None
    attrs = posterior.attrs
    if attrs.get(SCHEMA_ATTR) != FIT_SCHEMA:
        raise PhantomError(f"{path} is not a phantom-theory fit")
    theory = THEORIES[attrs["theory"]]
    held_out = attrs.get("held_out") or None
    draws = {name: posterior[name].values for name in posterior.data_vars}
    diagnostics = {k[len("diagnostics_"):]: attrs[k] for k in attrs if k.startswith("diagnostics_")}
    diagnostics["passed"] = bool(diagnostics.get("passed", 0))
    data = dataclasses.replace(fit_data(table, held_out, theory.target),
                               centred_contexts=bool(attrs.get("centred_contexts", 1)))
    return Fit(theory.name, held_out, draws, diagnostics, attrs.get("sampler", ""),
               float(attrs.get("seconds", 0.0)), data)


def write_dataset(ds, path, schema: str):
    ds = ds.copy()
    ds.attrs[SCHEMA_ATTR] = schema
    return write_netcdf(ds, path, overwrite=True)


def open_table(path):
    return open_checked(path, TABLE_SCHEMA, "theory table")


def open_comparison(path):
    return open_checked(path, COMPARISON_SCHEMA, "theory comparison (from `phantom compare`)")


def open_scores(path):
    return open_checked(path, SCORES_SCHEMA, "blind-prediction scores (from `phantom loao`)")


def scores_from_dataset(ds) -> list[dict]:
    return json.loads(ds.attrs["scores_json"])
