"""Tables drawn from each theory's generative process with known parameters, for
parameter recovery, calibration of held-out predictions, and benchmarks.

The parameters come from the theory's own ``priors`` (the records its PyMC model
reads), and the outcomes from its own ``simulate``, so a table simulated with
parameters drawn from the prior is a draw from the model's prior predictive: the
basis of simulation-based calibration.

Two designs: ``crossed`` (every context on every architecture, the study design
THEORY.md section 8 asks for) and ``nested`` (the contexts split into one block per
architecture, each context seen on one architecture only, as in the first real
study). Both draw the same numbers from the generator; the nested table is the
crossed one with the cells off each architecture's block removed.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import PhantomError
from ..schema import SCHEMA_ATTR
from .models import Theory, get_theory
from .table import SCHEMA

DESIGNS = ("crossed", "nested")
# Each target column a theory may model, and the offset it is log eta_c shifted by.
TARGET_OFFSETS = {"log_q": "log_scale", "log_c_sharp": "log_lambda0",
                  "log_q_linear": "log_scale_linear"}


def prior_draw(theory: str | Theory, n_models: int, n_contexts: int, rng) -> dict:
    """Parameters of ``theory`` drawn from its prior."""
    return get_theory(theory).prior_draw(n_models, n_contexts, rng)


def design_cells(design: str, n_models: int, n_contexts: int) -> np.ndarray:
    """(models, contexts) the cells a design measures: all of them (crossed), or
    contiguous blocks of contexts, one per architecture (nested)."""
    if design not in DESIGNS:
        raise PhantomError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    if design == "crossed":
        return np.ones((n_models, n_contexts), bool)
    if n_contexts < n_models:
        raise PhantomError(f"a nested design needs at least one context per architecture: "
                           f"{n_contexts} contexts for {n_models} architectures")
    cells = np.zeros((n_models, n_contexts), bool)
    for a, block in enumerate(np.array_split(np.arange(n_contexts), n_models)):
        cells[a, block] = True
    return cells


def simulate_table(theory: str | Theory, n_models: int = 5, n_contexts: int = 10,
                   seed: int = 0, params: dict | None = None, steps: int = 50,
                   design: str = "crossed"):
    """(table, truth): a tidy table shaped like ``theory_table``'s output, drawn from
    ``theory`` with ``params`` (drawn from the prior when None), on the cells of
    ``design`` (crossed or nested, ``design_cells``). The truth holds the
    parameters, the levels alpha, the context effects gamma, the classes (-1
    without) and each architecture's true eta_c (the geometric mean over its cells).
    A theory with classes draws the class statistic ``class_stat`` and the LoRA rows
    (``lora_cost`` or ``lora_success``); otherwise the class statistic bears on
    nothing and the LoRA rows are NaN."""
    theory = get_theory(theory)
    cells = design_cells(design, n_models, n_contexts)
    rng = np.random.default_rng(seed)
    A, J = n_models, n_contexts
    params = dict(params) if params is not None else theory.prior_draw(A, J, rng)
    # The pair-level log b, a covariate that no theory's outcomes depend on.
    log_b = rng.normal(1.0, 1.0, A)[:, None] + rng.normal(0, 0.1, (A, J))
    outcomes = theory.simulate(params, log_b, rng)
    log_scale = rng.normal(7.0, 1.0, (A, J))
    log_lambda0 = rng.normal(np.log(100.0), 1.0, (A, J))
    # The class statistic of a theory without classes bears on nothing; drawn last, so
    # that the numbers drawn before it do not move.
    class_stat = (outcomes.class_stat if outcomes.class_stat is not None
                  else rng.normal(0.3, 0.1, A))
    lora_cost = outcomes.lora_cost if outcomes.lora_cost is not None else np.full((A, J), np.nan)
    # The simulated table's predictor is the linear one: its log Q is log_q_linear too.
    offsets = {"log_scale": log_scale, "log_lambda0": log_lambda0,
               "log_scale_linear": log_scale}
    eta_c = np.exp(outcomes.y - offsets[theory.offset])
    targets = {target: np.log(eta_c) + offsets[offset]
               for target, offset in TARGET_OFFSETS.items()}
    targets[theory.target] = outcomes.y     # the simulated values themselves, not a round trip
    m0 = -np.ones((A, J))
    G0 = np.exp(log_scale) * np.abs(m0) / steps
    models = [f"arch{a:02d}" for a in range(A)]
    contexts = [f"context{j:02d}" for j in range(J)]
    dims = ("model", "context")
    table = xr.Dataset(
        {"eta_c": (dims, eta_c), "eta_max": (dims, np.full((A, J), np.nan)),
         "resolved": (dims, np.ones((A, J), bool)), "m0": (dims, m0), "G0": (dims, G0),
         "lambda0": (dims, np.exp(log_lambda0)), "log_scale": (dims, log_scale),
         "log_scale_linear": (dims, log_scale),
         **{target: (dims, value) for target, value in targets.items()},
         "log_lambda0": (dims, log_lambda0), "log_b": (dims, outcomes.log_b),
         "lora_success": (dims, outcomes.lora_success), "lora_cost": (dims, lora_cost),
         "class_stat": ("model", class_stat),
         "observed": (dims, np.ones((A, J), bool)),
         "has_quantities": (dims, np.ones((A, J), bool))},
        coords={"model": models, "context": contexts},
        attrs={SCHEMA_ATTR: SCHEMA, "table_quantity": "nu_c", "table_mode": "full",
               "table_optimizer": "sgd", "table_class_statistic": "simulated",
               "steps": float(steps), "simulated_from": theory.name,
               "simulation_seed": seed, "simulation_design": design},
    )
    if design != "crossed":
        # Cells the design does not measure: no outcome and no at-init quantity. The
        # class statistic belongs to the architecture, measured whatever the design.
        for name, value in table.data_vars.items():
            if value.dims == dims:
                table[name] = value.where(cells, False if value.dtype == bool else np.nan)
    log_eta = np.where(cells, np.log(eta_c), np.nan)
    truth = {"params": params, "classes": outcomes.classes, "alpha": outcomes.alpha,
             "gamma": outcomes.gamma, "eta_c_arch": np.exp(np.nanmean(log_eta, axis=1))}
    return table, truth
