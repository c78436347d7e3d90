"""Learning-rate sweeps: the spec, the resumable store, and the drivers that find
eta_c and eta_max for every group (model, context, mode, optimizer, seed).

A sweep is a set of group searches (``phantom_theory.critical_lr.GroupSearch``).
Each proposes learning rates; a driver turns them into runs, hands the runs to an
engine (batched by default), writes every finished run atomically to the sweep
folder as soon as it ends, and tells the search its outcome. A finished run found
on disk is read instead of run again, so re-running a killed sweep replays the
searches, skips what is done, and continues.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phantom_theory.critical_lr import GroupSearch, Observation, SearchOptions
from phantom_theory.errors import PhantomError
from phantom_theory.jumps import JumpOptions
from phantom_theory.outcomes import OutcomeOptions
from phantom_theory.provenance import options_attrs, provenance
from phantom_theory.sweep import build_sweep, write_sweep
from phantom_theory.trajectory import open_run, write_run

from .train import RunOptions

GROUP_FIELDS = ("model", "context", "mode", "optimizer", "seed")
PER_GROUP = {"model", "context", "mode", "optimizer", "seed", "lr", "steps"}
SPEC_NAME, SWEEP_NAME = "spec.json", "sweep.nc"


def _options(cls, table: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(table) - set(names)
    if unknown:
        raise PhantomError(f"unknown key(s) {sorted(unknown)} in [{where}]; allowed: "
                           f"{', '.join(sorted(names))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    return cls(**values)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs: every combination of models, contexts, modes, optimizers
    and seeds is one group, searched for eta_c (and eta_max) within the lr bracket."""

    name: str
    models: tuple[str, ...]
    contexts: tuple[str, ...]
    modes: tuple[str, ...] = ("full", "lora")
    optimizers: tuple[str, ...] = ("adamw",)
    seeds: tuple[int, ...] = (0,)
    steps: int = 100
    search: SearchOptions = SearchOptions()
    run: dict = field(default_factory=dict)       # any other RunOptions field
    outcome: OutcomeOptions = OutcomeOptions()
    jumps: JumpOptions = JumpOptions()
    slots: int = 32                               # most runs in one batch
    model_contexts: dict = field(default_factory=dict)   # per-model contexts, if any

    def __post_init__(self):
        for name in ("models", "contexts", "modes", "optimizers", "seeds"):
            if not getattr(self, name):
                raise PhantomError(f"the sweep spec lists no {name}")
        for mode in self.modes:
            RunOptions(**{**self.template_fields(), "mode": mode})
        for optimizer in self.optimizers:
            RunOptions(**{**self.template_fields(), "optimizer": optimizer})
        if self.slots < 1:
            raise PhantomError(f"slots must be at least 1, not {self.slots}")

    def template_fields(self, model: str | None = None) -> dict:
        return dict(model=model or self.models[0], context=self.contexts[0], mode=self.modes[0],
                    optimizer=self.optimizers[0], steps=self.steps, **self.run)

    def contexts_of(self, model: str) -> tuple[str, ...]:
        return tuple(self.model_contexts.get(model, self.contexts))

    def groups(self) -> list[tuple]:
        return [(m, c, mo, o, s) for m in self.models for mo in self.modes
                for o in self.optimizers for c in self.contexts_of(m) for s in self.seeds]

    def run_options(self, group: tuple, lr: float) -> RunOptions:
        fields_ = dict(zip(GROUP_FIELDS, group, strict=True))
        return RunOptions(**{**self.run, **fields_, "lr": lr, "steps": self.steps})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        data = json.loads(text)
        data["model_contexts"] = {m: tuple(ids) for m, ids in data.get("model_contexts", {}).items()}
        return cls(**{**data, "search": _options(SearchOptions, data["search"], "lr"),
                      "outcome": _options(OutcomeOptions, data["outcome"], "outcome"),
                      "jumps": _options(JumpOptions, data["jumps"], "jumps"),
                      **{k: tuple(data[k]) for k in ("models", "contexts", "modes",
                                                     "optimizers", "seeds")}})


