"""The sweep Dataset: every evaluated run, eta_c and eta_max per group, and the
architecture's critical learning rate (THEORY.md sections 6 and 9).

Dims: ``run`` (every run the searches evaluated, with its identity in coordinates);
``model``, ``context``, ``mode``, ``optimizer``, ``seed`` for the per-group table;
the architecture-level values sit on (model, mode, optimizer).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import xarray as xr

from .critical_lr import geometric_summary
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
        # records that predate a variable (an older thin record) carry NaN for it
        values = np.array([r.get(name, r["flipped"] if name == "ahead_at_end" else np.nan)
                           for r in runs],
                          dtype=object if name in ("outcome", "file") else None)
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


def _format_lr(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "-"


def sweep_table(ds: xr.Dataset) -> str:
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
