"""The tidy table the theory models are built from: one row per (architecture,
context), for one fine-tuning mode and optimizer.

Q is the dimensionless quantity the theories describe (an option):
``nu_c`` = eta_c T G0 / |m0| (default) or ``c_sharp`` = eta_c lambda0. Each row
also carries log_scale, with log eta_c = log Q - log_scale, so a prediction of Q
for an architecture becomes one of eta_c through its own measured-at-init
quantities.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from ..errors import PhantomError
from ..options import options_attrs
from ..quantities import reduced_lr, sharpness_number
from ..schema import SCHEMA_ATTR, SCHEMAS, label

SCHEMA = SCHEMAS["theory-table"]
QUANTITIES = ("nu_c", "c_sharp")


@dataclass(frozen=True)
class TableOptions:
    """mode, optimizer: which runs' eta_c the theories model. quantity: Q.
    LoRA success (for M_class) is read from the sweep's LoRA groups with the same
    optimizer: eta_c resolved and below the stability edge."""

    mode: str = field(default="full", metadata={"help": "which runs' eta_c to model: full or lora"})
    optimizer: str = field(default="sgd", metadata={"help": "which runs' eta_c to model: sgd or adamw"})
    quantity: str = field(default="nu_c", metadata={"help": "Q: nu_c or c_sharp"})

    def __post_init__(self):
        if self.quantity not in QUANTITIES:
            raise PhantomError(f"quantity must be one of {QUANTITIES}, not {self.quantity!r}")


def _geometric_mean_over_seeds(values: xr.DataArray, resolved: xr.DataArray) -> xr.DataArray:
    logs = np.log(values.where(resolved))
    return np.exp(logs.mean("seed", skipna=True))


def measured(sweep: xr.Dataset, mode: str, optimizer: str) -> tuple[xr.DataArray, xr.DataArray]:
    """(eta_c, eta_max) per (model, context) of a sweep's mode and optimizer: the
    geometric means over seeds of the resolved values, NaN where none resolved."""
    groups = sweep.sel(mode=mode, optimizer=optimizer)
    return (_geometric_mean_over_seeds(groups.eta_c, groups.eta_c_status == "resolved"),
            _geometric_mean_over_seeds(groups.eta_max, groups.eta_max_status == "resolved"))


def lora_success(sweep: xr.Dataset, optimizer: str) -> xr.DataArray:
    """1 where LoRA reaches the flip below its stability edge, 0 where it does not,
    NaN where the sweep has no LoRA group."""
    if "lora" not in sweep.mode.values:
        return xr.full_like(sweep.eta_c.isel(mode=0, optimizer=0, seed=0), np.nan)
    lora = sweep.sel(mode="lora", optimizer=optimizer)
    resolved = lora.eta_c_status == "resolved"
    below_edge = (lora.eta_max_status != "resolved") | (lora.eta_c < lora.eta_max)
    success = (resolved & below_edge).any("seed").astype(float)
    present = (lora.eta_c_status != "").any("seed")
    return success.where(present)


def theory_table(quantities: xr.Dataset, sweep: xr.Dataset,
                 options: TableOptions = TableOptions()) -> xr.Dataset:
    """The tidy table (dims model, context) for ``options``' mode and optimizer.
    Models with quantities but no sweep (an architecture to predict blind) get
    rows without outcomes."""
    missing = [m for m in sweep.model.values if m not in quantities.model.values]
    if missing:
        raise PhantomError(f"the quantities lack model(s) {missing} of the sweep; run "
                           "`phantom quantities` on them")
    if options.mode not in sweep.mode.values or options.optimizer not in sweep.optimizer.values:
        raise PhantomError(f"the sweep has no {options.mode}/{options.optimizer} groups")
    models = list(dict.fromkeys([*map(str, sweep.model.values), *map(str, quantities.model.values)]))
    contexts = list(dict.fromkeys([*map(str, sweep.context.values),
                                   *map(str, quantities.context.values)]))
    sweep = sweep.reindex(model=models, context=contexts)
    sweep["eta_c_status"] = sweep.eta_c_status.fillna("")
    sweep["eta_max_status"] = sweep.eta_max_status.fillna("")
    groups = sweep.sel(mode=options.mode, optimizer=options.optimizer)
    q = quantities.reindex(model=models, context=contexts)
    resolved = groups.eta_c_status == "resolved"
    eta_c, eta_max = measured(sweep, options.mode, options.optimizer)
    steps = float(sweep.attrs["run_steps"])
    G0 = q.G0.sel(mode=options.mode, optimizer=options.optimizer, drop=True)
    lambda0 = q.lambda0.sel(mode=options.mode, drop=True)
    m0 = q.m0
    with np.errstate(invalid="ignore", divide="ignore"):
        if options.quantity == "nu_c":
            log_scale = np.log(reduced_lr(1.0, steps, G0, m0))   # nu_c / eta_c
        else:
            log_scale = np.log(lambda0)
        log_b = 0.5 * (np.log(q.b_c) + np.log(q.b_k))
        columns = {
            "eta_c": eta_c, "eta_max": eta_max, "resolved": resolved.any("seed"),
            "m0": m0, "G0": G0, "lambda0": lambda0, "log_scale": log_scale,
            "log_q": np.log(eta_c) + log_scale, "log_c_sharp": np.log(sharpness_number(eta_c, lambda0)),
            "log_lambda0": np.log(lambda0), "log_b": log_b,
            "lora_success": lora_success(sweep, options.optimizer),
        }
        table = xr.Dataset({name: column.drop_vars([c for c in column.coords
                                                    if c not in ("model", "context")])
                            for name, column in columns.items()})
    table["observed"] = (table.resolved & np.isfinite(table.log_q)
                         & np.isfinite(table.log_c_sharp))
    table["has_quantities"] = np.isfinite(table.log_scale) & np.isfinite(table.log_b)
    label(table, "theory-table")
    table.attrs = {SCHEMA_ATTR: SCHEMA, **options_attrs("table", options), "steps": steps,
                   "sweep_spec_sha256": sweep.attrs.get("sweep_spec_sha256", ""),
                   "quantities_git_commit": quantities.attrs.get("git_commit", ""),
                   "table_options_json": json.dumps(asdict(options))}
    return table


def mask_outcomes(table: xr.Dataset, held_out: str) -> xr.Dataset:
    """The table with every outcome of ``held_out`` (eta_c, eta_max, log Q, LoRA
    success) replaced by NaN: all that a blind fit may see of it is its
    measured-at-init quantities."""
    if held_out not in table.model.values:
        raise PhantomError(f"unknown held-out model {held_out!r}; the table has "
                           f"{', '.join(map(str, table.model.values))}")
    masked = table.copy(deep=True)
    row = dict(model=held_out)
    for name in ("eta_c", "eta_max", "log_q", "log_c_sharp", "lora_success"):
        masked[name].loc[row] = np.nan
    for name in ("observed", "resolved"):
        masked[name].loc[row] = False
    return masked