def load_spec(path) -> SweepSpec:
    """Read a sweep spec from TOML (see data/sweeps/demo.toml)."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PhantomError(f"no such sweep spec: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise PhantomError(f"{path} is not valid TOML: {error}") from None
    allowed = {"name", "models", "contexts", "modes", "optimizers", "seeds", "steps", "lr",
               "run", "outcome", "jumps", "slots", "selected_count"}
    unknown = set(table) - allowed
    if unknown:
        raise PhantomError(f"unknown key(s) {sorted(unknown)} in {path}; allowed: "
                           f"{', '.join(sorted(allowed))}")
    missing = {"models", "contexts"} - set(table)
    if missing:
        raise PhantomError(f"{path} lacks {sorted(missing)}")
    run = dict(table.get("run", {}))
    clash = PER_GROUP & set(run)
    if clash:
        raise PhantomError(f"[run] in {path} may not set {sorted(clash)}; they belong to the "
                           "sweep's top level")
    contexts = table["contexts"]
    model_contexts = {}
    if contexts == "all":
        from .contexts import load_contexts

        contexts = list(load_contexts())
    elif contexts == "selected":
        # Each model's own oriented selection (data/contexts/selected/MODEL.toml),
        # best first; selected_count keeps the first few.
        from .contexts import selected_contexts

        count = table.get("selected_count")
        model_contexts = {m: tuple(selected_contexts(m)[:count]) for m in table["models"]}
        contexts = sorted({c for ids in model_contexts.values() for c in ids})
    elif not isinstance(contexts, list):
        raise PhantomError(f"contexts in {path} must be a list of ids, \"all\" or \"selected\"")
    lists = {k: tuple(table[k]) for k in ("models", "modes", "optimizers", "seeds") if k in table}
    return SweepSpec(
        name=table.get("name", path.stem), contexts=tuple(contexts), run=run,
        steps=int(table.get("steps", 100)), slots=int(table.get("slots", 32)),
        search=_options(SearchOptions, table.get("lr", {}), "lr"),
        outcome=_options(OutcomeOptions, table.get("outcome", {}), "outcome"),
        jumps=_options(JumpOptions, table.get("jumps", {}), "jumps"),
        model_contexts=model_contexts, **lists)


# Spec fields whose change leaves every run's definition as it was: a sweep folder
# with such a change is extended (its runs reused), not refused. A change to steps,
# run, outcome or jumps redefines the runs themselves.
REUSABLE_CHANGES = {"name", "models", "contexts", "model_contexts", "modes", "optimizers",
                    "seeds", "search", "slots"}


def _safe(name: str) -> str:
    return name.replace("/", "--")


class SweepStore:
    """The sweep folder: spec.json, runs/<model>/<context>/<one file per run>.nc, and
    sweep.nc. A folder holding another spec's runs is refused unless overwrite."""

    def __init__(self, root, spec: SweepSpec, overwrite: bool = False, check: bool = True):
        self.root, self.spec = Path(root), spec
        if check:
            self._claim(overwrite)

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
            if not same:
                # A change that leaves every run's definition alone (the bracket, the
                # tolerance, the groups) keeps the runs that the new spec still has.
                self._prune()
                (self.root / SWEEP_NAME).unlink(missing_ok=True)
        elif self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise PhantomError(f"{self.root} is not empty and holds no sweep spec; choose an "
                               "empty or new folder, or pass --overwrite")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{SPEC_NAME}.{os.getpid()}.tmp"
        tmp.write_text(self.spec.to_json())
        os.replace(tmp, self.root / SPEC_NAME)
        for stale in self.root.glob("runs/**/.*.tmp"):   # left by a killed writer
            stale.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Delete the run files of groups that the spec no longer has."""
        keep = {self.path(group, 1.0).parent / self.path(group, 1.0).name.rsplit("-lr", 1)[0]
                for group in self.spec.groups()}
        for path in self.root.glob("runs/*/*/*.nc"):
            if path.parent / path.name.rsplit("-lr", 1)[0] not in keep:
                path.unlink()

    def path(self, group: tuple, lr: float) -> Path:
        model, context, mode, optimizer, seed = group
        return (self.root / "runs" / _safe(model) / _safe(context) /
                f"{mode}-{optimizer}-seed{seed}-lr{lr:.17g}.nc")

    def load(self, group: tuple, lr: float) -> dict | None:
        """The record of a finished run, or None if it is not on disk (or unreadable)."""
        path = self.path(group, lr)
        if not path.is_file():
            return None
        try:
            ds = open_run(path)
            if "outcome" not in ds or float(ds.lr) != lr:
                return None
        except PhantomError:
            return None
        return self.record(ds, path)

    def save(self, ds) -> dict:
        group = tuple(ds[f].item() for f in GROUP_FIELDS)
        path = self.path(group, float(ds.lr))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_run(ds, path, overwrite=True)
        return self.record(ds, path)

    def record(self, ds, path: Path) -> dict:
        finite = np.isfinite(ds.loss.values)
        last = int(np.flatnonzero(finite)[-1]) if finite.any() else 0
        return {
            **{f: ds[f].item() for f in GROUP_FIELDS}, "lr": float(ds.lr),
            "outcome": ds.outcome.item(), "flipped": bool(ds.flipped),
            "flip_step": int(ds.flip_step), "diverged_step": int(ds.diverged_step),
            "loss_start": float(ds.loss[0]), "loss_end": float(ds.loss[last]),
            "phi_start": float(ds.phi[0]), "phi_end": float(ds.phi[last]),
            "drag_change": float(ds.drag_change), "n_jumps": int(ds.sizes.get("jump", 0)),
            "n_phantom_jumps": int(ds.jump_phantom.sum()) if "jump_phantom" in ds else 0,
            "file": str(path.relative_to(self.root)),
        }


def expected_runs(spec: SweepSpec) -> int:
    """About how many runs a group search takes (the grid plus two bisections)."""
    s = spec.search
    ratio = (s.hi / s.lo) ** (1 / (s.grid_points - 1))
    bisections = max(1, math.ceil(math.log2(math.log(ratio) / math.log1p(s.tolerance))))
    return s.grid_points + (2 if s.find_max else 1) * bisections


def search_batch(spec: SweepSpec, store: SweepStore, keys: list[tuple], loaded,
                 engine: str = "batched", bar=None) -> tuple[list[dict], dict]:
    """Search groups that share (model, mode, optimizer): their runs go through one
    engine. Returns the run records and each group's summary."""
    from .batch import BatchedEngine
    from .contexts import get_context, model_input_ids
    from .train import run

    searches = {key: GroupSearch(spec.search) for key in keys}
    records: list[dict] = []
    queue: deque = deque()
    group_of: dict[int, tuple] = {}

    def refill(key):
        queue.extend((key, lr) for lr in searches[key].pending())

    def accept(key, record):
        records.append(record)
        searches[key].observe(Observation(record["lr"], record["flipped"], record["outcome"]))
        refill(key)
        if bar is not None:
            bar.total = max(bar.total or 0, bar.n + 1)
            bar.update(1)

    def next_request():
        while queue:
            key, lr = queue.popleft()
            cached = store.load(key, lr)
            if cached is not None:
                accept(key, cached)
                continue
            options = spec.run_options(key, lr)
            group_of[id(options)] = key
            return options
        return None

    def on_finish(options, ds):
        accept(group_of.pop(id(options)), store.save(ds))

    for key in keys:
        refill(key)
    template = spec.run_options(keys[0], 1.0)
    if engine == "batched":
        # One padded length for the whole search keeps every batch's shapes, and
        # so its arithmetic, the same however the runs happen to be grouped.
        length = max(len(model_input_ids(loaded.tokenizer, get_context(context).sentence))
                     for context in spec.contexts_of(keys[0][0]))
        BatchedEngine(template, loaded, spec.slots, spec.outcome, spec.jumps,
                      length=length).run(next_request, on_finish)
    elif engine == "sequential":
        while (options := next_request()) is not None:
            on_finish(options, run(options, loaded=loaded, outcome_options=spec.outcome,
                                   jump_options=spec.jumps))
    else:
        raise PhantomError(f"unknown engine {engine!r}; choose batched or sequential")
    unfinished = [key for key, search in searches.items() if not search.done]
    if unfinished:
        raise RuntimeError(f"searches ended unfinished: {unfinished}")
    return records, {key: search.summary() for key, search in searches.items()}


