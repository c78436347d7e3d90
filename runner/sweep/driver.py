"""The sweep driver: the searches that find
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
import json
import math
from collections import deque

from phantom_theory.critical_lr import Observation, make_search
from phantom_theory.errors import PhantomError
from phantom_theory.options import options_attrs
from phantom_theory.provenance import provenance
from phantom_theory.sweep import build_sweep, write_sweep

from .spec import PER_GROUP, SWEEP_NAME, SweepSpec
from .store import RESULTS_VERSION, RESULTS_VERSION_ATTR, SweepStore


def expected_runs(spec: SweepSpec) -> int:
    """About how many runs a group search takes: the root-finder's few per edge, or
    the grid plus two bisections."""
    s = spec.search
    if s.method == "root":
        return 6 + (6 if s.find_max else 0)
    ratio = (s.hi / s.lo) ** (1 / (s.grid_points - 1))
    bisections = max(1, math.ceil(math.log2(math.log(ratio) / math.log1p(s.tolerance))))
    return s.grid_points + (2 if s.find_max else 1) * bisections


def search_batch(spec: SweepSpec, store: SweepStore, keys: list[tuple], loaded,
                 engine: str = "batched", bar=None,
                 on_record=None) -> tuple[list[dict], dict]:
    """Search groups that share (model, mode, optimizer): their runs go through one
    engine. Returns the run records and each group's summary; ``on_record(records,
    summaries)`` hears of every newly computed run, with the summaries of the
    searches finished so far."""
    from ..contexts.pool import get_context, model_input_ids
    from ..training.batched import BatchedEngine
    from ..training.loop import run

    seeds = start_points(spec, keys, loaded, store)
    searches = {key: make_search(spec.search, seeds.get(key)) for key in keys}
    records: list[dict] = []
    queue: deque = deque()
    group_of: dict[int, tuple] = {}

    def refill(key):
        queue.extend((key, lr) for lr in searches[key].pending())

    def summary(key):
        return {**searches[key].summary(), "seed_lr": seeds.get(key, math.nan)}

    def accept(key, record, fresh=False):
        records.append(record)
        searches[key].observe(observation_of(record))
        refill(key)
        if bar is not None:
            bar.total = max(bar.total or 0, bar.n + 1)
            bar.update(1)
        if fresh and on_record is not None:
            on_record(records, {k: summary(k) for k, s in searches.items() if s.done})

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
        accept(group_of.pop(id(options)), store.save(ds), fresh=True)

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
    summaries = {key: summary(key) for key in searches}
    return records, summaries


def observation_of(record: dict) -> Observation:
    """What a search is told of a finished run, from its record (a run file's, or a
    row of a thin sweep table; records that predate the proxies carry NaN)."""
    return Observation(record["lr"], bool(record["flipped"]), str(record["outcome"]),
                       float(record.get("margin_start", math.nan)),
                       float(record.get("margin_max", math.nan)),
                       float(record.get("margin_end", math.nan)),
                       None if "ahead_at_end" not in record else bool(record["ahead_at_end"]))


def start_points(spec: SweepSpec, keys: list[tuple], loaded, store=None) -> dict[tuple, float]:
    """Where each group's eta_c search starts: the linear theory's |m0| / (T G0),
    measured at initialisation with the group's own mode, optimizer and LoRA seed
    (empty for the bisect method or a blind start). A start the store recorded is
    reused, so that a search resumed elsewhere (another device, whose float32
    gradients differ in the last digits) proposes the very runs it recorded."""
    if spec.search.method != "root" or spec.search.start != "linear":
        return {}
    from ..at_init import linear_predictions

    out = {key: store.starts[key] for key in keys if store is not None and key in store.starts}
    missing = [key for key in keys if key not in out]
    for seed in sorted({key[4] for key in missing}):
        group = [key for key in missing if key[4] == seed]
        template = spec.run_options(group[0], 1.0)
        predicted = linear_predictions(loaded, [key[1] for key in group], template.mode,
                                       template.optimizer, spec.steps, template.lora, seed,
                                       template.eps, template.model)
        out.update({key: predicted[key[1]][2] for key in group})
    if store is not None and missing:
        store.record_starts({key: out[key] for key in missing})
    return out


def batches(spec: SweepSpec, only: dict | None = None) -> dict[tuple, list[tuple]]:
    """The spec's groups (just ``only``'s, if given) by what they share in a batch:
    (model, mode, optimizer)."""
    out: dict[tuple, list[tuple]] = {}
    for key in spec.groups(only):
        out.setdefault((key[0], key[2], key[3]), []).append(key)
    return out


def run_sweep(spec: SweepSpec, out, executor: str = "local", engine: str = "batched",
              overwrite: bool = False, progress: bool = False, address: str | None = None,
              only: dict | None = None, device: str | None = None):
    """Run (or resume) a sweep into the folder ``out`` and return its Dataset, which
    is also written to ``out/sweep.nc`` after every batch of groups (the thin record
    grows as the sweep goes, so a stop loses at most one batch). ``only`` (group
    field -> values, e.g. {"model": [...], "mode": ["full"]}) searches just those
    groups: a staged study keeps one spec and folder, and the other groups already
    recorded stay in sweep.nc. ``device`` runs this sweep on another device than the
    spec's [run] names (a CPU study continued on a GPU): the device is not part of a
    run's definition, so the runs of both are one study, each recording its own
    device. The folder is locked for the whole sweep (a second sweep on it is refused with this one's
    pid)."""
    if executor not in ("local", "ray"):
        raise PhantomError(f"unknown executor {executor!r}; choose local or ray")
    if engine not in ("batched", "sequential"):
        raise PhantomError(f"unknown engine {engine!r}; choose batched or sequential")
    only = spec.check_only(only)
    running = spec if device is None else dataclasses.replace(
        spec, run={**spec.run, "device": device})
    check_runnable(running, only, "in the sweep's [run]" if device is None else "of --device")
    store = SweepStore(out, spec, overwrite)
    try:
        ds = _search_and_write(running, store, executor, engine, progress, address, only)
        store.commit()
    finally:
        store.release()
    return ds


def check_runnable(spec: SweepSpec, only: dict | None = None,
                   device_from: str = "in the sweep's [run]") -> None:
    """Refuse, before the sweep folder is touched, a spec naming a model, context or
    device that no run could use (the spec itself checked its types and values);
    just the models ``only`` allows, if given."""
    from ..contexts import get_context, load_contexts
    from ..models.catalog import REGISTRY, resolve
    from ..models.gguf import is_cached

    pool = load_contexts()
    for model in (only or {}).get("model") or spec.models:
        resolve(model)
        if model in REGISTRY and not is_cached(model):
            raise PhantomError(f"registry model {model!r} of the spec is not cached; run "
                               f"`phantom models pull {model}` first")
        for context in spec.contexts_of(model):
            get_context(context, pool)
    device = spec.run_options(spec.groups()[0], 1.0).device
    try:
        import torch

        kind = torch.device(device).type
    except RuntimeError:
        raise PhantomError(f"device {device!r} {device_from} is not a torch device; "
                           "give cpu, cuda, cuda:1, mps, ...") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise PhantomError(f"device {device!r} {device_from} needs CUDA, which this "
                           "machine lacks; give device = \"cpu\"")


def _search_and_write(spec, store, executor, engine, progress, address, only=None):
    """Run every group's search (just ``only``'s, if given) into ``store`` and write
    sweep.nc there after every batch and at the end."""
    from tqdm.auto import tqdm

    groups = spec.groups(only)
    searched = set(groups)
    # what this sweep keeps of the groups it does not search (a staged study)
    others = set(spec.groups()) - searched
    kept_runs = [r for key, r in store.recorded.items() if key[0] in others]
    kept_groups = {k: v for k, v in store.recorded_groups.items() if k in others}
    bar = tqdm(total=len(groups) * expected_runs(spec), unit="run", disable=not progress,
               desc=f"sweep {spec.name}", dynamic_ncols=True)

    def write(records, summaries, infos):
        attrs = _sweep_attrs(spec, executor, engine, infos, store)
        ds = build_sweep([*kept_runs, *records], {**kept_groups, **summaries}, attrs)
        write_sweep(ds, store.root / SWEEP_NAME, overwrite=True)
        return ds

    try:
        from .executors import run_local, run_ray

        if executor == "ray":
            records, summaries, infos = run_ray(spec, store, bar, engine, address, only)
        else:
            records, summaries, infos = run_local(spec, store, bar, engine, only,
                                                  checkpoint=write)
    finally:
        bar.total = bar.n   # the estimate was an estimate; the count is exact
        bar.refresh()
        bar.close()
    return write(records, summaries, infos)


def _sweep_attrs(spec, executor, engine, infos, store) -> dict:
    """The sweep table's attributes: provenance, the spec and its digest, the models'
    loading records (those of an earlier stage kept), every option."""
    previous = dict(store.previous_models)
    groups = spec.groups()
    return {
        **provenance("torch", "transformers", "peft", "tokenizers", "safetensors"),
        "sweep_name": spec.name, "sweep_spec": store.spec.to_json(),
        "sweep_spec_sha256": store.spec.digest(), "executor": executor, "engine": engine,
        "models_json": json.dumps({**previous, **infos}, sort_keys=True, default=str),
        "run_steps": spec.steps,
        **options_attrs("search", spec.search), **options_attrs("outcome", spec.outcome),
        **options_attrs("jump", spec.jumps),
        **{key: value for key, value in
           options_attrs("run", spec.run_options(groups[0], spec.search.lo)).items()
           if key[4:] not in PER_GROUP},
        RESULTS_VERSION_ATTR: RESULTS_VERSION,
    }
