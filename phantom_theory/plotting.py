"""Figures. Each function takes a Dataset and returns a matplotlib Figure; the
numbers come from phantom_theory, never from formulas held here."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import check_output_path  # noqa: E402

CORRECT, COMPETITOR = "#1b7837", "#b2182b"
PHI, SIGNAL, DRAG = "#2c2c2c", "#2166ac", "#e08214"


def run_title(ds) -> str:
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


def save_figure(fig, path, overwrite: bool = False):
    """Save atomically (temporary file, then rename); refuses to replace a file
    unless ``overwrite``."""
    import os

    path = check_output_path(path, overwrite)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


OUTCOME_STYLE = {
    "success": ("#1b7837", "o"),
    "kinematic_failure": ("#2166ac", "v"),
    "structural_failure": ("#762a83", "s"),
    "unstable": ("#e08214", "^"),
    "diverged": ("#b2182b", "x"),
}


def plot_sweep(ds):
    """Outcome against learning rate for every group of a sweep: one panel per
    (model, mode, optimizer), one row per (context, seed), eta_c and eta_max marked."""
    import itertools

    panels = [key for key in itertools.product(ds.model.values, ds.mode.values,
                                               ds.optimizer.values)
              if int(ds.n_groups.sel(model=key[0], mode=key[1], optimizer=key[2]))]
    rows_per_panel = len(ds.context) * len(ds.seed)
    columns = min(2, len(panels)) or 1
    rows = -(-len(panels) // columns) or 1
    fig, axes = plt.subplots(rows, columns, squeeze=False, constrained_layout=True,
                             figsize=(6.5 * columns, 0.9 + 0.32 * rows_per_panel * rows + rows))
    for ax, (model, mode, optimizer) in zip(axes.ravel(), panels, strict=False):
        labels = []
        for row, (context, seed) in enumerate(itertools.product(ds.context.values, ds.seed.values)):
            labels.append(f"{context}" + (f" s{seed}" if len(ds.seed) > 1 else ""))
            selected = ((ds.run_model == model) & (ds.run_mode == mode) &
                        (ds.run_optimizer == optimizer) & (ds.run_context == context) &
                        (ds.run_seed == seed)).values
            for outcome, (color, marker) in OUTCOME_STYLE.items():
                hits = selected & (ds.run_outcome.values == outcome)
                ax.scatter(ds.run_lr.values[hits], np.full(hits.sum(), row), color=color,
                           marker=marker, s=16, label=outcome.replace("_", " "))
            group = ds.sel(model=model, context=context, mode=mode, optimizer=optimizer, seed=seed)
            for name, color in (("eta_c", CORRECT), ("eta_max", COMPETITOR)):
                value = float(group[name])
                if np.isfinite(value):
                    ax.plot([value, value], [row - 0.4, row + 0.4], color=color, lw=2.5,
                            label=f"{'η_c' if name == 'eta_c' else 'η_max'}")
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_xlabel("learning rate")
        arch = ds.sel(model=model, mode=mode, optimizer=optimizer)
        eta = float(arch.eta_c_arch)
        title = f"{model} · {mode} · {optimizer}"
        if np.isfinite(eta):
            ax.axvline(eta, color=CORRECT, ls=":", lw=1)
            title += f"   η_c(arch) = {eta:.3g}"
        ax.set_title(title, fontsize=10)
    legend = {}
    for ax in axes.ravel():
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend),
               fontsize=8, frameon=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"sweep {ds.attrs.get('sweep_name', '')}: outcome against learning rate",
                 fontsize=11)
    return fig