def batches(spec: SweepSpec) -> dict[tuple, list[tuple]]:
    """The spec's groups by what they share in a batch: (model, mode, optimizer)."""
    out: dict[tuple, list[tuple]] = {}
    for key in spec.groups():
        out.setdefault((key[0], key[2], key[3]), []).append(key)
    return out


def _local(spec, store, bar, engine):
    from .models import load_model

    records, summaries, infos, loaded = [], {}, {}, {}
    for (model, _, _), keys in batches(spec).items():
        template = spec.run_options(keys[0], 1.0)
        if model not in loaded:
            loaded = {model: load_model(model, template.revision, template.dtype,
                                        template.device, template.tie)}   # one at a time
            infos[model] = loaded[model].info.attrs()
        r, s = search_batch(spec, store, keys, loaded[model], engine, bar)
        records += r
        summaries.update(s)
    return records, summaries, infos


def _ray_task(spec_json: str, root: str, keys: list, engine: str):
    """One Ray task: the searches of some groups of one batch, in a worker."""
    import warnings

    from .models import load_model

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    spec = SweepSpec.from_json(spec_json)
    template = spec.run_options(keys[0], 1.0)
    loaded = load_model(keys[0][0], template.revision, template.dtype, template.device,
                        template.tie)
    store = SweepStore(root, spec, check=False)
    records, summaries = search_batch(spec, store, [tuple(k) for k in keys], loaded, engine)
    return records, summaries, loaded.info.attrs()


