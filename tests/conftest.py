"""Shared fixtures and helpers.

Fixtures: ``run_of`` (small runs of both tiny models, cached per session),
``saved_run`` (a trajectory written by ``phantom run``), ``cli_sweep`` (a tiny sweep
written by ``phantom sweep``) and ``small_sweep`` (a resolved eta_c sweep of
tiny-neox on two contexts).

Helpers, imported with ``from tests.conftest import ...``: ``fails`` (a command
line that must fail with one clear line), ``write_spec``, ``assert_same_table``
and the spec texts ``SMALL`` and ``TINY_SWEEP``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parent.parent
# pytensor and numba write compiled code under $HOME and the temp folder by default;
# keep the tests' caches inside the checkout (ignored by git).
_CACHE = ROOT / ".cache"
os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={_CACHE}/pytensor")
os.environ.setdefault("NUMBA_CACHE_DIR", f"{_CACHE}/numba")

RUN_STEPS = 60


@pytest.fixture(scope="session")
def run_of():
    """run_of(model, mode, optimizer="adamw", lr=..., steps=RUN_STEPS, **options),
    cached so that tests checking different facts of one run share it."""
    from runner.training import RunOptions, run

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


# -- the command line ---------------------------------------------------------------

RUN = ["run", "--model", "tiny-gpt2", "--context", "start-begin", "--mode", "lora",
       "--lr", "1e-2", "--steps", "8", "--quiet"]


def fails(capsys, argv, *fragments, main=None):
    """Run ``phantom ARGV`` (``main``, default ``runner.cli.main``, the whole
    ``phantom``) and check that it fails as every bad input must: exit status 2,
    one line on stderr starting ``phantom: error: ``, no traceback, and every
    fragment in that line. Returns the line."""
    if main is None:
        from runner.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("phantom: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory):
    """A short tiny-gpt2 LoRA trajectory written by ``phantom run``."""
    from runner.cli import main

    path = tmp_path_factory.mktemp("cli") / "x.nc"
    assert main([*RUN, "--out", str(path)]) == 0
    return path


TINY_SWEEP = """
models = ["tiny-gpt2"]
contexts = ["start-begin"]
modes = ["lora"]
optimizers = ["adamw"]
steps = 5
[lr]
lo = 1e-4
hi = 1.0
tolerance = 0.5
grid_points = 3
"""


@pytest.fixture(scope="session")
def cli_sweep(tmp_path_factory):
    """A folder with tiny.toml (TINY_SWEEP) and out/, the sweep ``phantom sweep`` wrote."""
    from runner.cli import main

    root = tmp_path_factory.mktemp("cli-sweep")
    (root / "tiny.toml").write_text(TINY_SWEEP)
    assert main(["sweep", str(root / "tiny.toml"), "--out", str(root / "out"), "--quiet"]) == 0
    return root


# -- sweeps -------------------------------------------------------------------------

SMALL = """
name = "small"
models = ["tiny-neox"]
contexts = ["shame-guilt", "start-begin"]
modes = ["lora"]
optimizers = ["sgd"]
seeds = [0]
steps = 20
[lr]
lo = 1e-6
hi = 10.0
tolerance = 0.05
grid_points = 6
[run]
dtype = "float64"
"""


def write_spec(tmp_path, text=SMALL, name="small.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """(spec, out folder, sweep Dataset) of the SMALL spec, run once per session."""
    from runner.sweep import load_spec, run_sweep

    root = tmp_path_factory.mktemp("sweep")
    spec = load_spec(write_spec(root))
    ds = run_sweep(spec, root / "out")
    return spec, root / "out", ds


TABLE = ("eta_c", "eta_c_lo", "eta_c_hi", "eta_c_status", "eta_max", "eta_max_status",
         "n_runs", "non_monotone")


def assert_same_table(a, b):
    """The two sweeps' eta_c tables are equal (NaN equal to NaN)."""
    for name in TABLE:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
