"""Tables drawn from each theory's generative process with known parameters, for
parameter recovery, calibration of held-out predictions, and benchmarks.

The priors here are the models' own (theories.py), so a table simulated with
parameters drawn from the prior is a draw from the prior predictive: the basis of
simulation-based calibration.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .table import SCHEMA


def prior_draw(theory: str, n_models: int, n_contexts: int, rng) -> dict:
    """Parameters of ``theory`` drawn from its prior."""
    params = {"mu": rng.normal(0, 5), "tau_gamma": abs(rng.normal(0, 1)),
              "z_gamma": rng.normal(0, 1, n_contexts), "sigma": abs(rng.normal(0, 1))}
    if theory in ("hier", "class"):
        params.update(tau=abs(rng.normal(0, 1)), z_alpha=rng.normal(0, 1, n_models))
    if theory == "class":
        params.update(delta=rng.normal(0, 2), weight=rng.beta(2, 2),
                      b_mean=np.sort(rng.normal(0, 3, 2)), b_sigma=abs(rng.normal(0, 1)),
                      lora_logit=rng.normal(0, 2, 2))
    return params


def simulate_table(theory: str = "hier", n_models: int = 5, n_contexts: int = 10,
                   seed: int = 0, params: dict | None = None, steps: int = 50):
    """(table, truth): a tidy table shaped like ``theory_table``'s output, drawn from
    ``theory`` with ``params`` (drawn from the prior when None). The truth holds
    the parameters, the classes (M_class) and each architecture's true eta_c."""
    rng = np.random.default_rng(seed)
    params = dict(params) if params is not None else prior_draw(theory, n_models, n_contexts, rng)
    A, J = n_models, n_contexts
    z_gamma = np.asarray(params["z_gamma"])
    gamma = params["tau_gamma"] * (z_gamma - z_gamma.mean())   # zero-sum, as in the models
    alpha = np.zeros(A)
    classes = np.full(A, -1)
    log_b = rng.normal(1.0, 1.0, A)[:, None] + rng.normal(0, 0.1, (A, J))
    lora = np.full((A, J), np.nan)
    if theory in ("hier", "class"):
        alpha = params["tau"] * np.asarray(params["z_alpha"])
    if theory == "class":
        classes = (rng.random(A) < params["weight"]).astype(int)
        alpha = alpha + params["delta"] * classes
        log_b = np.asarray(params["b_mean"])[classes][:, None] + params["b_sigma"] * rng.normal(0, 1, (A, J))
        success = 1 / (1 + np.exp(-np.asarray(params["lora_logit"])[classes]))
        lora = (rng.random((A, J)) < success[:, None]).astype(float)
    log_q = params["mu"] + alpha[:, None] + gamma[None, :] + params["sigma"] * rng.normal(0, 1, (A, J))
    log_scale = rng.normal(7.0, 1.0, (A, J))
    log_lambda0 = rng.normal(np.log(100.0), 1.0, (A, J))
    eta_c = np.exp(log_q - log_scale)
    m0 = -np.ones((A, J))
    G0 = np.exp(log_scale) * np.abs(m0) / steps
    models = [f"arch{a:02d}" for a in range(A)]
    contexts = [f"context{j:02d}" for j in range(J)]
    dims = ("model", "context")
    table = xr.Dataset(
        {"eta_c": (dims, eta_c), "eta_max": (dims, np.full((A, J), np.nan)),
         "resolved": (dims, np.ones((A, J), bool)), "m0": (dims, m0), "G0": (dims, G0),
         "lambda0": (dims, np.exp(log_lambda0)), "log_scale": (dims, log_scale),
         "log_q": (dims, log_q), "log_c_sharp": (dims, np.log(eta_c) + log_lambda0),
         "log_lambda0": (dims, log_lambda0), "log_b": (dims, log_b),
         "lora_success": (dims, lora), "observed": (dims, np.ones((A, J), bool)),
         "has_quantities": (dims, np.ones((A, J), bool))},
        coords={"model": models, "context": contexts},
        attrs={"phantom_schema": SCHEMA, "table_quantity": "nu_c", "table_mode": "full",
               "table_optimizer": "sgd", "steps": float(steps), "simulated_from": theory,
               "simulation_seed": seed},
    )
    truth = {"params": params, "classes": classes, "alpha": alpha, "gamma": gamma,
             "eta_c_arch": np.exp(np.log(eta_c).mean(axis=1))}
    return table, truth