def _ray(spec, store, bar, engine, address):
    try:
        import ray
    except ImportError:
        raise PhantomError("the ray executor needs Ray: pip install '.[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        env = {k: v for k, v in os.environ.items() if k.startswith(("PHANTOM_", "TRANSFORMERS_"))}
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 and spec.run.get(
            "device", "cpu").startswith("cuda") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus)(_ray_task)
        futures = {task.remote(spec.to_json(), str(store.root), [key], engine): key
                   for keys in batches(spec).values() for key in keys}
        records, summaries, infos = [], {}, {}
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            r, s, info = ray.get(done[0])
            records += r
            summaries.update({tuple(k): v for k, v in s.items()})
            infos[futures[done[0]][0]] = info
            if bar is not None:
                bar.total = max(bar.total or 0, bar.n + len(r))
                bar.update(len(r))
    finally:
        if started_here:
            ray.shutdown()
    return records, summaries, infos


def run_sweep(spec: SweepSpec, out, executor: str = "local", engine: str = "batched",
              overwrite: bool = False, progress: bool = False, address: str | None = None):
    """Run (or resume) a sweep into the folder ``out`` and return its Dataset, which
    is also written to ``out/sweep.nc``."""
    from tqdm.auto import tqdm

    if executor not in ("local", "ray"):
        raise PhantomError(f"unknown executor {executor!r}; choose local or ray")
    store = SweepStore(out, spec, overwrite)
    groups = spec.groups()
    bar = tqdm(total=len(groups) * expected_runs(spec), unit="run", disable=not progress,
               desc=f"sweep {spec.name}", dynamic_ncols=True)
    try:
        if executor == "ray":
            records, summaries, infos = _ray(spec, store, bar, engine, address)
        else:
            records, summaries, infos = _local(spec, store, bar, engine)
    finally:
        bar.total = bar.n   # the estimate was an estimate; the count is exact
        bar.refresh()
        bar.close()
    attrs = {
        **provenance("torch", "transformers", "peft", "tokenizers", "safetensors"),
        "sweep_name": spec.name, "sweep_spec": spec.to_json(),
        "sweep_spec_sha256": spec.digest(), "executor": executor, "engine": engine,
        "models_json": json.dumps(infos, sort_keys=True, default=str),
        "run_steps": spec.steps,
        **options_attrs("search", spec.search), **options_attrs("outcome", spec.outcome),
        **options_attrs("jump", spec.jumps),
        **{key: value for key, value in
           options_attrs("run", spec.run_options(groups[0], spec.search.lo)).items()
           if key[4:] not in PER_GROUP},
    }
    ds = build_sweep(records, summaries, attrs)
    write_sweep(ds, store.root / SWEEP_NAME)
    return ds
