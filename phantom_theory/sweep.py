"""The sweep Dataset: every evaluated run, eta_c and eta_max per group, and the
architecture's critical learning rate (THEORY.md sections 6 and 9).

Dims: ``run`` (every run the searches evaluated, with its identity in coordinates);
``model``, ``context``, ``mode``, ``optimizer``, ``seed`` for the per-group table;
the architecture-level values sit on (model, mode, optimizer).

Outcomes and jumps are reported against bands of lr / eta_c (THEORY.md sections 4
and 5), never pooled: the outcome counts per group and band, the jumps per
architecture, band and kind, with their phantom share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .critical_lr import geometric_summary
from .errors import PhantomError
from .jumps import JUMP_KINDS
from .schema import (
    ARCH_DIMS,
    ARCH_VARIABLES,
    GROUP_DIMS,
    GROUP_VARIABLES,
    RUN_VARIABLES,
    SCHEMA_ATTR,
    SCHEMAS,
    label,
    open_dataset,
    write_dataset,
)


def build_sweep(runs: list[dict], groups: dict[tuple, dict], attrs: dict) -> xr.Dataset:
    """The sweep Dataset from run records (dicts with the GROUP_DIMS, ``lr`` and the
    RUN_VARIABLES) and group summaries keyed by (model, context, mode, optimizer, seed)."""
    runs = sorted(runs, key=lambda r: (*(str(r[d]) for d in GROUP_DIMS[:-1]), r["seed"], r["lr"]))
    coords = {dim: sorted({key[i] for key in groups}) for i, dim in enumerate(GROUP_DIMS)}
    ds = xr.Dataset(coords={dim: (dim, np.array(values, dtype=object if dim != "seed" else int))
                            for dim, values in coords.items()},
                    attrs={SCHEMA_ATTR: SCHEMAS["sweep"], **attrs})
    shape = tuple(len(coords[d]) for d in GROUP_DIMS)
    index = {key: tuple(coords[d].index(key[i]) for i, d in enumerate(GROUP_DIMS))
             for key in groups}
    for name in GROUP_VARIABLES:
        sample = next(iter(groups.values()))[name] if groups else 0.0
        if isinstance(sample, str):
            values = np.full(shape, "", dtype=object)
        elif isinstance(sample, bool | np.bool_):
            values = np.zeros(shape, dtype=bool)
        elif isinstance(sample, int | np.integer):
            values = np.full(shape, -1, dtype=int)
        else:
            values = np.full(shape, np.nan)
        for key, summary in groups.items():
            values[index[key]] = summary[name]
        ds[name] = xr.DataArray(values, dims=GROUP_DIMS)

    run_coords = {d: ("run", np.array([r[d] for r in runs],
                                      dtype={"seed": int, "lr": float}.get(d, object)))
                  for d in (*GROUP_DIMS, "lr")}
    run_table = xr.Dataset(coords={f"run_{k}": v for k, v in run_coords.items()})
    for name in RUN_VARIABLES:
        # records that predate a variable (an older thin record) carry a default for it
        values = np.array([r[name] if name in r else _predating(name, r) for r in runs],
                          dtype=object if name in STRING_RUN_VARIABLES else None)
        run_table[f"run_{name}"] = xr.DataArray(values, dims="run")
    ds = ds.merge(run_table)

    arch_shape = tuple(len(coords[d]) for d in ARCH_DIMS)
    arch = {name: np.full(arch_shape, np.nan) for name in ARCH_VARIABLES}
    for combo in itertools.product(*(range(n) for n in arch_shape)):
        selection = dict(zip(ARCH_DIMS, combo, strict=True))
        eta_c = ds.eta_c.isel(selection)
        members = ds.eta_c_status.isel(selection).values != ""
        critical = geometric_summary(eta_c.values[members].ravel())
        maximum = geometric_summary(ds.eta_max.isel(selection).values[members].ravel())
        values = {"eta_c_arch": critical["mean"], "eta_c_arch_gsd": critical["gsd"],
                  "eta_c_arch_min": critical["min"], "eta_c_arch_max": critical["max"],
                  "eta_c_arch_n": critical["n"], "eta_max_arch": maximum["mean"],
                  "eta_max_arch_n": maximum["n"], "n_groups": int(members.sum())}
        for name, value in values.items():
            arch[name][combo] = value
    for name, values in arch.items():
        ds[name] = xr.DataArray(values, dims=ARCH_DIMS)
    return label(ds, "sweep")


STRING_RUN_VARIABLES = ("outcome", "structural_kind", "device", "engine", "created", "file")


def _predating(name: str, record: dict):
    """The value of a run variable that a record written before it lacks: c ahead at
    the end as flipped, transient as a flip no longer ahead at the end, an
    ``unknown`` sub-label for a structural failure, NaN for the rest."""
    ahead = bool(record.get("ahead_at_end", record["flipped"]))
    if name == "ahead_at_end":
        return bool(record["flipped"])
    if name == "transient":
        return bool(record["flipped"]) and not ahead and record["outcome"] != "diverged"
    if name == "structural_kind":
        return "unknown" if record["outcome"] == "structural_failure" else ""
    if name in ("device", "engine", "created"):
        return ""
    return np.nan


def run_values(ds: xr.Dataset, name: str) -> np.ndarray:
    """The run variable ``name`` of a sweep table, one value per run; a table written
    before the variable gets the defaults of ``build_sweep`` for it."""
    if f"run_{name}" in ds.variables:
        return ds[f"run_{name}"].values
    return np.array([_predating(name, r) for r in run_records(ds)],
                    dtype=object if name in STRING_RUN_VARIABLES else float)


def run_records(ds: xr.Dataset) -> list[dict]:
    """The run records of a sweep table, one dict per run (the inverse of the
    ``run`` part of ``build_sweep``): what a search replays to resume from a thin
    record without the trajectories."""
    names = [n for n in (*GROUP_DIMS, "lr", *RUN_VARIABLES) if f"run_{n}" in ds.variables]
    columns = {n: ds[f"run_{n}"].values for n in names}
    out = []
    for i in range(ds.sizes.get("run", 0)):
        record = {}
        for n, values in columns.items():
            value = values[i]
            record[n] = value.item() if hasattr(value, "item") else value
        out.append(record)
    return out


def group_summaries(ds: xr.Dataset) -> dict[tuple, dict]:
    """The group summaries of a sweep table, by (model, context, mode, optimizer,
    seed), for the groups it searched (the inverse of the group part of
    ``build_sweep``): what a partial sweep keeps of the groups it does not search."""
    stacked = ds[[n for n in GROUP_VARIABLES if n in ds]].stack(group=GROUP_DIMS)
    out = {}
    for i in range(stacked.sizes["group"]):
        row = stacked.isel(group=i)
        if str(row.eta_c_status.item()) == "":
            continue
        key = tuple(row[d].item() for d in GROUP_DIMS)
        out[key] = {n: row[n].item() for n in GROUP_VARIABLES if n in row}
    return out


def open_sweep(path) -> xr.Dataset:
    """Read a sweep Dataset written by ``phantom sweep``: its sweep.nc, or the sweep
    folder that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.nc"
    return open_dataset(path, "sweep")


