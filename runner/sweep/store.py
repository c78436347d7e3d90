"""The sweep folder: spec.json, one netCDF file per finished run, and sweep.nc.
The store owns the folder's layout; nothing else builds or parses its paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from phantom_theory.errors import PhantomError
from phantom_theory.io import remove_stale_temporaries, write_text
from phantom_theory.schema import GROUP_DIMS
from phantom_theory.sweep import open_sweep, run_records
from phantom_theory.trajectory import open_run, write_run

from .spec import SPEC_NAME, SWEEP_NAME, SweepSpec

# Spec fields whose change leaves every run's definition as it was: a sweep folder
# with such a change is extended (its runs reused), not refused. A change to steps,
# run, outcome or jumps redefines the runs themselves.
REUSABLE_CHANGES = {"name", "models", "contexts", "model_contexts", "modes", "optimizers",
                    "seeds", "search", "slots"}


def _safe(name: str) -> str:
    return name.replace("/", "--")


def margin_proxies(ds) -> dict:
    """The search's proxies of a run (THEORY.md section 6): m0, f = the largest
    margin over steps 1..T, g = the margin at the last finite step, and whether c
    is ahead there (NaN where no step is finite)."""
    margin = ds.margin.values.astype(float)
    later = margin[1:][np.isfinite(margin[1:])]
    finite = np.flatnonzero(np.isfinite(margin))
    return {"margin_start": float(margin[0]),
            "margin_max": float(later.max()) if later.size else float("nan"),
            "margin_end": float(margin[finite[-1]]) if finite.size else float("nan"),
            "ahead_at_end": bool(ds.ahead_at_end)}


class SweepStore:
    """The sweep folder: spec.json, sweep.nc, and one folder per group,
    runs/<model>/<context>/<mode>-<optimizer>-seed<seed>/, holding one lr<lr>.nc per
    finished run. The store alone builds these paths. A folder holding another
    spec's runs is refused unless overwrite."""

    def __init__(self, root, spec: SweepSpec, overwrite: bool = False, check: bool = True):
        self.root, self.spec = Path(root), spec
        self.recorded: dict[tuple, dict] = {}
        if check:
            self._claim(overwrite)
        else:
            self.recorded = self._read_record()

    def _read_record(self) -> dict[tuple, dict]:
        """The runs the folder's sweep.nc records, by (group, lr): a thin record
        (the table without its trajectories) resumes from these."""
        path = self.root / SWEEP_NAME
        if not path.is_file():
            return {}
        try:
            records = run_records(open_sweep(path))
        except PhantomError:
            return {}
        return {(tuple(r[d] for d in GROUP_DIMS), float(r["lr"])): r for r in records}

    def _claim(self, overwrite: bool) -> None:
        spec_path = self.root / SPEC_NAME
        if self.root.exists() and not self.root.is_dir():
            raise PhantomError(f"{self.root} exists and is not a folder")
        if spec_path.exists():
            same = spec_path.read_text() == self.spec.to_json()
            old = json.loads(spec_path.read_text())
            new = json.loads(self.spec.to_json())
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if not same and not overwrite and not set(changed) <= REUSABLE_CHANGES:
                raise PhantomError(
                    f"{self.root} holds a sweep with a different spec (it differs in "
                    f"{', '.join(changed)}); choose another --out, or pass --overwrite to "
                    "discard its runs")
            if not same and overwrite:
                shutil.rmtree(self.root / "runs", ignore_errors=True)
            else:
                self.recorded = self._read_record()
            if not same:
                # A change that leaves every run's definition alone (the bracket, the
                # tolerance, the groups) keeps the runs that the new spec still has.
                self._prune()
                (self.root / SWEEP_NAME).unlink(missing_ok=True)
        elif self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise PhantomError(f"{self.root} is not empty and holds no sweep spec; choose an "
                               "empty or new folder, or pass --overwrite")
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.root / SPEC_NAME, self.spec.to_json(), overwrite=True)
        for group in self.spec.groups():   # what a killed writer left
            remove_stale_temporaries(self.group_folder(group))

    def _prune(self) -> None:
        """Delete the run folders of groups that the spec no longer has."""
        keep = {self.group_folder(group) for group in self.spec.groups()}
        for folder in self.root.glob("runs/*/*/*"):
            if folder.is_dir() and folder not in keep:
                shutil.rmtree(folder)

    def group_folder(self, group: tuple) -> Path:
        """The folder of one group's run files."""
        model, context, mode, optimizer, seed = group
        return self.root / "runs" / _safe(model) / _safe(context) / f"{mode}-{optimizer}-seed{seed}"

    def path(self, group: tuple, lr: float) -> Path:
        """The file of the run of ``group`` at learning rate ``lr``."""
        return self.group_folder(group) / f"lr{lr:.17g}.nc"

    def load(self, group: tuple, lr: float) -> dict | None:
        """The record of a finished run, or None if it is not on disk (or unreadable)."""
        path = self.path(group, lr)
        if not path.is_file():
            record = self.recorded.get((tuple(group), float(lr)))
            return dict(record) if record is not None else None
        try:
            ds = open_run(path)
            if "outcome" not in ds or float(ds.lr) != lr:
                return None
        except PhantomError:
            return None
        return self.record(ds, path)

    def save(self, ds) -> dict:
        """Write a finished run's Dataset to its file (replacing any) and return its
        record."""
        group = tuple(ds[f].item() for f in GROUP_DIMS)
        path = self.path(group, float(ds.lr))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_run(ds, path, overwrite=True)
        return self.record(ds, path)

    def record(self, ds, path: Path) -> dict:
        """The run's summary row: its group, lr, outcome, flip and divergence steps, loss
        and Phi at the start and the last finite step, drag change, jump counts and
        file (relative to the sweep folder)."""
        finite = np.isfinite(ds.loss.values)
        last = int(np.flatnonzero(finite)[-1]) if finite.any() else 0
        return {
            **{f: ds[f].item() for f in GROUP_DIMS}, "lr": float(ds.lr),
            "outcome": ds.outcome.item(), "flipped": bool(ds.flipped),
            "flip_step": int(ds.flip_step), "diverged_step": int(ds.diverged_step),
            "loss_start": float(ds.loss[0]), "loss_end": float(ds.loss[last]),
            "phi_start": float(ds.phi[0]), "phi_end": float(ds.phi[last]),
            "drag_change": float(ds.drag_change), "n_jumps": int(ds.sizes.get("jump", 0)),
            "n_phantom_jumps": int(ds.jump_phantom.sum()) if "jump_phantom" in ds else 0,
            **margin_proxies(ds),
            "file": str(path.relative_to(self.root)),
        }


