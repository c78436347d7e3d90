"""The sweep spec: which groups (model, context, mode, optimizer, seed) a sweep
searches, with which run options, bracket and tolerance (data/sweeps/*.toml)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from phantom_theory.critical_lr import SearchOptions
from phantom_theory.errors import PhantomError
from phantom_theory.jumps import JumpOptions
from phantom_theory.options import coerce, options_from_flat
from phantom_theory.outcomes import OutcomeOptions
from phantom_theory.schema import GROUP_DIMS, RUN_DIMS

from ..training.options import RunOptions

# What the sweep's top level sets per run; [run] sets everything else.
PER_GROUP = {*RUN_DIMS, "steps"}
SPEC_NAME, SWEEP_NAME = "spec.json", "sweep.nc"


def _allows(group: tuple, fields: dict) -> bool:
    """Whether ``group`` has, for every field ``fields`` names, one of its values."""
    named = dict(zip(GROUP_DIMS, group, strict=True))
    return all(named[d] in values for d, values in fields.items())


def _options(cls, table: dict, where: str):
    return options_from_flat(cls, table, f"[{where}]")


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
    # contexts = "crossed": the crossed set's file, held-out ids and orientation per model
    crossed: dict = field(default_factory=dict)
    # seeds = {full = [0], lora = [0, 1]}: each mode's own seeds (``seeds`` is then their union)
    mode_seeds: dict = field(default_factory=dict)
    # groups the product leaves out: each a partial group, e.g. {model = "x", optimizer = "adamw"}
    exclude: tuple = ()

    def __post_init__(self):
        for mode, seeds in self.mode_seeds.items():
            if mode not in self.modes:
                raise PhantomError(f"seeds names mode {mode!r}, which the spec does not run "
                                   f"(modes: {', '.join(self.modes)})")
            if not seeds:
                raise PhantomError(f"seeds lists no seed for mode {mode!r}")
        for name in ("models", "contexts", "modes", "optimizers", "seeds"):
            values = list(getattr(self, name))
            if not values:
                raise PhantomError(f"the sweep spec lists no {name}")
            repeated = [v for i, v in enumerate(values) if v in values[:i]]
            if repeated:
                raise PhantomError(f"the sweep spec lists {repeated[0]!r} twice in {name}; "
                                   "list each once")
        for model in self.models:
            options_from_flat(RunOptions, {**self.template_fields(), "model": model}, "models")
        for seed in self.seeds:
            options_from_flat(RunOptions, {**self.template_fields(), "seed": seed}, "seeds")
        for mode in self.modes:
            options_from_flat(RunOptions, {**self.template_fields(), "mode": mode}, "[run]")
        for optimizer in self.optimizers:
            options_from_flat(RunOptions, {**self.template_fields(), "optimizer": optimizer},
                              "[run]")
        if self.slots < 1:
            raise PhantomError(f"slots must be at least 1, not {self.slots}")
        values = self.values_by_dim()
        for rule in self.exclude:
            if not isinstance(rule, dict) or not rule or set(rule) - set(GROUP_DIMS):
                raise PhantomError(f"exclude entry {rule!r} must be a table of group fields "
                                   f"({', '.join(GROUP_DIMS)}), e.g. {{model = \"m\", "
                                   "optimizer = \"adamw\"}")
            for dim, value in rule.items():
                if value not in values[dim]:
                    raise PhantomError(f"exclude entry {rule!r}: {dim} {value!r} is not one "
                                       f"of the spec's {dim}s")
        if not self.groups():
            raise PhantomError("the sweep spec's exclude leaves no group to run")

    def template_fields(self, model: str | None = None) -> dict:
        """The RunOptions fields of a template run: ``model`` (default the first), the
        first context, mode and optimizer, the steps and the [run] options."""
        return dict(model=model or self.models[0], context=self.contexts[0], mode=self.modes[0],
                    optimizer=self.optimizers[0], steps=self.steps, **self.run)

    def contexts_of(self, model: str) -> tuple[str, ...]:
        """The contexts searched on ``model``: its own, if the spec names them, else
        ``contexts``."""
        return tuple(self.model_contexts.get(model, self.contexts))

    @property
    def held_out(self) -> tuple[str, ...]:
        """The crossed set's held-out contexts: the sweep runs them, fits must not use
        them (recorded in the sweep's spec as crossed.held_out)."""
        return tuple(self.crossed.get("held_out", ()))

    def seeds_of(self, mode: str) -> tuple[int, ...]:
        """The seeds of ``mode``'s groups: its own, if the spec names them, else ``seeds``."""
        return tuple(self.mode_seeds.get(mode, self.seeds))

    def values_by_dim(self) -> dict[str, tuple]:
        """Each group field's values in the spec: models, contexts, modes, optimizers,
        seeds."""
        return dict(zip(GROUP_DIMS, (self.models, self.contexts, self.modes, self.optimizers,
                                     self.seeds), strict=True))

    def excluded(self, group: tuple) -> bool:
        """Whether an ``exclude`` entry matches ``group`` (every field it names)."""
        return any(_allows(group, {k: (v,) for k, v in rule.items()}) for rule in self.exclude)

    def groups(self, only: dict | None = None) -> list[tuple]:
        """Every (model, context, mode, optimizer, seed) group, ordered by model, mode,
        optimizer, context, then seed, less the excluded ones; with ``only`` (group
        field -> allowed values), just the groups it allows."""
        out = [(m, c, mo, o, s) for m in self.models for mo in self.modes
               for o in self.optimizers for c in self.contexts_of(m) for s in self.seeds_of(mo)
               if not self.excluded((m, c, mo, o, s))]
        return [g for g in out if _allows(g, only)] if only else out

    def check_only(self, only: dict | None) -> dict | None:
        """``only`` (group field -> values), each value one of the spec's; an error
        names the first that is not. Empty lists are dropped."""
        if not only:
            return None
        only = {d: list(v) for d, v in only.items() if v}
        values = self.values_by_dim()
        for dim, allowed in only.items():
            unknown = [v for v in allowed if v not in values[dim]]
            if unknown:
                raise PhantomError(f"--{dim}s {' '.join(map(str, unknown))}: not among the "
                                   f"spec's {dim}s ({', '.join(map(str, values[dim]))})")
        if not self.groups(only):
            raise PhantomError("the chosen models, modes and optimizers leave no group of the "
                               "spec to search")
        return only or None

    def run_options(self, group: tuple, lr: float) -> RunOptions:
        """The RunOptions of the run of ``group`` at learning rate ``lr``."""
        fields_ = dict(zip(GROUP_DIMS, group, strict=True))
        return options_from_flat(RunOptions, {**self.run, **fields_, "lr": lr,
                                              "steps": self.steps}, "the sweep's [run]")

    def to_json(self) -> str:
        """The spec as JSON with sorted keys, the same text for the same spec."""
        data = dataclasses.asdict(self)
        for name in ("crossed", "mode_seeds", "exclude"):
            if not data[name]:
                del data[name]   # a spec without them keeps its digest
        if "exclude" in data:
            data["exclude"] = [dict(sorted(rule.items())) for rule in data["exclude"]]
        return json.dumps(data, sort_keys=True)

    def digest(self) -> str:
        """The SHA-256 (hex) of ``to_json``."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        """The spec back from ``to_json``'s text, its options dataclasses rebuilt."""
        data = json.loads(text)
        data["model_contexts"] = {m: tuple(ids) for m, ids in data.get("model_contexts", {}).items()}
        data["mode_seeds"] = {m: tuple(s) for m, s in data.get("mode_seeds", {}).items()}
        data["exclude"] = tuple(data.get("exclude", ()))
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
    except IsADirectoryError:
        raise PhantomError(f"{path} is a folder; give a sweep spec's TOML file, such as "
                           "data/sweeps/demo.toml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PhantomError(f"cannot read the sweep spec {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise PhantomError(f"{path} is not valid TOML: {error}") from None
    allowed = {"name", "models", "contexts", "modes", "optimizers", "seeds", "steps", "lr",
               "run", "outcome", "jumps", "slots", "selected_count", "exclude"}
    unknown = set(table) - allowed
    if unknown:
        raise PhantomError(f"unknown key(s) {sorted(unknown)} in {path}; allowed: "
                           f"{', '.join(sorted(allowed))}")
    missing = {"models", "contexts"} - set(table)
    if missing:
        raise PhantomError(f"{path} lacks {sorted(missing)}")
    where = str(path)
    run = table.get("run", {})
    if not isinstance(run, dict):
        raise PhantomError(f"[run] in {path} must be a table of run options, not {run!r}")
    run = dict(run)
    clash = PER_GROUP & set(run)
    if clash:
        raise PhantomError(f"[run] in {path} may not set {sorted(clash)}; they belong to the "
                           "sweep's top level")
    mode_seeds = {}
    if isinstance(table.get("seeds"), dict):
        # seeds = {full = [0], lora = [0, 1]}: per mode; the union is the seed coordinate
        mode_seeds = {str(m): coerce(v, tuple[int, ...], f"seeds.{m}", where)
                      for m, v in table["seeds"].items()}
        table = {**table, "seeds": sorted({s for v in mode_seeds.values() for s in v})}
    lists = {k: coerce(table[k], tuple[int, ...] if k == "seeds" else tuple[str, ...], k, where)
             for k in ("models", "modes", "optimizers", "seeds") if k in table}
    exclude = table.get("exclude", [])
    if not isinstance(exclude, list):
        raise PhantomError(f"exclude in {path} must be a list of tables, e.g. "
                           "exclude = [{model = \"m\", optimizer = \"adamw\"}], not "
                           f"{exclude!r}")
    contexts = table["contexts"]
    if "selected_count" in table and contexts != "selected":
        raise PhantomError(f"selected_count in {path} applies only to contexts = \"selected\"; "
                           "drop it, or select the contexts")
    model_contexts, crossed = {}, {}
    if contexts == "all":
        from ..contexts import load_contexts

        contexts = list(load_contexts())
    elif contexts == "selected":
        # Each model's own oriented selection (data/contexts/selected/MODEL.toml),
        # best first; selected_count keeps the first few.
        from ..contexts import selected_contexts

        count = table.get("selected_count")
        if count is not None:
            count = coerce(count, int, "selected_count", where)
            if count < 1:
                raise PhantomError(f"selected_count in {path} must be at least 1, not {count}")
        model_contexts = {m: tuple(selected_contexts(m)[:count]) for m in lists["models"]}
        contexts = sorted({c for ids in model_contexts.values() for c in ids})
    elif contexts == "crossed":
        # The crossed set (data/contexts/selected/crossed.toml): the same contexts on
        # every model, each oriented per model when it is tokenized. The held-out ones
        # run too, so that they can be scored; the spec records which they are.
        from ..contexts.crossed import read_crossed

        crossed_set = read_crossed()
        crossed = crossed_set.record(lists["models"])
        contexts = list(crossed_set.contexts)
    elif not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise PhantomError(f"contexts in {path} must be a list of ids, \"all\", \"selected\" "
                           f"or \"crossed\", not {contexts!r}")
    for name in ("lr", "outcome", "jumps"):
        if not isinstance(table.get(name, {}), dict):
            raise PhantomError(f"[{name}] in {path} must be a table, not {table[name]!r}")
    return SweepSpec(
        name=coerce(table.get("name", path.stem), str, "name", where), contexts=tuple(contexts),
        run=run, steps=coerce(table.get("steps", 100), int, "steps", where),
        slots=coerce(table.get("slots", 32), int, "slots", where),
        search=_options(SearchOptions, table.get("lr", {}), "lr"),
        outcome=_options(OutcomeOptions, table.get("outcome", {}), "outcome"),
        jumps=_options(JumpOptions, table.get("jumps", {}), "jumps"),
        model_contexts=model_contexts, crossed=crossed, mode_seeds=mode_seeds,
        exclude=tuple(exclude), **lists)


