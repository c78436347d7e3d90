"""Runs a critical-learning-rate search needs: the root-finder against grid and
bisection, on the same groups, in one process.

    python benchmarks/search_runs.py            # 10 demo groups (tiny models)
    python benchmarks/search_runs.py --all      # every demo group
    python benchmarks/search_runs.py --real smollm2-135m   # its LoRA groups, if pulled

For each group it prints the runs each method took for eta_c (1%) and eta_max (5%
for the root-finder), whether the two eta_c agree within the tolerance, and the
median ratio of runs. Both methods search the same bracket (1e-8..100); the root
method starts from the linear at-init prediction |m0| / (T G0) and, in a second
pass, blind (the bracket's geometric middle).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from phantom_theory.critical_lr import SearchOptions
from runner.sweep import load_spec, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def searched(spec, folder, engine="batched", **search):
    started = time.perf_counter()
    ds = run_sweep(dataclasses.replace(spec, search=dataclasses.replace(spec.search, **search)),
                   folder, engine=engine)
    return ds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every demo group")
    parser.add_argument("--real", default=None,
                        help="a pulled registry model's LoRA groups instead of the demo's")
    args = parser.parse_args()
    spec = load_spec(ROOT / "data" / "sweeps" / "demo.toml")
    if args.real:
        from runner.contexts import selected_contexts

        spec = dataclasses.replace(spec, models=(args.real,), modes=("lora",), steps=15,
                                   contexts=tuple(selected_contexts(args.real)[:3]),
                                   model_contexts={}, run={"dtype": "float32"})
    elif not args.all:
        spec = dataclasses.replace(spec, models=spec.models[:1] + spec.models[3:4],
                                   contexts=spec.contexts[:5 if args.all else 3])
    base = SearchOptions(lo=1e-8, hi=100.0, tolerance=0.01, grid_points=11)
    spec = dataclasses.replace(spec, search=base)
    # a real model on a CPU runs faster one run at a time (see data/real/README.md)
    engine = "sequential" if args.real else "batched"
    with tempfile.TemporaryDirectory() as tmp:
        bisect, t_bisect = searched(spec, Path(tmp) / "bisect", engine, method="bisect")
        root, t_root = searched(spec, Path(tmp) / "root", engine, method="root",
                                max_tolerance=0.05)
        blind, t_blind = searched(spec, Path(tmp) / "blind", engine, method="root",
                                  max_tolerance=0.05, start="blind")
    keys = [k for k in zip(*(bisect[f"run_{d}"].values for d in
                             ("model", "context", "mode", "optimizer", "seed")), strict=True)]
    groups = sorted(set(keys))
    print(f"{'model':15s} {'context':15s} {'mode':5s} {'eta_c (bisect)':>14s} {'root':>10s} "
          f"{'agree':>5s} {'runs bisect':>11s} {'root':>5s} {'(c)':>4s} {'blind':>5s} "
          f"{'eta_max root':>12s}")

    def runs_for(ds, group, edge_lo=None):
        sel = np.ones(ds.sizes["run"], bool)
        for d, v in zip(("model", "context", "mode", "optimizer", "seed"), group, strict=True):
            sel &= ds[f"run_{d}"].values == v
        return int(sel.sum())

    def eta_c_runs(ds, where, method):
        """Runs spent on eta_c alone: for the root method those at or below the
        final eta_c bracket's upper end (eta_max's runs all lie above the lowest
        flip); for bisect the grid plus the bisections inside eta_c's grid cell."""
        sel = np.all([ds[f"run_{d}"].values == v for d, v in where.items()], axis=0)
        lrs = ds.run_lr.values[sel]
        hi = float(ds.sel(where).eta_c_hi)
        if not np.isfinite(hi):
            return int(sel.sum())
        if method == "root":
            return int(np.sum(lrs <= hi))
        grid = base.grid()
        cell_hi = min(g for g in grid if g >= hi)
        cell_lo = max(g for g in grid if g < cell_hi)
        return len(grid) + int(np.sum((lrs > cell_lo) & (lrs < cell_hi)))

    ratios, counts, critical, blind_counts, agree = [], [], [], [], []
    critical_bisect, critical_blind = [], []
    for group in groups:
        where = dict(zip(("model", "context", "mode", "optimizer", "seed"), group, strict=True))
        b, r = bisect.sel(where), root.sel(where)
        n_b, n_r, n_bl = runs_for(bisect, group), runs_for(root, group), runs_for(blind, group)
        n_c = eta_c_runs(root, where, "root")
        critical_bisect.append(eta_c_runs(bisect, where, "bisect"))
        critical_blind.append(eta_c_runs(blind, where, "root"))
        same = (str(b.eta_c_status.item()) == str(r.eta_c_status.item())
                and (not np.isfinite(float(b.eta_c)) or
                     abs(float(r.eta_c) / float(b.eta_c) - 1) <= 0.01))
        ratios.append(critical_bisect[-1] / n_c)
        counts.append(n_r)
        critical.append(n_c)
        blind_counts.append(n_bl)
        agree.append(same)
        print(f"{group[0]:15s} {group[1]:15s} {group[2]:5s} {float(b.eta_c):14.4g} "
              f"{float(r.eta_c):10.4g} {'yes' if same else 'NO':>5s} {n_b:11d} {n_r:5d} "
              f"{n_c:4d} {n_bl:5d} {float(r.eta_max):12.4g}")
    print()
    print(f"groups: {len(groups)}; eta_c agree within 1%: {sum(agree)}/{len(agree)}")
    print(f"eta_c alone, runs per group (median, max): root from the linear seed "
          f"{np.median(critical):g}, {max(critical)}; root blind {np.median(critical_blind):g}, "
          f"{max(critical_blind)}; bisect {np.median(critical_bisect):g}")
    print(f"eta_c alone, bisect / root runs: {np.median(ratios):.2f}x (median over groups)")
    print(f"both edges, runs per group (median): bisect "
          f"{np.median([runs_for(bisect, g) for g in groups]):g}, root {np.median(counts):g}, "
          f"root blind {np.median(blind_counts):g}; ratio "
          f"{np.median([runs_for(bisect, g) for g in groups]) / np.median(counts):.2f}x")
    print(f"wall time: bisect {t_bisect:.0f} s, root {t_root:.0f} s, blind {t_blind:.0f} s")


if __name__ == "__main__":
    main()