def write_sweep(ds: xr.Dataset, path, overwrite: bool = False):
    """Write a sweep Dataset atomically; refuses to replace a file unless ``overwrite``."""
    return write_dataset(ds, path, "sweep", overwrite)


# -- outcomes and jumps against bands of lr / eta_c -----------------------------------

# The outcome classes counted per band: the outcomes, with a structural failure split
# by its sub-label ("unknown" only in records written before the sub-label).
OUTCOME_CLASSES = ("success", "transient", "kinematic_failure", "structural_geometric",
                   "structural_readout", "structural_unknown", "unstable", "diverged")
CLASS_HEADINGS = ("succ", "trans", "kinem", "str-g", "str-r", "str-?", "unst", "div")


@dataclass(frozen=True)
class BandOptions:
    """The bands of lr / eta_c that outcomes and jumps are reported in."""

    band_edges: tuple[float, ...] = field(default=(1.0, 3.0, 30.0), metadata={
        "help": "edges of the bands of lr / eta_c: (0, e1), [e1, e2), ..., [e_last, inf)"})

    def __post_init__(self):
        edges = np.asarray(self.band_edges, dtype=float)
        if not edges.size or not (edges > 0).all() or not np.isfinite(edges).all() \
                or (np.diff(edges) <= 0).any():
            raise PhantomError(f"band_edges must be positive, finite and increasing, not "
                               f"{list(self.band_edges)}")

    @property
    def labels(self) -> list[str]:
        """One label per band: "<e1", "[e1, e2)", ..., ">=e_last"."""
        edges = [f"{e:g}" for e in self.band_edges]
        return ([f"<{edges[0]}"] + [f"[{a}, {b})" for a, b in zip(edges, edges[1:], strict=False)]
                + [f">={edges[-1]}"])

    def band_of(self, ratio) -> np.ndarray:
        """The band index of each lr / eta_c (-1 where the ratio is not finite)."""
        ratio = np.asarray(ratio, dtype=float)
        index = np.searchsorted(np.asarray(self.band_edges, dtype=float), ratio, side="right")
        return np.where(np.isfinite(ratio) & (ratio > 0), index, -1)


