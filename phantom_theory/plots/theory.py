"""Figures of the theory models: architecture levels, class membership, and blind
predictions against the measurements."""

from __future__ import annotations

import numpy as np

from ..theory.models import THEORIES
from .common import COMPETITOR, CORRECT, PHI, SIGNAL, plt


def theory_color(name: str) -> str:
    """The colour a theory declares (PHI for one the registry does not know)."""
    theory = THEORIES.get(name)
    return theory.color if theory is not None and theory.color else PHI


def plot_levels(levels):
    """Forest plot: each architecture's level alpha_a (median, 94% HDI), with the
    population mean mu."""
    models = list(levels.model.values)
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.45 * len(models)), constrained_layout=True)
    y = np.arange(len(models))[::-1]
    fitted = levels.fitted.values
    ax.hlines(y, levels.alpha_hdi_low, levels.alpha_hdi_high, color=SIGNAL, lw=2)
    ax.scatter(levels.alpha_median[fitted], y[fitted], color=SIGNAL, zorder=3, label="fitted")
    ax.scatter(levels.alpha_median[~fitted], y[~fitted], facecolor="white", edgecolor=SIGNAL,
               zorder=3, label="no outcome rows (population draw)")
    ax.axvspan(float(levels.mu_hdi_low), float(levels.mu_hdi_high), color="grey", alpha=0.15,
               label="population mean μ (94% HDI)")
    ax.axvline(float(levels.mu_median), color="grey", lw=1)
    ax.set_yticks(y, models)
    ax.set_xlabel("architecture level α  (log Q)")
    ax.set_title(f"{levels.attrs.get('theory', '')}: architecture effects, median and 94% HDI",
                 fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_classes(membership):
    """P(class_1) per architecture, and the LoRA sufficiency per class: the mean LoRA
    cost, or P(LoRA success) in the binary form."""
    models = list(membership.model.values)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.9 + 0.45 * max(len(models), 3)),
                                      constrained_layout=True,
                                      gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(models))[::-1]
    left.barh(y, membership.p_class_1, color="#762a83")
    left.set_yticks(y, [f"{m}  (s {s:.3g})" for m, s in
                        zip(models, membership.class_stat.values, strict=True)])
    left.set_xlim(0, 1)
    left.set_xlabel("P(class 1 | data)   (class 1: the higher mean class statistic s)")
    left.set_title("class membership", fontsize=10)
    classes = list(membership["class"].values)
    x = np.arange(len(classes))
    cost = "lora_cost_mean_median" in membership
    name = "lora_cost_mean" if cost else "lora_success"
    median = membership[f"{name}_median"].values
    right.errorbar(x, median, yerr=[median - membership[f"{name}_hdi_low"].values,
                                    membership[f"{name}_hdi_high"].values - median],
                   fmt="o", color=CORRECT, capsize=4)
    right.set_xticks(x, classes)
    if cost:
        right.set_ylabel("mean LoRA cost, log(η_c LoRA / full)")
    else:
        right.set_ylim(0, 1)
        right.set_ylabel("P(LoRA success)")
    right.set_title("LoRA sufficiency by class (median, 94% HDI)", fontsize=10)
    return fig


def plot_calibration(scores):
    """Each held-out architecture's predicted eta_c (median and 94% HDI) against the
    measured one, per theory, with the catapult anchor 2 / lambda0."""
    fig, ax = plt.subplots(figsize=(6.5, 6), constrained_layout=True)
    theories = list(dict.fromkeys(scores["theory"].values))
    offsets = np.linspace(-0.04, 0.04, len(theories))
    for theory, offset in zip(theories, offsets, strict=True):
        rows = scores["theory"].values == theory
        measured = scores["measured"].values[rows] * 10 ** offset
        median = scores["median"].values[rows]
        ax.errorbar(measured, median, yerr=[median - scores["hdi_low"].values[rows],
                                            scores["hdi_high"].values[rows] - median],
                    fmt="o", capsize=3, color=theory_color(theory), label=theory)
    first = scores["theory"].values == theories[0]
    ax.scatter(scores["measured"].values[first], scores["anchor"].values[first], marker="x",
               color=COMPETITOR, label="2 / λ0 (catapult anchor)", zorder=3)
    values = np.concatenate([scores["measured"].values, scores["hdi_low"].values,
                             scores["hdi_high"].values, scores["anchor"].values])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = values.min() / 2, values.max() * 2
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="predicted = measured")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="measured η_c (architecture, geometric mean)", ylabel="predicted η_c")
    for theory in theories[:1]:
        rows = scores["theory"].values == theory
        for m, x, y in zip(scores["held_out"].values[rows], scores["measured"].values[rows],
                           scores["median"].values[rows], strict=True):
            ax.annotate(str(m), (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set_title("blind predictions, each architecture held out in turn", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig
