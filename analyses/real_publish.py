"""Copy the part of a real-model study worth keeping in git into data/real/.

    python analyses/real_publish.py WORK_FOLDER data/real

Keeps the sweep's table (sweep.nc, spec.json), the trajectories of the runs that
bracket each group's eta_c and eta_max (both ends), the quantities and the theory
results; leaves out every other trajectory (the sweep table still lists them,
with their outcomes, jumps and phantom verdicts).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from phantom_theory.sweep import open_sweep


def bracketing_files(sweep) -> set[str]:
    keep = set()
    for i in range(sweep.sizes["run"]):
        group = {d: sweep[f"run_{d}"].values[i] for d in ("model", "context", "mode",
                                                           "optimizer", "seed")}
        row = sweep.sel(group)
        lr = float(sweep.run_lr.values[i])
        ends = [float(row[name]) for name in ("eta_c_lo", "eta_c_hi", "eta_max_lo", "eta_max_hi")]
        if any(np.isfinite(e) and e == lr for e in ends):
            keep.add(str(sweep.run_file.values[i]))
    return keep


def main(work: str, target: str) -> None:
    work, target = Path(work), Path(target)
    sweep = open_sweep(work / "sweep")
    (target / "sweep").mkdir(parents=True, exist_ok=True)
    for name in ("sweep.nc", "spec.json"):
        shutil.copy2(work / "sweep" / name, target / "sweep" / name)
    kept = bracketing_files(sweep)
    for file in sorted(kept):
        destination = target / "sweep" / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "sweep" / file, destination)
    if (work / "quantities.nc").exists():
        shutil.copy2(work / "quantities.nc", target / "quantities.nc")
    if (work / "theory").exists():
        shutil.rmtree(target / "theory", ignore_errors=True)
        shutil.copytree(work / "theory", target / "theory")
    print(f"kept {len(kept)} of {sweep.sizes['run']} trajectories in {target / 'sweep'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