def run_ratios(ds: xr.Dataset) -> np.ndarray:
    """The ratio lr / eta_c of every run, with its own group's eta_c (NaN where that
    eta_c is not resolved)."""
    eta_c = {key: float(ds.eta_c.sel(dict(zip(GROUP_DIMS, key, strict=True))))
             for key in itertools.product(*(ds[d].values for d in GROUP_DIMS))
             if str(ds.eta_c_status.sel(dict(zip(GROUP_DIMS, key, strict=True))).item())
             == "resolved"}
    keys = zip(*(ds[f"run_{d}"].values for d in GROUP_DIMS), strict=True)
    return np.array([lr / eta_c.get(tuple(key), np.nan)
                     for lr, key in zip(ds.run_lr.values, keys, strict=True)], dtype=float)


def outcome_class(outcome: str, structural_kind: str, ahead_at_end) -> str:
    """The class of a run among OUTCOME_CLASSES. A flip no longer ahead at the end is
    transient whatever its record says (records written before the end state)."""
    if outcome == "structural_failure":
        return f"structural_{structural_kind}" if structural_kind in ("geometric", "readout") \
            else "structural_unknown"
    if outcome == "success" and not bool(ahead_at_end):
        return "transient"
    return outcome


def outcome_counts(ds: xr.Dataset, bands: BandOptions = BandOptions()) -> xr.DataArray:
    """Runs per group, band of lr / eta_c and outcome class (dims GROUP_DIMS, band,
    outcome_class). Runs of a group without a resolved eta_c are in no band."""
    band = bands.band_of(run_ratios(ds))
    classes = [outcome_class(str(o), str(k), a) for o, k, a in
               zip(ds.run_outcome.values, run_values(ds, "structural_kind"),
                   run_values(ds, "ahead_at_end"), strict=True)]
    shape = (*(ds.sizes[d] for d in GROUP_DIMS), len(bands.labels), len(OUTCOME_CLASSES))
    counts = np.zeros(shape, dtype=int)
    position = {d: {v: i for i, v in enumerate(ds[d].values)} for d in GROUP_DIMS}
    for i, (b, cls) in enumerate(zip(band, classes, strict=True)):
        if b < 0:
            continue
        key = tuple(position[d][ds[f"run_{d}"].values[i]] for d in GROUP_DIMS)
        counts[(*key, b, OUTCOME_CLASSES.index(cls))] += 1
    return xr.DataArray(counts, dims=(*GROUP_DIMS, "band", "outcome_class"),
                        coords={**{d: ds[d].values for d in GROUP_DIMS},
                                "band": bands.labels, "outcome_class": list(OUTCOME_CLASSES)},
                        name="runs")


