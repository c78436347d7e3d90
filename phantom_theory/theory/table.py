"""The tidy table the theory models are built from: one row per (architecture,
context), for one fine-tuning mode and optimizer.

Q = eta_c / eta_hat is the quantity the theories pool, with eta_hat an at-init
predictor of eta_c (THEORY.md section 7), chosen by the ``predictor`` option:

    linear   eta_hat = |m0| / (T G0): Q is the reduced rate nu_c
    second   the second-order predictor, nu_hat2 |m0| / (T G0)
    ray      the ray integral, S* / T

The table stores every predictor's log Q and log scale (``log_q_linear``,
``log_scale_second``, ...), so one table serves all; ``log_q`` and
``log_scale`` are the chosen one's, with log eta_c = log Q - log_scale, so a
prediction of Q for an architecture becomes one of eta_c through its own
measured-at-init quantities. The zero-parameter baseline ``linear0`` always
reads the linear columns.

Each row also carries the sharpness number, the pair-level bulk anisotropy, the
LoRA cost log(eta_c^LoRA / eta_c^full) and whether its context is held out (never
fitted); each architecture carries its class statistic (whole-matrix, at init).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from ..errors import PhantomError
from ..options import options_attrs
from ..quantities import sharpness_number
from ..schema import SCHEMA_ATTR, SCHEMAS, label

SCHEMA = SCHEMAS["theory-table"]
PREDICTORS = ("linear", "second", "ray")
CLASS_STATISTICS = ("mean_cosine", "top_pc_share", "effective_rank_ratio")
OUTCOME_COLUMNS = ("eta_c", "eta_max", "log_q", "log_c_sharp", "lora_success", "lora_cost",
                   *(f"log_q_{p}" for p in PREDICTORS))


@dataclass(frozen=True)
class TableOptions:
    """Which runs' eta_c the theories model (mode, optimizer), the at-init predictor
    that Q is relative to, and the architecture-level class statistic."""

    mode: str = field(default="full", metadata={"help": "which runs' eta_c to model: full or lora"})
    optimizer: str = field(default="sgd", metadata={"help": "which runs' eta_c to model: sgd or adamw"})
    predictor: str = field(default="linear", metadata={
        "help": "the at-init predictor eta_hat, Q = eta_c / eta_hat: linear, second or ray"})
    class_statistic: str = field(default="mean_cosine", metadata={
        "help": "the whole-matrix statistic M_class classifies architectures by: "
                "mean_cosine, top_pc_share or effective_rank_ratio (of the readout rows)"})

    def __post_init__(self):
        if self.mode not in ("full", "lora"):
            raise PhantomError(f"mode must be full or lora, not {self.mode!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise PhantomError(f"optimizer must be sgd or adamw, not {self.optimizer!r}")
        if self.predictor not in PREDICTORS:
            raise PhantomError(f"predictor must be one of {', '.join(PREDICTORS)}, "
                               f"not {self.predictor!r}")
        if self.class_statistic not in CLASS_STATISTICS:
            raise PhantomError(f"class_statistic must be one of {', '.join(CLASS_STATISTICS)}, "
                               f"not {self.class_statistic!r}")


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
    """The binary LoRA sufficiency: 1 where LoRA reaches the flip below its stability
    edge, 0 where it does not, NaN where the sweep has no LoRA group. It is
    informative only where eta_max was searched (an unsearched edge counts as no
    edge) and some rows fail."""
    if "lora" not in sweep.mode.values:
        return xr.full_like(sweep.eta_c.isel(mode=0, optimizer=0, seed=0), np.nan)
    lora = sweep.sel(mode="lora", optimizer=optimizer)
    resolved = lora.eta_c_status == "resolved"
    below_edge = (lora.eta_max_status != "resolved") | (lora.eta_c < lora.eta_max)
    success = (resolved & below_edge).any("seed").astype(float)
    present = (lora.eta_c_status != "").any("seed")
    return success.where(present)


def lora_cost(sweep: xr.Dataset, optimizer: str) -> xr.DataArray:
    """The continuous LoRA cost log(eta_c^LoRA / eta_c^full) per (model, context) for
    one optimizer (geometric means over seeds); NaN where either is unresolved or
    the sweep lacks a mode."""
    template = xr.full_like(sweep.eta_c.isel(mode=0, optimizer=0, seed=0), np.nan)
    if not {"lora", "full"} <= set(map(str, sweep.mode.values)):
        return template
    lora, _ = measured(sweep, "lora", optimizer)
    full, _ = measured(sweep, "full", optimizer)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(lora) - np.log(full)


def predicted_eta(quantities: xr.Dataset, mode: str, optimizer: str, steps: float,
                  predictor: str) -> xr.DataArray:
    """eta_hat per (model, context) of one at-init predictor at T = ``steps``, from the
    measured parts (G0, the second-order a and b, the ray length S*), so a table
    for any T reads the same quantities. NaN where the quantities predate a
    predictor (measure them again with `phantom quantities`)."""
    from .. import quantities as q

    def part(name):
        if name not in quantities:
            return xr.full_like(quantities.m0, np.nan)
        return quantities[name].sel(mode=mode, optimizer=optimizer, drop=True)

    G0 = part("G0")
    names = ("G0", "second_order_a", "second_order_b", "ray_length")
    values = q.predictors({n: part(n).values for n in names}, quantities.m0.values, steps)
    values = values[f"eta_hat_{predictor}"]
    return xr.DataArray(np.asarray(values, dtype=float), dims=G0.dims, coords=G0.coords)


def class_statistic(quantities: xr.Dataset, name: str) -> xr.DataArray:
    """The architecture-level class statistic per model, of the readout rows."""
    from ..quantities import class_statistics

    if "embedding_dim" not in quantities and name == "effective_rank_ratio":
        raise PhantomError("the quantities predate embedding_dim, so effective_rank_ratio is "
                           "unknown; measure them again or choose another class_statistic")
    if "embedding_dim" not in quantities:   # quantities that predate it: d is not needed
        return quantities[name].sel(geometry="readout", drop=True)
    return class_statistics(quantities)[name]


def theory_table(quantities: xr.Dataset, sweep: xr.Dataset,
                 options: TableOptions = TableOptions(),
                 held_out_contexts=()) -> xr.Dataset:
    """The tidy table (dims model, context) for ``options``' mode and optimizer.

    Models with quantities but no sweep (an architecture to predict blind) get
    rows without outcomes. The rows of ``held_out_contexts`` keep their outcomes
    (to score predictions for them) but are not ``observed``: no fit sees them.
    """
    missing = [m for m in sweep.model.values if m not in quantities.model.values]
    if missing:
        raise PhantomError(f"the quantities lack model(s) {missing} of the sweep; run "
                           "`phantom quantities` on them")
    if options.mode not in sweep.mode.values or options.optimizer not in sweep.optimizer.values:
        raise PhantomError(f"the sweep has no {options.mode}/{options.optimizer} groups")
    models = list(dict.fromkeys([*map(str, sweep.model.values), *map(str, quantities.model.values)]))
    contexts = list(dict.fromkeys([*map(str, sweep.context.values),
                                   *map(str, quantities.context.values)]))
    unknown = sorted(set(held_out_contexts) - set(contexts))
    if unknown:
        raise PhantomError(f"held-out context(s) {', '.join(unknown)} are in neither the sweep "
                           "nor the quantities")
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
    with np.errstate(invalid="ignore", divide="ignore"):
        eta_hat = {p: predicted_eta(q, options.mode, options.optimizer, steps, p)
                   for p in PREDICTORS}
        log_b = 0.5 * (np.log(q.b_c) + np.log(q.b_k))
        columns = {
            "eta_c": eta_c, "eta_max": eta_max, "resolved": resolved.any("seed"),
            "m0": q.m0, "G0": G0, "lambda0": lambda0,
            **{f"log_scale_{p}": -np.log(eta_hat[p]) for p in PREDICTORS},
            **{f"log_q_{p}": np.log(eta_c) - np.log(eta_hat[p]) for p in PREDICTORS},
            "log_c_sharp": np.log(sharpness_number(eta_c, lambda0)),
            "log_lambda0": np.log(lambda0), "log_b": log_b,
            "lora_success": lora_success(sweep, options.optimizer),
            "lora_cost": lora_cost(sweep, options.optimizer),
        }
        columns["log_scale"] = columns[f"log_scale_{options.predictor}"]
        columns["log_q"] = columns[f"log_q_{options.predictor}"]
        table = xr.Dataset({name: column.drop_vars([c for c in column.coords
                                                    if c not in ("model", "context")])
                            for name, column in columns.items()})
        table["class_stat"] = class_statistic(q, options.class_statistic).reindex(model=models)
    held = np.isin(contexts, list(held_out_contexts))
    table["held_out_context"] = ("context", held)
    table["observed"] = (table.resolved & np.isfinite(table.log_q)
                         & np.isfinite(table.log_c_sharp) & ~table.held_out_context)
    table["has_quantities"] = np.isfinite(table.log_scale) & np.isfinite(table.log_b)
    label(table, "theory-table")
    table.attrs = {SCHEMA_ATTR: SCHEMA, **options_attrs("table", options), "steps": steps,
                   "held_out_contexts": ",".join(c for c in contexts if c in held_out_contexts),
                   "sweep_spec_sha256": sweep.attrs.get("sweep_spec_sha256", ""),
                   "quantities_git_commit": quantities.attrs.get("git_commit", ""),
                   "table_options_json": json.dumps(asdict(options))}
    return table


def mask_outcomes(table: xr.Dataset, held_out: str) -> xr.Dataset:
    """The table with every outcome of ``held_out`` (eta_c, eta_max, every log Q,
    LoRA success and cost) replaced by NaN: all that a blind fit may see of it is
    its measured-at-init quantities."""
    if held_out not in table.model.values:
        raise PhantomError(f"unknown held-out model {held_out!r}; the table has "
                           f"{', '.join(map(str, table.model.values))}")
    masked = table.copy(deep=True)
    row = dict(model=held_out)
    for name in OUTCOME_COLUMNS:
        if name in masked:
            masked[name].loc[row] = np.nan
    for name in ("observed", "resolved"):
        masked[name].loc[row] = False
    return masked
