"""Posterior summaries a person reads: architecture effects, class membership and
LoRA sufficiency per class. Numbers only; the figures are in phantom_theory.plots."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .fit import Fit
from .models import get_theory
from .predict import hdi


def _interval(draws: np.ndarray) -> tuple[float, float, float]:
    low, high = hdi(draws)
    return float(np.median(draws)), low, high


def architecture_levels(fit: Fit, table: xr.Dataset) -> xr.Dataset:
    """Median and 94% HDI of each architecture's level alpha_a (log Q units) and of
    the population (mu, tau), for a theory with architecture levels."""
    post = fit.flat()
    theory = get_theory(fit.theory)
    if not theory.has_levels:
        raise ValueError(f"{fit.theory} has no architecture levels")
    alpha = theory.effects(post, fit.data, np.random.default_rng(0))[0]
    rows = np.array([_interval(alpha[:, a]) for a in range(alpha.shape[1])])
    return xr.Dataset(
        {"alpha_median": ("model", rows[:, 0]), "alpha_hdi_low": ("model", rows[:, 1]),
         "alpha_hdi_high": ("model", rows[:, 2]),
         "fitted": ("model", fit.data.fitted.astype(bool)),
         **{f"{name}_{stat}": value for name in ("mu", "tau")
            for stat, value in zip(("median", "hdi_low", "hdi_high"), _interval(post[name]),
                                   strict=True)}},
        coords={"model": [str(m) for m in table.model.values]},
        attrs={"theory": fit.theory, "units": "log Q"})


def class_membership(fit: Fit, table: xr.Dataset) -> xr.Dataset:
    """Posterior P(class_1) per architecture (class_1: the higher mean class statistic)
    beside its class statistic, and per class the mean class statistic and the LoRA
    sufficiency (``lora_by_class``: the mean LoRA cost, or P(LoRA success) in the
    binary form), with 94% HDIs."""
    theory = get_theory(fit.theory)
    if not theory.has_classes:
        raise ValueError(f"{fit.theory} has no classes; class membership needs a theory with them")
    post = fit.flat()
    probability = theory.class_probability(post, fit.data)
    n_classes = len(theory.coords["class"])
    statistic = (table.class_stat.values if "class_stat" in table
                 else np.full(len(table.model), np.nan))
    variables = {"p_class_1": ("model", probability.mean(axis=0)),
                 "class_stat": ("model", statistic)}
    for name, draws in {"s_mean": post["s_mean"], **theory.lora_by_class(post)}.items():
        rows = np.array([_interval(draws[:, k]) for k in range(n_classes)])
        for column, stat in enumerate(("median", "hdi_low", "hdi_high")):
            variables[f"{name}_{stat}"] = ("class", rows[:, column])
    return xr.Dataset(variables, coords={"model": [str(m) for m in table.model.values],
                                         "class": list(theory.coords["class"])},
                      attrs={"theory": fit.theory, "lora_form": theory.lora_form,
                             "lora_budget": theory.lora_budget})


def summary_text(fit: Fit, table: xr.Dataset) -> str:
    """A few lines on a fit: the gate, the population, each architecture."""
    lines = [fit.describe(), "verdict: " + ("passed the diagnostics gate" if fit.passed
                                          else "FAILED the diagnostics gate")]
    post = fit.flat()
    theory = get_theory(fit.theory)
    for name in ("mu", "tau", "tau_gamma", "sigma", "delta", "log_c"):
        if name in post:
            median, low, high = _interval(post[name])
            lines.append(f"  {name:9s} {median:9.4g}   94% HDI [{low:.4g}, {high:.4g}]")
    if theory.has_levels:
        levels = architecture_levels(fit, table)
        for m in levels.model.values:
            row = levels.sel(model=m)
            lines.append(f"  alpha[{m}] {float(row.alpha_median):9.4g}   94% HDI "
                         f"[{float(row.alpha_hdi_low):.4g}, {float(row.alpha_hdi_high):.4g}]"
                         + ("" if bool(row.fitted) else "   (no outcome rows: population draw)"))
    if theory.has_classes:
        classes = class_membership(fit, table)
        for m in classes.model.values:
            lines.append(f"  P(class_1 | {m}) = {float(classes.p_class_1.sel(model=m)):.3f}")
        name, label = (("lora_cost_mean", "LoRA cost") if "lora_cost_mean_median" in classes
                       else ("lora_success", "P(LoRA success)"))
        for k in classes["class"].values:
            row = classes.sel({"class": k})
            lines.append(f"  {label} | {k} {float(row[f'{name}_median']):.3f}   94% HDI "
                         f"[{float(row[f'{name}_hdi_low']):.3f}, "
                         f"{float(row[f'{name}_hdi_high']):.3f}]")
    return "\n".join(lines)