def jump_counts(ds: xr.Dataset, bands: BandOptions = BandOptions()) -> xr.Dataset:
    """Jumps and phantoms per architecture (model, mode, optimizer), band of
    lr / eta_c and jump kind, the phantom share (phantoms / jumps; NaN without
    jumps), and the runs each band holds. Runs whose records carry no jump kinds are
    left out."""
    band = bands.band_of(run_ratios(ds))
    shape = (*(ds.sizes[d] for d in ARCH_DIMS), len(bands.labels))
    runs = np.zeros(shape, dtype=int)
    jumps = np.zeros((*shape, len(JUMP_KINDS)), dtype=int)
    phantoms = np.zeros_like(jumps)
    position = {d: {v: i for i, v in enumerate(ds[d].values)} for d in ARCH_DIMS}
    n_kind = np.stack([run_values(ds, f"n_jumps_{kind}").astype(float)
                       for kind in JUMP_KINDS], -1)
    n_phantom = np.stack([run_values(ds, f"n_phantom_jumps_{kind}").astype(float)
                          for kind in JUMP_KINDS], -1)
    for i, b in enumerate(band):
        if b < 0 or not np.isfinite(n_kind[i]).all():
            continue
        key = (*(position[d][ds[f"run_{d}"].values[i]] for d in ARCH_DIMS), b)
        runs[key] += 1
        jumps[key] += n_kind[i].astype(int)
        phantoms[key] += n_phantom[i].astype(int)
    coords = {**{d: ds[d].values for d in ARCH_DIMS}, "band": bands.labels,
              "kind": list(JUMP_KINDS)}
    dims = (*ARCH_DIMS, "band")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(jumps > 0, phantoms / np.maximum(jumps, 1), np.nan)
    return xr.Dataset({"runs": (dims, runs), "jumps": ((*dims, "kind"), jumps),
                       "phantoms": ((*dims, "kind"), phantoms),
                       "phantom_share": ((*dims, "kind"), share)}, coords=coords)


def band_tables(ds: xr.Dataset, bands: BandOptions = BandOptions()) -> str:
    """Outcome counts per group and band of lr / eta_c, then jumps and their phantom
    share per architecture, band and kind, as text. Empty bands are left out."""
    ratios = run_ratios(ds)
    unbanded = int((bands.band_of(ratios) < 0).sum())
    counts = outcome_counts(ds, bands)
    shown = [i for i, c in enumerate(OUTCOME_CLASSES)
             if c != "structural_unknown" or int(counts.sel(outcome_class=c).sum())]
    wide = max([14, *(len(str(m)) for m in ds.model.values)])
    lines = [f"outcomes per group and band of lr / eta_c (bands {', '.join(bands.labels)}): "
             "runs the search evaluated, n in the band; rate = count / n"]
    lines.append(f"{'model':{wide}s} {'context':16s} {'mode':5s} {'optim':6s} {'seed':>4s} "
                 f"{'band':>10s} {'n':>4s} " + " ".join(f"{CLASS_HEADINGS[i]:>5s}" for i in shown))
    for key in itertools.product(*(ds[d].values for d in GROUP_DIMS)):
        row = counts.sel(dict(zip(GROUP_DIMS, key, strict=True)))
        for b, name in enumerate(bands.labels):
            values = row.isel(band=b).values
            if not values.sum():
                continue
            lines.append(f"{key[0]:{wide}s} {key[1]:16s} {key[2]:5s} {key[3]:6s} {key[4]:>4d} "
                         f"{name:>10s} {int(values.sum()):>4d} "
                         + " ".join(f"{int(values[i]):>5d}" for i in shown))
    if unbanded:
        lines.append(f"({unbanded} runs of groups without a resolved eta_c are in no band)")

    jumps = jump_counts(ds, bands)
    missing = int((~np.isfinite(run_values(ds, f"n_jumps_{JUMP_KINDS[0]}").astype(float))).sum())
    lines += ["", "jumps by kind and band of lr / eta_c, per architecture: phantoms / jumps "
                  "(phantom share)",
              f"{'model':{wide}s} {'mode':5s} {'optim':6s} {'band':>10s} {'runs':>5s} "
              + " ".join(f"{kind:>16s}" for kind in JUMP_KINDS)]
    for key in itertools.product(*(ds[d].values for d in ARCH_DIMS)):
        arch = jumps.sel(dict(zip(ARCH_DIMS, key, strict=True)))
        for b, name in enumerate(bands.labels):
            n_runs = int(arch.runs.isel(band=b))
            if not n_runs:
                continue
            cells = []
            for kind in JUMP_KINDS:
                n = int(arch.jumps.isel(band=b).sel(kind=kind))
                k = int(arch.phantoms.isel(band=b).sel(kind=kind))
                cells.append(f"{k}/{n} ({100 * k / n:.0f}%)" if n else "-")
            lines.append(f"{key[0]:{wide}s} {key[1]:5s} {key[2]:6s} {name:>10s} {n_runs:>5d} "
                         + " ".join(f"{cell:>16s}" for cell in cells))
    if missing:
        lines.append(f"({missing} runs were recorded without jump kinds and are left out)")
    return "\n".join(lines)



