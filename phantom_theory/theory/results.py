"""The folder a theory evaluation writes (``phantom loao --out DIR``) and reads back.

Its files, relative to DIR:

    table.nc                      the tidy table the theories were fitted to
    comparison.nc                 PSIS-LOO and LOAO ELPD, stacking weights, the gate
    scores.nc                     every blind prediction scored against the sweep
    fits/<theory>.nc              ArviZ InferenceData of each full fit
    predictions/<theory>--<model>.nc   the pre-registered predictions, hashed
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import xarray as xr

from ..errors import PhantomError
from ..io import atomic_write
from ..schema import KIND_OF_SCHEMA, SCHEMA_ATTR, SCHEMAS, open_dataset
from ..schema import write_dataset as write_kind
from .fit import Fit, FitOptions, fit_to_dataset
from .models import THEORIES, fit_data

COMPARISON_SCHEMA = SCHEMAS["comparison"]
SCORES_SCHEMA = SCHEMAS["scores"]
FIT_SCHEMA = SCHEMAS["fit"]


def write_fit(fit: Fit, table, options: FitOptions, attrs: dict, path,
              overwrite: bool = False) -> Path:
    """The fit as ArviZ InferenceData in netCDF, written atomically; refuses to
    replace a file unless ``overwrite``."""
    idata = fit_to_dataset(fit, table, options, attrs)
    with atomic_write(path, overwrite) as tmp:
        idata.to_netcdf(str(tmp))
    return Path(path)


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
               float(attrs.get("seconds", 0.0)), data,
               attrs.get("inference", "exact" if attrs.get("sampler") == "exact" else "nuts"),
               bool(attrs.get("nested", data.nested)))


def write_dataset(ds, path, schema: str, overwrite: bool = False):
    """Write a theory result of the kind whose schema is ``schema``, atomically."""
    return write_kind(ds, path, KIND_OF_SCHEMA[schema], overwrite)


def open_table(path):
    """Read a theory table written by ``phantom loao``."""
    return open_dataset(path, "theory-table")


def open_comparison(path):
    """Read a theory comparison written by ``phantom compare`` or ``phantom loao``."""
    return open_dataset(path, "comparison")


def open_scores(path):
    """Read blind-prediction scores written by ``phantom loao``."""
    return open_dataset(path, "scores")


def scores_from_dataset(ds) -> list[dict]:
    """The list of score dicts back from a scores Dataset (its ``scores_json`` attribute)."""
    return json.loads(ds.attrs["scores_json"])
