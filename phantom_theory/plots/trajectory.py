"""The trajectory of one run."""

from __future__ import annotations

import numpy as np

from .common import COMPETITOR, CORRECT, DRAG, PHI, SIGNAL, plt


def run_title(ds) -> str:
    """One-line title of a run: model, context, mode, optimizer, lr and seed."""
    return (f"{ds.model.item()} · {ds.context.item()} · {ds.mode.item()} · "
            f"{ds.optimizer.item()} · lr {float(ds.lr):g} · seed {int(ds.seed)}")


def _mark_jumps(ax, ds):
    for i in range(ds.sizes.get("jump", 0)):
        start, end = int(ds.jump_start[i]), int(ds.jump_end[i])
        phantom = bool(ds.jump_phantom[i])
        ax.axvspan(start, end + 1, color="#9e9ac8" if phantom else "#fc9272", alpha=0.35,
                   lw=0, label="phantom jump" if phantom else "geometric jump")


def plot_trajectory(ds):
    """Loss, p_c and p_k, Phi with its signal and drag, and the readout/geometry
    attribution against step, with jumps shaded and the flip marked."""
    fig, axes = plt.subplots(4, 1, figsize=(8, 9.5), sharex=True, constrained_layout=True)
    step = ds.step.values
    flip = int(ds.flip_step)

    ax = axes[0]
    ax.plot(step, ds.loss, color=PHI)
    ax.set_ylabel("loss  −log p_c")
    if np.nanmin(ds.loss) > 0:
        ax.set_yscale("log")

    ax = axes[1]
    ax.plot(step, ds.p_correct, color=CORRECT, label=f"p_c ({ds.attrs.get('context_correct', 'c')})")
    ax.plot(step, ds.p_competitor, color=COMPETITOR,
            label=f"p_k ({ds.attrs.get('context_competitor', 'k')})")
    ax.set_ylabel("probability")

    ax = axes[2]
    ax.plot(step, ds.phi, color=PHI, lw=2, label="Φ")
    ax.plot(step, ds.signal, color=SIGNAL, label="signal σ")
    ax.plot(step, ds.drag, color=DRAG, label="drag δ")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("order parameter")

    ax = axes[3]
    ax.plot(step, ds.attribution_readout, color=SIGNAL, label="readout part")
    ax.plot(step, ds.attribution_geometry, color=DRAG, label="geometry part")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("ΔΦ per step")
    ax.set_xlabel("step")

    for ax in axes:
        _mark_jumps(ax, ds)
        if flip >= 0:
            ax.axvline(flip, color=CORRECT, ls="--", lw=1, label=f"flip (step {flip})")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    fig.suptitle(f"{run_title(ds)}\noutcome: {ds.outcome.item()}", fontsize=10)
    return fig
