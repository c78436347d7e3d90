"""The sweep folder: spec.json, one netCDF file per finished run, and sweep.nc.
The store owns the folder's layout; nothing else builds or parses its paths.

One process at a time writes a sweep folder: the store holds an exclusive lock on
it (``phantom_theory.io.FolderLock``) from the claim to the end, and a second sweep
on the same folder is refused with the holder's pid. A run file or a thin record
is reused only if it was made by the very run the spec asks for: the same run
options (steps, dtype, every [run] option), outcome and jump options, and the same
``RESULTS_VERSION`` of the code. ``--overwrite`` never blends: a sweep that
replaces another is built beside it and swapped in whole when it ends.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from phantom_theory.errors import PhantomError
from phantom_theory.io import (
    LOCK_NAME,
    FolderLock,
    publish_folder,
    remove_stale_temporaries,
    write_text,
)
from phantom_theory.options import options_attrs
from phantom_theory.schema import GROUP_DIMS
from phantom_theory.sweep import group_summaries, open_sweep, run_records
from phantom_theory.trajectory import open_run, outcome_fields, write_run

from .spec import PER_GROUP, SPEC_NAME, SWEEP_NAME, SweepSpec

STARTS_NAME = "starts.json"   # each group's search start: a resumed search replays it

# Spec fields whose change leaves every run's definition as it was: a sweep folder
# with such a change is extended (its runs reused), not refused. A change to steps,
# run, outcome or jumps redefines the runs themselves.
REUSABLE_CHANGES = {"name", "models", "contexts", "model_contexts", "modes", "optimizers",
                    "seeds", "mode_seeds", "exclude", "search", "slots"}

# The version of the code that makes a run's results (the training step, the
# instrumentation, the outcome and jump rules). Raise it with any change that
# alters what a run file holds for the same options: the sweep then refuses to
# reuse the older files (or, with --overwrite, recomputes them). A file written
# before the version was recorded counts as version 1.
RESULTS_VERSION = 2
RESULTS_VERSION_ATTR = "results_version"
# The attributes of an option a file lacks count as that option's default: the file
# was written before the option existed, and a new option's default keeps the old
# behaviour.
_DEFAULTS_OF_MISSING = {RESULTS_VERSION_ATTR: 1}


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


def hash_changes(ds) -> dict:
    """How many logged states of a run (steps with a digest, and the end) have an
    input-embedding (readout) SHA-256 other than the start's: the thin record's
    evidence that LoRA left the matrices byte-frozen. NaN where the run logged no
    hashes."""
    from ..training.hashes import HASH_VARIABLES

    out = {}
    for variable in HASH_VARIABLES:   # embedding_sha256, readout_sha256
        name = variable.removesuffix("_sha256")
        start = ds.attrs.get(f"{variable}_start")
        if not start:
            out[f"{name}_changes"] = np.nan
            continue
        values = ds[variable].values.astype(str) if variable in ds else np.array([])
        logged = list(values[values != ""])
        if not values.size or values[-1] == "":   # the end, if the last step has no digest
            logged.append(ds.attrs.get(f"{variable}_end", start))
        out[f"{name}_changes"] = float(sum(v != start for v in logged))
    return out


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def definition_mismatch(attrs: dict, expected: dict, defaults: dict) -> tuple | None:
    """The first (attribute, found, expected) where a file's attributes disagree with
    the run definition ``expected``; a missing attribute counts as its option's
    default (``defaults``). None when they agree."""
    for key, want in sorted(expected.items()):
        have = _plain(attrs[key]) if key in attrs else defaults.get(key, "(absent)")
        if have != want and not (isinstance(have, float) and isinstance(want, float)
                                 and np.isnan(have) and np.isnan(want)):
            return key, have, want
    return None


def _option_defaults(spec: SweepSpec) -> dict:
    """The attributes of every run, outcome and jump option at its default."""
    from phantom_theory.jumps import JumpOptions
    from phantom_theory.outcomes import OutcomeOptions

    from ..training.options import RunOptions

    return {**options_attrs("run", RunOptions()), **options_attrs("outcome", OutcomeOptions()),
            **options_attrs("jump", JumpOptions()), **_DEFAULTS_OF_MISSING}


# Run options that say where a run executes, not what it computes: a study may move
# from a CPU to a GPU (``phantom sweep --device``) and keep its runs; each run
# records its device.
EXECUTION_OPTIONS = ("run_device",)


def run_definition(spec: SweepSpec, group: tuple, lr: float) -> dict:
    """The attributes that define the run of ``group`` at ``lr``: its run options
    (but the device, ``EXECUTION_OPTIONS``), the outcome and jump options, and the
    results version."""
    attrs = {**options_attrs("run", spec.run_options(group, lr)),
             **options_attrs("outcome", spec.outcome), **options_attrs("jump", spec.jumps),
             RESULTS_VERSION_ATTR: RESULTS_VERSION}
    return {k: v for k, v in attrs.items() if k not in EXECUTION_OPTIONS}


def sweep_definition(spec: SweepSpec) -> dict:
    """The attributes a sweep.nc records of what defines all its runs: the run
    options shared by every group, steps, outcome and jump options, results version."""
    template = run_definition(spec, spec.groups()[0], spec.search.lo)
    shared = {k: v for k, v in template.items()
              if not (k.startswith("run_") and k[4:] in PER_GROUP)}
    return {**shared, "run_steps": spec.steps}


class SweepStore:
    """The sweep folder: spec.json, sweep.nc, and one folder per group,
    runs/<model>/<context>/<mode>-<optimizer>-seed<seed>/, holding one lr<lr>.nc per
    finished run. The store alone builds these paths.

    ``target`` is the folder the sweep is for; ``root`` the one it writes, which is
    ``target`` itself, or, when ``overwrite`` replaces a sweep of another spec, a
    sibling ``.NAME.replacing`` that ``commit`` swaps in whole (a killed replacement
    resumes there; the old sweep stays as it was until the swap). A folder holding
    another spec's runs is refused unless overwrite; a folder that holds files but
    no sweep is refused always. ``check=False`` (a Ray worker, under its driver's
    lock) reads the folder as it is."""

    def __init__(self, root, spec: SweepSpec, overwrite: bool = False, check: bool = True):
        self.target = self.root = Path(root)
        self.spec, self.overwrite = spec, overwrite
        self.recorded: dict[tuple, dict] = {}
        # the group summaries of the folder's sweep.nc, kept only when its spec is this
        # very spec (a partial sweep, ``models=``, carries the other groups' over)
        self.recorded_groups: dict[tuple, dict] = {}
        self.previous_models: dict = {}   # the models_json of the sweep.nc it found
        self.starts: dict[tuple, float] = {}   # each group's recorded search start
        self._lock: FolderLock | None = None
        self._defaults = _option_defaults(spec)
        if check:
            self._claim()
        else:
            self.recorded = self._read_record()
        self.starts = self._read_starts()

    # -- claiming the folder --------------------------------------------------------

    def _claim(self) -> None:
        target = self.target
        if target.exists() and not target.is_dir():
            raise PhantomError(f"{target} exists and is not a folder; choose another --out")
        target.mkdir(parents=True, exist_ok=True)   # nothing to lock otherwise
        self._lock = FolderLock(target, "sweep").acquire()
        try:
            self._choose_root()
            self._lock.announce()
            self.root.mkdir(parents=True, exist_ok=True)
            write_text(self.root / SPEC_NAME, self.spec.to_json(), overwrite=True)
            for group in self.spec.groups():   # what a killed writer left
                remove_stale_temporaries(self.group_folder(group))
        except BaseException:
            self.release()
            raise

    def _choose_root(self) -> None:
        """Decide where the sweep writes, and which runs it may reuse."""
        target, text = self.target, self.spec.to_json()
        spec_path = target / SPEC_NAME
        if not spec_path.exists():
            if any(p.name != LOCK_NAME for p in target.iterdir()):
                raise PhantomError(f"{target} is not empty and holds no sweep spec; choose an "
                                   "empty or new folder (--overwrite replaces only a sweep)")
            return
        old_text = spec_path.read_text()
        if old_text == text:
            self.recorded = self._read_record()
            self.recorded_groups = self._read_groups()
            self.previous_models = self._read_models()
            return
        changed = _changed_fields(old_text, text)
        if not self.overwrite and set(changed) <= REUSABLE_CHANGES:
            # A change that leaves every run's definition alone (the bracket, the
            # tolerance, the groups) keeps the runs that the new spec still has, and,
            # when the search itself is unchanged, the eta_c of its groups (a staged
            # sweep that does not search them keeps them).
            self.recorded = self._read_record()
            if "search" not in changed:
                groups = set(self.spec.groups())
                self.recorded_groups = {k: v for k, v in self._read_groups().items()
                                        if k in groups}
                self.previous_models = self._read_models()
            self._prune()
            (target / SWEEP_NAME).unlink(missing_ok=True)
            return
        if not self.overwrite:
            raise PhantomError(
                f"{target} holds a sweep with a different spec (it differs in "
                f"{', '.join(changed)}); choose another --out, or pass --overwrite to "
                "replace it")
        staging = target.with_name(f".{target.name}.replacing")
        if staging.is_dir() and (staging / SPEC_NAME).is_file() \
                and (staging / SPEC_NAME).read_text() == text:
            self.root = staging   # a replacement killed before its swap: resume it
            self.recorded = self._read_record()
            return
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
        except OSError as error:
            raise PhantomError(f"cannot build the replacement of {target} beside it "
                               f"({error}); choose another --out") from None
        self.root = staging

    def _read_record(self) -> dict[tuple, dict]:
        """The runs the folder's sweep.nc records, by (group, lr): a thin record
        (the table without its trajectories) resumes from these, once its run
        definition is the spec's."""
        path, ds = self.root / SWEEP_NAME, self._thin_table()
        if ds is None:
            return {}
        mismatch = definition_mismatch(ds.attrs, sweep_definition(self.spec), self._defaults)
        if mismatch is not None:
            if self.overwrite:
                return {}
            raise self._mismatch_error(path, mismatch, "its runs")
        records = run_records(ds)
        return {(tuple(r[d] for d in GROUP_DIMS), float(r["lr"])): r for r in records}

    def _read_starts(self) -> dict[tuple, float]:
        """The recorded search starts (starts.json) of the spec's groups."""
        path = self.root / STARTS_NAME
        try:
            rows = json.loads(path.read_text()) if path.is_file() else []
        except (OSError, ValueError):
            return {}
        groups = set(self.spec.groups())
        return {tuple(r["group"]): float(r["lr"]) for r in rows
                if isinstance(r, dict) and tuple(r.get("group", ())) in groups}

    def record_starts(self, starts: dict[tuple, float]) -> None:
        """Add search starts to starts.json (atomically), beside the thin record; the
        file is read again first, so that Ray workers of one sweep add to each other's."""
        self.starts = {**self._read_starts(), **self.starts, **starts}
        rows = [{"group": list(k), "lr": v} for k, v in sorted(self.starts.items(),
                                                               key=lambda kv: str(kv[0]))]
        write_text(self.root / STARTS_NAME, json.dumps(rows, indent=0), overwrite=True)

    def _thin_table(self):
        """The folder's sweep.nc, opened once for the claim (None without a readable
        one): the runs, the group summaries and the models' records all come from it."""
        path = self.root / SWEEP_NAME
        if getattr(self, "_table_path", None) != path:
            try:
                table = open_sweep(path) if path.is_file() else None
            except PhantomError:
                table = None
            self._table_path, self._table = path, table
        return self._table

    def _read_models(self) -> dict:
        """The models' loading records (models_json) of the folder's sweep.nc."""
        table = self._thin_table()
        try:
            return json.loads(table.attrs.get("models_json", "{}")) if table is not None else {}
        except ValueError:
            return {}

    def _read_groups(self) -> dict[tuple, dict]:
        """The group summaries of the folder's sweep.nc (empty without one)."""
        table = self._thin_table()
        return group_summaries(table) if table is not None else {}

    def _prune(self) -> None:
        """Delete the run folders of groups that the spec no longer has."""
        keep = {self.group_folder(group) for group in self.spec.groups()}
        for folder in self.root.glob("runs/*/*/*"):
            if folder.is_dir() and folder not in keep:
                shutil.rmtree(folder)

    def commit(self) -> None:
        """Put a replacement built beside the target in its place, in one step."""
        if self.root != self.target:
            publish_folder(self.root, self.target, overwrite=True)
            self.root = self.target

    def release(self) -> None:
        """Let the folder's lock go."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- runs -----------------------------------------------------------------------

    def group_folder(self, group: tuple) -> Path:
        """The folder of one group's run files."""
        model, context, mode, optimizer, seed = group
        return self.root / "runs" / _safe(model) / _safe(context) / f"{mode}-{optimizer}-seed{seed}"

    def path(self, group: tuple, lr: float) -> Path:
        """The file of the run of ``group`` at learning rate ``lr``."""
        return self.group_folder(group) / f"lr{lr:.17g}.nc"

    def _mismatch_error(self, path: Path, mismatch: tuple, what: str) -> PhantomError:
        key, have, want = mismatch
        return PhantomError(
            f"{path} was made by another run definition: its {key} is {have!r}, the spec's "
            f"is {want!r}; {what} cannot be reused: pass --overwrite to compute them again, "
            "or choose another --out")

    def load(self, group: tuple, lr: float) -> dict | None:
        """The record of a finished run of this very definition, or None if it is
        not on disk (or unreadable); a run file of another definition is an error
        (with overwrite: None, so the run is made again and replaces it)."""
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
        mismatch = definition_mismatch(ds.attrs, run_definition(self.spec, group, lr),
                                       self._defaults)
        if mismatch is not None:
            if self.overwrite:
                return None
            raise self._mismatch_error(path, mismatch, "it")
        return self.record(ds, path)

    def save(self, ds) -> dict:
        """Write a finished run's Dataset to its file (replacing any), stamped with
        the results version, and return its record."""
        group = tuple(ds[f].item() for f in GROUP_DIMS)
        path = self.path(group, float(ds.lr))
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = ds.assign_attrs({RESULTS_VERSION_ATTR: RESULTS_VERSION})
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
            **margin_proxies(ds), **outcome_fields(ds), **hash_changes(ds),
            "device": str(ds.attrs.get("device", "")), "engine": str(ds.attrs.get("engine", "")),
            "created": str(ds.attrs.get("created", "")),
            "seconds_per_step": float(ds.attrs.get("seconds_per_step", np.nan)),
            "file": str(path.relative_to(self.root)),
        }


def _changed_fields(old_text: str, new_text: str) -> list[str]:
    try:
        old = json.loads(old_text)
    except ValueError:
        return ["spec.json (unreadable)"]
    new = json.loads(new_text)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
