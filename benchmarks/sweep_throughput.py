"""Throughput of the batched engine against a plain sequential loop, in one process.

    python benchmarks/sweep_throughput.py [--models tiny-gpt2 tiny-neox] [--runs 32]
        [--steps 50] [--repeats 3] [--device cpu] [--dtype float32]

For each (model, mode, optimizer) it builds one set of N runs (contexts x learning
rates spread over four decades) and runs it two ways: ``runner.train.run`` one
after another, and ``runner.batch.run_batched`` all together. The two alternate
``--repeats`` times so that drift in a shared machine's speed hits both alike; it
prints the member-steps per second of each (medians) and the median of the
per-repeat ratios. Each way includes the full instrumentation and builds every
run's trajectory Dataset, as a sweep does.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings

import numpy as np
import torch
from runner.batch import run_batched
from runner.train import RunOptions, run

from runner.contexts import load_contexts
from runner.models import load_model

warnings.filterwarnings("ignore")


def run_set(model, mode, optimizer, n_runs, steps, device, dtype):
    contexts = list(load_contexts())[:8]
    per_context = -(-n_runs // len(contexts))
    lrs = np.geomspace(1e-4, 1e-1, per_context) if optimizer == "adamw" else \
        np.geomspace(1e-3, 1.0, per_context)
    combos = list(itertools.product(contexts, lrs))[:n_runs]
    return [RunOptions(model=model, context=c, mode=mode, optimizer=optimizer, lr=float(lr),
                       steps=steps, device=device, dtype=dtype) for c, lr in combos]


def run_each(runs, loaded):
    return [run(options, loaded=loaded) for options in runs]


def timed(function, *args, **kwargs) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-gpt2", "tiny-neox"])
    parser.add_argument("--modes", nargs="+", default=["full", "lora"])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adamw"])
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slots", type=int, default=None, help="batch width (default: --runs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else f"CPU, {torch.get_num_threads()} threads")
    print(f"N = {args.runs} runs of T = {args.steps} steps, {args.repeats} alternating repeats, "
          f"{device_name}, torch {torch.__version__}, {args.dtype}")
    for model in args.models:
        loaded = load_model(model, dtype=args.dtype, device=args.device)
        for mode, optimizer in itertools.product(args.modes, args.optimizers):
            runs = run_set(model, mode, optimizer, args.runs, args.steps, args.device, args.dtype)
            member_steps = len(runs) * (args.steps + 1)
            run_batched(runs[:2], loaded, max_slots=2)          # warm-up
            run(runs[0], loaded=loaded)
            sequential, batched = [], []
            for _ in range(args.repeats):
                sequential.append(timed(run_each, runs, loaded))
                batched.append(timed(run_batched, runs, loaded, max_slots=args.slots or len(runs)))
            ratios = [s / b for s, b in zip(sequential, batched, strict=True)]
            print(f"{model:10s} {mode:4s} {optimizer:5s}  sequential "
                  f"{member_steps / statistics.median(sequential):7.0f} steps/s   batched "
                  f"{member_steps / statistics.median(batched):7.0f} steps/s   "
                  f"ratio {statistics.median(ratios):.2f}x "
                  f"(repeats {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
