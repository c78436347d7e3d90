"""Where the group searches run: here, one model at a time (``run_local``), or as
Ray tasks on a cluster (``run_ray``)."""

from __future__ import annotations

import os

from phantom_theory.errors import PhantomError

from .driver import batches, search_batch
from .spec import SweepSpec
from .store import SweepStore

# How often a local sweep rewrites its thin record within a batch, in seconds.
CHECKPOINT_SECONDS = 120.0


def run_local(spec, store, bar, engine, only=None, checkpoint=None):
    """Every batch of groups (just ``only``'s, if given) in this process, loading
    each model once; ``checkpoint(records, summaries, infos)`` after each batch and,
    within one, at most every ``CHECKPOINT_SECONDS`` as runs finish (the runs of
    unfinished searches included, so a stop loses at most that much)."""
    import time

    from ..models import load_model

    records, summaries, infos, loaded = [], {}, {}, {}
    last = [time.monotonic()]

    def within(batch_records, batch_summaries):
        if checkpoint is not None and time.monotonic() - last[0] >= CHECKPOINT_SECONDS:
            checkpoint([*records, *batch_records], {**summaries, **batch_summaries}, infos)
            last[0] = time.monotonic()

    for (model, _, _), keys in batches(spec, only).items():
        template = spec.run_options(keys[0], 1.0)
        if model not in loaded:
            loaded = {model: load_model(model, template.revision, template.dtype,
                                        template.device, template.tie)}   # one at a time
            infos[model] = loaded[model].info.attrs()
        r, s = search_batch(spec, store, keys, loaded[model], engine, bar, on_record=within)
        records += r
        summaries.update(s)
        if checkpoint is not None:
            checkpoint(records, summaries, infos)
            last[0] = time.monotonic()
    return records, summaries, infos


def _ray_task(spec_json: str, root: str, keys: list, engine: str, overwrite: bool = False):
    """One Ray task: the searches of some groups of one batch, in a worker (under
    the lock its driver holds on the folder)."""
    import warnings

    from ..models import load_model

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    spec = SweepSpec.from_json(spec_json)
    template = spec.run_options(keys[0], 1.0)
    loaded = load_model(keys[0][0], template.revision, template.dtype, template.device,
                        template.tie)
    store = SweepStore(root, spec, overwrite, check=False)
    records, summaries = search_batch(spec, store, [tuple(k) for k in keys], loaded, engine)
    return records, summaries, loaded.info.attrs()


def run_ray(spec, store, bar, engine, address, only=None):
    """Every group (just ``only``'s, if given) as one Ray task, on the cluster at
    ``address`` (or a local one)."""
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
        futures = {task.remote(spec.to_json(), str(store.root), [key], engine,
                               store.overwrite): key
                   for keys in batches(spec, only).values() for key in keys}
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


