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
from .io import SCHEMA_ATTR, open_checked, write_netcdf

SCHEMA = "phantom-theory/sweep/1"
GROUP_DIMS = ("model", "context", "mode", "optimizer", "seed")
ARCH_DIMS = ("model", "mode", "optimizer")

RUN_VARIABLES = {
    "outcome": ("", "outcome of the run"),
    "flipped": ("1", "c overtook k within T steps"),
    "flip_step": ("1", "first step with p_c > p_k (-1: never)"),
    "diverged_step": ("1", "first non-finite step (-1: never)"),
    "loss_start": ("1", "loss at step 0 (nats)"),
    "loss_end": ("1", "loss at the last finite step (nats)"),
    "phi_start": ("1", "order parameter at step 0"),
    "phi_end": ("1", "order parameter at the last finite step"),
    "drag_change": ("1", "drag at the end minus drag at step 0"),
    "n_jumps": ("1", "number of jumps in Phi"),
    "n_phantom_jumps": ("1", "number of jumps judged phantoms"),
    "file": ("", "trajectory file, relative to the sweep folder"),
}
GROUP_VARIABLES = {
    "eta_c": ("1", "critical learning rate: geometric midpoint of the final bracket"),
    "eta_c_lo": ("1", "largest evaluated lr that did not flip, below eta_c"),
    "eta_c_hi": ("1", "smallest evaluated lr that flipped, above eta_c"),
    "eta_c_status": ("", "resolved, below_bracket, above_bracket or undefined"),
    "eta_max": ("1", "stability edge: smallest lr above eta_c ending unstable or diverged"),
    "eta_max_lo": ("1", "lower end of the final eta_max bracket"),
    "eta_max_hi": ("1", "upper end of the final eta_max bracket"),
    "eta_max_status": ("", "resolved, below_bracket, above_bracket or undefined"),
    "non_monotone": ("1", "a run below the stability edge failed to flip above a flip"),
    "n_runs": ("1", "runs evaluated for the group"),
    "n_diverged": ("1", "diverged runs in the group"),
    "n_unstable": ("1", "unstable runs in the group"),
}
ARCH_VARIABLES = {
    "eta_c_arch": ("1", "architecture critical lr: geometric mean over contexts and seeds"),
    "eta_c_arch_gsd": ("1", "geometric standard deviation of eta_c over contexts and seeds"),
    "eta_c_arch_min": ("1", "smallest resolved eta_c of the architecture"),
    "eta_c_arch_max": ("1", "largest resolved eta_c of the architecture"),
    "eta_c_arch_n": ("1", "number of resolved groups in the geometric mean"),
    "eta_max_arch": ("1", "geometric mean of the resolved eta_max"),
    "eta_max_arch_n": ("1", "number of resolved eta_max in the geometric mean"),
    "n_groups": ("1", "groups of the architecture in the sweep"),
}


def _label(var: xr.DataArray, table: dict, name: str) -> xr.DataArray:
    units, long_name = table[name]
    var.attrs.update(long_name=long_name, **({"units": units} if units else {}))
    return var


def build_sweep(runs: list[dict], groups: dict[tuple, dict], attrs: dict) -> xr.Dataset:
    """The sweep Dataset from run records (dicts with the GROUP_DIMS, ``lr`` and the
    RUN_VARIABLES) and group summaries keyed by (model, context, mode, optimizer, seed)."""
    runs = sorted(runs, key=lambda r: (*(str(r[d]) for d in GROUP_DIMS[:-1]), r["seed"], r["lr"]))
    coords = {dim: sorted({key[i] for key in groups}) for i, dim in enumerate(GROUP_DIMS)}
    ds = xr.Dataset(coords={dim: (dim, np.array(values, dtype=object if dim != "seed" else int))
                            for dim, values in coords.items()},
                    attrs={SCHEMA_ATTR: SCHEMA, **attrs})
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
        ds[name] = _label(xr.DataArray(values, dims=GROUP_DIMS), GROUP_VARIABLES, name)

    run_coords = {d: ("run", np.array([r[d] for r in runs],
                                      dtype=int if d == "seed" else object)) for d in GROUP_DIMS}
    run_coords["lr"] = ("run", np.array([r["lr"] for r in runs], dtype=float))
    run_table = xr.Dataset(coords={f"run_{k}": v for k, v in run_coords.items()})
    for name in RUN_VARIABLES:
        values = np.array([r[name] for r in runs],
                          dtype=object if name in ("outcome", "file") else None)
        run_table[f"run_{name}"] = _label(xr.DataArray(values, dims="run"), RUN_VARIABLES, name)
    ds = ds.merge(run_table)
    for dim in GROUP_DIMS:
        ds[f"run_{dim}"].attrs["long_name"] = f"{dim} of the run"
    ds["run_lr"].attrs.update(long_name="learning rate of the run", units="1")

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
        ds[name] = _label(xr.DataArray(values, dims=ARCH_DIMS), ARCH_VARIABLES, name)
    for dim in GROUP_DIMS:
        ds[dim].attrs["long_name"] = dim
    return ds


def open_sweep(path) -> xr.Dataset:
    """Read a sweep Dataset written by ``phantom sweep``: its sweep.nc, or the sweep
    folder that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.nc"
    return open_checked(path, SCHEMA, "sweep (sweep.nc from `phantom sweep`)")


def write_sweep(ds: xr.Dataset, path, overwrite: bool = True):
    return write_netcdf(ds, path, overwrite)


def _format_lr(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "-"


def sweep_table(ds: xr.Dataset) -> str:
    """The eta_c table as text: one line per group, then the architectures."""
    lines = [f"{'model':14s} {'context':16s} {'mode':5s} {'optim':6s} {'seed':>4s} "
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
