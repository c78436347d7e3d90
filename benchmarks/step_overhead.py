"""Cost of the instrumentation: the same run with and without it, in one process.

    python benchmarks/step_overhead.py [--model tiny-gpt2] [--steps 300] [--repeats 5]

Two copies of one run advance in lock step: step t of the plain run, then step t
of the instrumented run (the instrument, plus under LoRA the per-step weight
hashes), and so on. Each pair of steps does the same training work at the same
moment, so whatever else loads the machine hits both alike. It prints the median
step time of each and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from runner.audit import WeightHashes
from runner.instrument import Instrument
from runner.train import RunOptions, make_optimizer, prepare, train_step

from runner.models import load_model

warnings.filterwarnings("ignore")


class Stepper:
    """One run, advanced a step at a time, timing each step."""

    def __init__(self, options: RunOptions, loaded, instrumented: bool):
        _, self.model, context, _ = prepare(options, loaded)
        self.optimizer = make_optimizer(
            [p for p in self.model.parameters() if p.requires_grad], options)
        frozen = options.mode == "lora"
        self.instrument = (Instrument(self.model, context.correct_id, context.competitor_id,
                                      options.steps, options.geometry, frozen)
                           if instrumented else None)
        self.hashes = WeightHashes(self.model, options.steps) if instrumented and frozen else None
        self.input_ids = torch.tensor([context.input_ids])
        self.target = torch.tensor([context.correct_id])
        self.seconds = []

    def step(self, t: int) -> None:
        """Take training step t, recording the weight hashes first when instrumented under
        LoRA, and append its wall time in seconds to ``seconds``."""
        started = time.perf_counter()
        if self.hashes is not None:
            self.hashes.record(t)
        train_step(self.model, self.input_ids, self.target, self.optimizer, self.instrument, t)
        self.seconds.append(time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    loaded = load_model(args.model)
    print(f"model {args.model}, T = {args.steps}, {args.repeats} repeats, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for mode in ("full", "lora"):
        options = RunOptions(model=args.model, mode=mode, optimizer="adamw", lr=1e-3,
                             steps=args.steps)
        plain, instrumented = [], []
        for repeat in range(args.repeats + 1):
            pair = Stepper(options, loaded, False), Stepper(options, loaded, True)
            for t in range(args.steps):
                for stepper in pair:
                    stepper.step(t)
            if repeat:   # the first repeat warms up
                plain += pair[0].seconds
                instrumented += pair[1].seconds
        p, i = statistics.median(plain), statistics.median(instrumented)
        print(f"{mode:4s} adamw: plain {p * 1e3:.3f} ms/step, instrumented {i * 1e3:.3f} ms/step, "
              f"ratio instrumented/plain = {i / p:.3f}")


if __name__ == "__main__":
    main()