def _format_lr(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "-"


def sweep_table(ds: xr.Dataset, bands: BandOptions = BandOptions(), by_band: bool = True) -> str:
    """The eta_c table as text: one line per group, then the architectures; with
    ``by_band``, then the outcomes and the jumps against bands of lr / eta_c
    (``band_tables``)."""
    table = eta_c_table(ds)
    return f"{table}\n\n{band_tables(ds, bands)}" if by_band else table


def eta_c_table(ds: xr.Dataset) -> str:
    """The eta_c table as text: one line per group, then the architectures."""
    attrs = ds.attrs
    method = attrs.get("search_method", "bisect")
    tolerance = float(attrs.get("search_tolerance", np.nan))
    max_tolerance = attrs.get("search_max_tolerance", "none")
    max_tolerance = tolerance if max_tolerance in ("none", None) else float(max_tolerance)
    counts = ds.n_runs.values[ds.eta_c_status.values != ""]
    edge = (f"eta_max to {100 * max_tolerance:g}%" if int(attrs.get("search_find_max", 1))
            else "eta_max not searched")
    lines = [f"search: {method}; eta_c to {100 * tolerance:g}%, {edge} (relative "
             f"brackets); runs per group: median "
             f"{np.median(counts) if counts.size else 0:g}, range "
             f"{counts.min() if counts.size else 0}-{counts.max() if counts.size else 0}, "
             f"{int(counts.sum()) if counts.size else 0} in all"]
    lines += [f"{'model':14s} {'context':16s} {'mode':5s} {'optim':6s} {'seed':>4s} "
             f"{'eta_c':>10s} {'bracket':>23s} {'eta_max':>10s} {'runs':>5s}  flags"]
    for key in itertools.product(*(ds[d].values for d in GROUP_DIMS)):
        row = ds.sel(dict(zip(GROUP_DIMS, key, strict=True)))
        status = str(row.eta_c_status.item())
        if not status:
            continue
        flags = []
        if status != "resolved":
            flags.append(f"eta_c {status}")
        if str(row.eta_max_status.item()) not in ("resolved", "undefined"):
            flags.append(f"eta_max {row.eta_max_status.item()}")
        if bool(row.non_monotone):
            flags.append("non-monotone")
        if int(row.n_diverged):
            flags.append(f"{int(row.n_diverged)} diverged")
        bracket = (f"[{_format_lr(float(row.eta_c_lo))}, {_format_lr(float(row.eta_c_hi))}]"
                   if status == "resolved" else "")
        lines.append(f"{key[0]:14s} {key[1]:16s} {key[2]:5s} {key[3]:6s} {key[4]:>4d} "
                     f"{_format_lr(float(row.eta_c)):>10s} {bracket:>23s} "
                     f"{_format_lr(float(row.eta_max)):>10s} {int(row.n_runs):>5d}  "
                     f"{', '.join(flags)}")
    lines += ["", f"{'model':14s} {'mode':5s} {'optim':6s} {'eta_c (geo. mean)':>18s} "
                  f"{'gsd':>6s} {'resolved':>9s} {'eta_max':>10s}"]
    for key in itertools.product(*(ds[d].values for d in ARCH_DIMS)):
        row = ds.sel(dict(zip(ARCH_DIMS, key, strict=True)))
        if not int(row.n_groups):
            continue
        gsd = float(row.eta_c_arch_gsd)
        lines.append(f"{key[0]:14s} {key[1]:5s} {key[2]:6s} "
                     f"{_format_lr(float(row.eta_c_arch)):>18s} "
                     f"{(f'{gsd:.2f}' if np.isfinite(gsd) else '-'):>6s} "
                     f"{int(row.eta_c_arch_n):>4d}/{int(row.n_groups):<4d} "
                     f"{_format_lr(float(row.eta_max_arch)):>10s}")
    return "\n".join(lines)
