"""Shared fixtures: small runs of both tiny models, computed once per session."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# pytensor and numba write compiled code under $HOME and the temp folder by default;
# keep the tests' caches inside the checkout (ignored by git).
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache")
os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={_CACHE}/pytensor")
os.environ.setdefault("NUMBA_CACHE_DIR", f"{_CACHE}/numba")
warnings.filterwarnings("ignore", category=FutureWarning)

RUN_STEPS = 60


@pytest.fixture(scope="session")
def run_of():
    """run_of(model, mode, optimizer="adamw", lr=..., steps=RUN_STEPS, **options),
    cached so that tests checking different facts of one run share it."""
    from runner.train import RunOptions, run

    cache = {}

    def get(model, mode, optimizer="adamw", lr=None, steps=RUN_STEPS, **options):
        if lr is None:
            lr = 3e-3 if optimizer == "adamw" else 0.3
        key = (model, mode, optimizer, lr, steps, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = run(RunOptions(model=model, mode=mode, optimizer=optimizer, lr=lr,
                                        steps=steps, **options))
        return cache[key]

    return get
