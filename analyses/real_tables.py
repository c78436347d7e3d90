"""Tables of the real-model study for data/real/README.md, from its results.

    python analyses/real_tables.py data/real

Reads data/real/sweep/sweep.nc (and the trajectory files it kept),
data/real/quantities.nc and data/real/theory/, and prints Markdown: eta_c per
model, mode and optimizer; how the silent failures split into kinematic and
structural; the jumps and their phantom verdicts; the measured per-step costs;
the blind-test calibration table beside the 2/lambda0 anchor.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from phantom_theory.sweep import open_sweep
from phantom_theory.theory.models import THEORIES
from phantom_theory.theory.predict import hdi
from phantom_theory.theory.results import (
    open_comparison,
    open_scores,
    open_table,
    scores_from_dataset,
)
from phantom_theory.trajectory import open_run


def fmt(value, digits=3):
    return f"{value:.{digits}g}" if np.isfinite(value) else "–"


def eta_table(sweep) -> list[str]:
    with_max = bool(int(sweep.eta_max_arch_n.sum()))    # not searched: leave the column out
    lines = ["| model | mode | optimizer | η_c (geometric mean) | gsd | resolved | "
             + ("η_max (geometric mean) | " if with_max else "") + "runs |",
             "|---|---|---|---|---|---|" + ("---|" if with_max else "") + "---|"]
    for model, mode, optimizer in itertools.product(sweep.model.values, sweep.mode.values,
                                                    sweep.optimizer.values):
        row = sweep.sel(model=model, mode=mode, optimizer=optimizer)
        if not int(row.n_groups):
            continue
        runs = int(((sweep.run_model == model) & (sweep.run_mode == mode)
                    & (sweep.run_optimizer == optimizer)).sum())
        lines.append(f"| {model} | {mode} | {optimizer} | {fmt(float(row.eta_c_arch))} | "
                     f"{fmt(float(row.eta_c_arch_gsd))} | {int(row.eta_c_arch_n)}/{int(row.n_groups)} | "
                     + (f"{fmt(float(row.eta_max_arch))} ({int(row.eta_max_arch_n)}) | " if with_max else "")
                     + f"{runs} |")
    return lines


def failure_table(sweep) -> list[str]:
    lines = ["| model | mode | runs | success | kinematic failure | structural failure | unstable | diverged | structural share of silent failures |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, mode in itertools.product(sweep.model.values, sweep.mode.values):
        rows = ((sweep.run_model == model) & (sweep.run_mode == mode)).values
        if not rows.any():
            continue
        outcomes = sweep.run_outcome.values[rows]
        counts = {o: int((outcomes == o).sum()) for o in
                  ("success", "kinematic_failure", "structural_failure", "unstable", "diverged")}
        silent = counts["kinematic_failure"] + counts["structural_failure"]
        share = f"{100 * counts['structural_failure'] / silent:.0f}%" if silent else "–"
        lines.append(f"| {model} | {mode} | {rows.sum()} | " + " | ".join(
            str(v) for v in counts.values()) + f" | {share} |")
    return lines


def jump_table(sweep, root: Path) -> list[str]:
    lines = ["| model | mode | runs with jumps | jumps | phantoms (readout share ≥ 0.95) | median readout share |",
             "|---|---|---|---|---|---|"]
    for model, mode in itertools.product(sweep.model.values, sweep.mode.values):
        rows = ((sweep.run_model == model) & (sweep.run_mode == mode)).values
        if not rows.any():
            continue
        n_jumps = sweep.run_n_jumps.values[rows]
        phantoms = sweep.run_n_phantom_jumps.values[rows]
        shares = []
        for file in sweep.run_file.values[rows][n_jumps > 0]:
            path = root / file
            if path.is_file():
                shares += list(open_run(path).jump_readout_share.values)
        median = f"{np.median(shares):.3f} ({len(shares)} kept)" if shares else "–"
        lines.append(f"| {model} | {mode} | {(n_jumps > 0).sum()} | {n_jumps.sum()} | "
                     f"{phantoms.sum()} | {median} |")
    return lines


def cost_table(sweep, root: Path) -> list[str]:
    lines = ["| model | mode | optimizer | seconds per step (median over kept runs) | engine | device | threads |",
             "|---|---|---|---|---|---|---|"]
    for model, mode, optimizer in itertools.product(sweep.model.values, sweep.mode.values,
                                                    sweep.optimizer.values):
        rows = ((sweep.run_model == model) & (sweep.run_mode == mode)
                & (sweep.run_optimizer == optimizer)).values
        seconds, attrs = [], {}
        for file in sweep.run_file.values[rows]:
            path = root / file
            if path.is_file():
                ds = open_run(path)
                seconds.append(float(ds.attrs["seconds_per_step"]))
                attrs = ds.attrs
        if seconds:
            lines.append(f"| {model} | {mode} | {optimizer} | {np.median(seconds):.3f} | "
                         f"{attrs.get('engine')} (slots {attrs.get('batch_slots', 1)}) | "
                         f"{attrs.get('device')} | {attrs.get('torch_threads')} |")
    return lines


def main(root: str) -> None:
    root = Path(root)
    sweep = open_sweep(root / "sweep")
    out = ["### Critical learning rates", "", *eta_table(sweep), "",
           "### Outcomes of every evaluated run", "", *failure_table(sweep), "",
           "### Jumps in Φ and the phantom test", "", *jump_table(sweep, root / "sweep"), "",
           "### Measured cost per step", "", *cost_table(sweep, root / "sweep")]
    if (root / "quantities.nc").exists():
        out += ["", "### Reduced learning rate at η_c", "", *nu_lines(sweep, root / "quantities.nc")]
    theory = root / "theory"
    if (theory / "scores.nc").exists():
        scores = scores_from_dataset(open_scores(theory / "scores.nc"))
        comparison = open_comparison(theory / "comparison.nc")
        table = open_table(theory / "table.nc")
        out += ["", "### Blind test: each architecture held out in turn", "",
                f"Table: {table.attrs.get('table_mode')} fine-tuning, "
                f"{table.attrs.get('table_optimizer')}, Q = {table.attrs.get('table_quantity')}.", "",
                "| theory | held out | measured η_c | predicted (median) | 94% HDI | relative error | HDI covers | 2/λ0 | its relative error |",
                "|---|---|---|---|---|---|---|---|---|"]
        for s in scores:
            out.append(f"| {s['theory']} | {s['held_out']} | {fmt(s['measured'])} | {fmt(s['median'])} | "
                       f"[{fmt(s['hdi_low'])}, {fmt(s['hdi_high'])}] | {100 * s['relative_error']:.1f}% | "
                       f"{'yes' if s['covered'] else 'no'} | {fmt(s['anchor'])} | "
                       f"{100 * s['anchor_relative_error']:.0f}% |")
        out += ["", "| theory | elpd LOAO | se | stacking weight (LOAO) | all fits passed the gate |",
                "|---|---|---|---|---|"]
        for t in comparison.theory.values:
            row = comparison.sel(theory=t)
            out.append(f"| {t} | {float(row.elpd_loao):.2f} | {float(row.elpd_loao_se):.2f} | "
                       f"{float(row.stacking_loao):.2f} | {'yes' if bool(row.fits_passed) else 'no'} |")
        out += ["", *power_lines(theory, scores)]
    print("\n".join(out))


def nu_lines(sweep, quantities_path: Path) -> list[str]:
    """ν_c = η_c T G0 / |m0| and η_c λ0 / 2 per resolved group, from the quantities at
    initialisation (the linear theory predicts ν_c = 1; the sharpness anchor, 1)."""
    import xarray as xr

    from phantom_theory.quantities import reduced_lr, sharpness_number

    q = xr.open_dataset(quantities_path)
    steps = float(sweep.attrs["run_steps"])
    lines = ["| model | context | mode | optimizer | η_c | ν_c = η_c T G0 / \\|m0\\| | η_c λ0 / 2 |",
             "|---|---|---|---|---|---|---|"]
    for model, context, mode, optimizer in itertools.product(
            sweep.model.values, sweep.context.values, sweep.mode.values, sweep.optimizer.values):
        eta = float(np.exp(np.log(sweep.eta_c.sel(model=model, context=context, mode=mode,
                                                  optimizer=optimizer)).mean("seed")))
        if not np.isfinite(eta) or context not in q.context.values:
            continue
        row = q.sel(model=model, context=context, mode=mode, optimizer=optimizer)
        nu = float(reduced_lr(eta, steps, row.G0, row.m0))
        lines.append(f"| {model} | {context} | {mode} | {optimizer} | {eta:.3g} | {nu:.2f} | "
                     f"{float(sharpness_number(eta, row.lambda0)) / 2:.3g} |")
    return lines


def power_lines(theory: Path, scores: list[dict]) -> list[str]:
    """What the fits can say with this few architectures: the posterior of the
    between-architecture scale against its HalfNormal(1) prior, and how wide the
    blind predictions are."""
    import xarray as xr

    lines = ["### How much three architectures can say", "",
             "| theory | parameter | prior median, 94% interval | posterior median | posterior 94% HDI | divergences, max r_hat |",
             "|---|---|---|---|---|---|"]
    prior = (0.674, 0.0, 1.88)    # HalfNormal(1): median, and the 94% highest-density interval
    for path in sorted((theory / "fits").glob("*.nc")):
        if not THEORIES[path.stem].sampled:    # its conjugate prior is not HalfNormal(1)
            continue
        posterior = xr.load_dataset(path, group="posterior", engine="netcdf4")
        diagnostics = (f"{int(posterior.attrs['diagnostics_divergences'])}, "
                       f"{float(posterior.attrs['diagnostics_max_rhat']):.3f}")
        for name in ("tau", "tau_gamma", "sigma"):
            if name not in posterior:
                continue
            draws = posterior[name].values.ravel()
            low, high = hdi(draws)
            lines.append(f"| {path.stem} | {name} | {prior[0]:.2f}, [{prior[1]:.2f}, {prior[2]:.2f}] | "
                         f"{np.median(draws):.3g} | [{low:.3g}, {high:.3g}] | {diagnostics} |")
    lines += ["", "| theory | held out | 94% HDI spans a factor of |", "|---|---|---|"]
    for s in scores:
        lines.append(f"| {s['theory']} | {s['held_out']} | {s['hdi_high'] / s['hdi_low']:.3g} |")
    return lines


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/real")
