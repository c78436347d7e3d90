"""Copy the part of a real-model study worth keeping in git into data/real*/.

    python analyses/real_publish.py WORK_FOLDER data/real [--per-cell N]

Keeps the sweep's table (sweep.nc, spec.json: the thin record a sweep resumes
from), the trajectories of the runs that bracket each group's eta_c and eta_max
(both ends), the quantities and the theory results; leaves out every other
trajectory (the sweep table still lists them, with their outcomes, jumps, phantom
verdicts and frozen-matrix counts). ``--per-cell N`` keeps the bracketing runs of
the first N groups of each (model, mode, optimizer) only, so that a large study
stays small in git (the v2 study: 2).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from phantom_theory.sweep import open_sweep


def bracketing_files(sweep, per_cell: int | None = None) -> set[str]:
    keep, chosen = set(), {}
    for i in range(sweep.sizes["run"]):
        group = {d: sweep[f"run_{d}"].values[i] for d in ("model", "context", "mode",
                                                           "optimizer", "seed")}
        try:
            row = sweep.sel(group)
        except KeyError:
            continue   # a run of an unfinished search: no bracket yet
        if str(row.eta_c_status.values) == "":
            continue
        if per_cell is not None:
            cell = (group["model"], group["mode"], group["optimizer"])
            members = chosen.setdefault(cell, [])
            key = (group["context"], group["seed"])
            if key not in members:
                if len(members) >= per_cell:
                    continue
                members.append(key)
        lr = float(sweep.run_lr.values[i])
        ends = [float(row[name]) for name in ("eta_c_lo", "eta_c_hi", "eta_max_lo", "eta_max_hi")]
        if any(np.isfinite(e) and e == lr for e in ends):
            keep.add(str(sweep.run_file.values[i]))
    return keep


def main(work: str, target: str, per_cell: int | None = None) -> None:
    work, target = Path(work), Path(target)
    sweep = open_sweep(work / "sweep")
    (target / "sweep").mkdir(parents=True, exist_ok=True)
    for name in ("sweep.nc", "spec.json", "starts.json"):
        if (work / "sweep" / name).is_file():
            shutil.copy2(work / "sweep" / name, target / "sweep" / name)
    kept = bracketing_files(sweep, per_cell)
    for old in (target / "sweep" / "runs").glob("**/*.nc"):   # the kept set may move
        if str(old.relative_to(target / "sweep")) not in kept:
            old.unlink()
    for file in sorted(kept):
        source, destination = work / "sweep" / file, target / "sweep" / file
        if not source.is_file():   # resumed from the thin record: published before
            if not destination.is_file():
                raise SystemExit(f"{source} is missing and was never published")
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    if (work / "quantities.nc").exists():
        shutil.copy2(work / "quantities.nc", target / "quantities.nc")
    for theory in sorted([*work.glob("theory*"), work / "held-out-contexts"]):
        if theory.is_dir():
            shutil.rmtree(target / theory.name, ignore_errors=True)
            shutil.copytree(theory, target / theory.name)
    print(f"kept {len(kept)} of {sweep.sizes['run']} trajectories in {target / 'sweep'}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    per_cell = None
    if "--per-cell" in arguments:
        at = arguments.index("--per-cell")
        per_cell = int(arguments[at + 1])
        del arguments[at:at + 2]
    main(*arguments[:2], per_cell=per_cell)
