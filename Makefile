# Set-up is part of every target: each creates (or reuses) .venv and installs
# what it needs, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch (served locally here); a GPU user keeps their own torch.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job on the built-in tiny models: one run, then the demo sweep (resumed
# if it was interrupted) with its eta_c table and plot. A few minutes on 2 cores.
demo: $(STAMP)
	mkdir -p runs
	$(BIN)/phantom run --model tiny-gpt2 --context shame-guilt --mode lora --optimizer adamw \
		--lr 1e-3 --steps 200 --seed 0 --out runs/demo.nc --overwrite
	$(BIN)/phantom plot runs/demo.nc -o runs/demo.png --overwrite
	$(BIN)/phantom sweep data/sweeps/demo.toml --out runs/demo-sweep --overwrite
	$(BIN)/phantom plot-sweep runs/demo-sweep -o runs/demo-sweep.png --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

# Tests marked slow; pytest's "no tests collected" (exit 5) is not a failure.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/sweep_throughput.py

clean:
	rm -rf $(VENV) runs
