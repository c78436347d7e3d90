"""A sweep: outcome against learning rate for every group."""

from __future__ import annotations

import itertools

import numpy as np

from .common import COMPETITOR, CORRECT, plt

OUTCOME_STYLE = {
    "success": ("#1b7837", "o"),
    "transient": ("#7fbf7b", "D"),
    "kinematic_failure": ("#2166ac", "v"),
    "structural_failure": ("#762a83", "s"),
    "unstable": ("#e08214", "^"),
    "diverged": ("#b2182b", "x"),
}


def plot_sweep(ds):
    """Outcome against learning rate for every group of a sweep: one panel per
    (model, mode, optimizer), one row per (context, seed), eta_c and eta_max marked."""
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
