"""Tables of a real-model study for its README, from its committed results.

    python analyses/real_tables.py data/real            # print the Markdown
    python analyses/real_tables.py data/real --write    # replace README.md's "## Tables"

Reads FOLDER/sweep/sweep.nc (and the trajectory files it kept), FOLDER/quantities.nc,
FOLDER/theory/, FOLDER/blind/ and FOLDER/time-t*/ where they exist, and gives: eta_c
and eta_max per architecture and per group (bracket, tolerance, runs, flags); the
outcome classes per band of lr / eta_c (kinematic, structural geometric / readout,
unstable, transient); jumps by kind and band with their phantom share; the frozen
embeddings under LoRA; the measured cost per step; every at-init predictor's Q per
group and the spread of log Q; the class statistics and the LoRA cost; every theory
beside linear0 and the baselines; eta_c * T against T. Every number in the tables of
the README comes from here.
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


def group_table(sweep) -> list[str]:
    """eta_c and eta_max of every group: the bracket, its relative width against the
    tolerance, the runs the search used and its flags."""
    tol = float(sweep.attrs.get("search_tolerance", np.nan))
    max_tol = sweep.attrs.get("search_max_tolerance", "")
    lines = [f"Tolerance: η_c to {fmt(100 * tol)}% (relative bracket width), η_max to "
             f"{fmt(100 * float(max_tol)) if max_tol not in ('', None, 'None') else fmt(100 * tol)}%. "
             "Flags: non-monotone (a run below the stability edge failed to flip above a "
             "flip), and the count of unstable or diverged runs.", "",
             "| model | context | mode | optimizer | seed | η_c | bracket | width | η_max | its bracket | runs | flags |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in itertools.product(*(sweep[d].values for d in ("model", "context", "mode",
                                                             "optimizer", "seed"))):
        row = sweep.sel(dict(zip(("model", "context", "mode", "optimizer", "seed"), key,
                                 strict=True)))
        status = str(row.eta_c_status.values)
        if not status:
            continue
        lo, hi = float(row.eta_c_lo), float(row.eta_c_hi)
        eta = fmt(float(row.eta_c)) if status == "resolved" else status
        mstatus = str(row.eta_max_status.values)
        eta_max = fmt(float(row.eta_max)) if mstatus == "resolved" else (mstatus or "–")
        flags = [f for f, on in (("non-monotone", bool(row.non_monotone)),
                                 (f"{int(row.n_unstable)} unstable", int(row.n_unstable) > 0),
                                 (f"{int(row.n_diverged)} diverged", int(row.n_diverged) > 0))
                 if on]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {eta} | "
                     f"[{fmt(lo)}, {fmt(hi)}] | {fmt(100 * (hi / lo - 1), 2)}% | {eta_max} | "
                     f"[{fmt(float(row.eta_max_lo))}, {fmt(float(row.eta_max_hi))}] | "
                     f"{int(row.n_runs)} | {', '.join(flags) or '–'} |")
    return lines


def band_table(sweep) -> list[str]:
    """Outcome classes per architecture (model, mode, optimizer) and band of
    lr / eta_c, summed over its groups: the runs the searches evaluated, which
    cluster around each edge, so a share is of those runs, not a population rate."""
    from phantom_theory.sweep import OUTCOME_CLASSES, outcome_counts

    counts = outcome_counts(sweep).sum(("context", "seed"))
    shown = [c for c in OUTCOME_CLASSES
             if c != "structural_unknown" or int(counts.sel(outcome_class=c).sum())]
    names = {"kinematic_failure": "kinematic", "structural_geometric": "structural (geometric)",
             "structural_readout": "structural (readout)", "structural_unknown": "structural (unlabelled)"}
    lines = ["| model | mode | optimizer | lr / η_c | runs | " + " | ".join(names.get(c, c) for c in shown) + " |",
             "|---|---|---|---|---|" + "---|" * len(shown)]
    for model, mode, optimizer in itertools.product(counts.model.values, counts.mode.values,
                                                    counts.optimizer.values):
        arch = counts.sel(model=model, mode=mode, optimizer=optimizer)
        for band in arch.band.values:
            values = arch.sel(band=band)
            if not int(values.sum()):
                continue
            lines.append(f"| {model} | {mode} | {optimizer} | {band} | {int(values.sum())} | "
                         + " | ".join(str(int(values.sel(outcome_class=c))) for c in shown) + " |")
    return lines


def jump_band_table(sweep) -> list[str]:
    """Jumps by kind and band of lr / eta_c per architecture, as phantoms / jumps."""
    from phantom_theory.jumps import JUMP_KINDS
    from phantom_theory.sweep import jump_counts

    jumps = jump_counts(sweep)
    lines = ["| model | mode | optimizer | lr / η_c | runs | " + " | ".join(
        f"{k}: phantoms / jumps" for k in JUMP_KINDS) + " |",
             "|---|---|---|---|---|" + "---|" * len(JUMP_KINDS)]
    for model, mode, optimizer in itertools.product(jumps.model.values, jumps.mode.values,
                                                    jumps.optimizer.values):
        arch = jumps.sel(model=model, mode=mode, optimizer=optimizer)
        for band in arch.band.values:
            runs = int(arch.runs.sel(band=band))
            if not runs:
                continue
            cells = []
            for kind in JUMP_KINDS:
                n = int(arch.jumps.sel(band=band, kind=kind))
                k = int(arch.phantoms.sel(band=band, kind=kind))
                cells.append(f"{k} / {n} ({100 * k / n:.0f}%)" if n else "–")
            lines.append(f"| {model} | {mode} | {optimizer} | {band} | {runs} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        return ["No run of this sweep table recorded its jumps by kind (it predates the "
                "kinds); the counts below are over all kinds."]
    return lines


def frozen_lines(sweep) -> list[str]:
    """Whether every LoRA run left the input embedding and the readout byte-identical
    (the thin record counts the logged states whose digest is not the start's)."""
    if "run_embedding_changes" not in sweep:
        return ["The sweep table predates the frozen-matrix counts; see the kept run files."]
    lora = (sweep.run_mode == "lora").values
    changes = sweep.run_embedding_changes.values[lora].astype(float)
    readout = sweep.run_readout_changes.values[lora].astype(float)
    known = np.isfinite(changes)
    full = (sweep.run_mode == "full").values
    moved = np.nansum(sweep.run_embedding_changes.values[full].astype(float) > 0)
    return [f"LoRA runs with their input embedding byte-identical at every logged state: "
            f"{int((changes[known] == 0).sum())} of {int(known.sum())} (readout: "
            f"{int((readout[np.isfinite(readout)] == 0).sum())} of {int(np.isfinite(readout).sum())}); "
            f"{int(lora.sum() - known.sum())} runs recorded no digests. Full fine-tuning, for "
            f"contrast: the embedding changed in {int(moved)} of {int(full.sum())} runs."]


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
    """The measured wall seconds per step, per model, mode, optimizer and device: from
    the thin record where it carries them (every run), else from the kept run files.
    Each run's torch thread count is in its file (one thread per process in the v2
    study); a shared machine makes these upper bounds."""
    from phantom_theory.sweep import run_values

    lines = ["| model | mode | optimizer | device | engine | seconds per step: median (range) | runs |",
             "|---|---|---|---|---|---|---|"]
    seconds = run_values(sweep, "seconds_per_step").astype(float)
    devices, engines = run_values(sweep, "device"), run_values(sweep, "engine")
    for i, file in enumerate(sweep.run_file.values):   # runs the record predates: their files
        if not np.isfinite(seconds[i]) and (root / file).is_file():
            attrs = open_run(root / file).attrs
            seconds[i] = float(attrs["seconds_per_step"])
            devices[i], engines[i] = attrs.get("device", ""), attrs.get("engine", "")
    for model, mode, optimizer in itertools.product(sweep.model.values, sweep.mode.values,
                                                    sweep.optimizer.values):
        rows = ((sweep.run_model == model) & (sweep.run_mode == mode)
                & (sweep.run_optimizer == optimizer)).values & np.isfinite(seconds)
        for device, engine in sorted({(str(d), str(e)) for d, e in
                                      zip(devices[rows], engines[rows], strict=True)}):
            take = rows & (devices == device) & (engines == engine)
            values = seconds[take]
            lines.append(f"| {model} | {mode} | {optimizer} | {device or '?'} | {engine or '?'} | "
                         f"{np.median(values):.3f} ({values.min():.3f}-{values.max():.3f}) | "
                         f"{len(values)} |")
    return lines


def progress_lines(root: Path, sweep) -> list[str]:
    """Per cell (model, mode, optimizer): the groups the spec plans, those searched to
    the end so far (eta_c found or its status settled), resolved eta_c and eta_max, and
    the runs evaluated (the runs of unfinished searches too: the thin record keeps
    them)."""
    import collections
    import json

    from phantom_theory.errors import PhantomError
    from runner.sweep.spec import SweepSpec

    text = (root / "sweep" / "spec.json").read_text()
    try:
        groups = SweepSpec.from_json(text).groups()
    except PhantomError:   # a spec of older options: its groups from the plain JSON
        data = json.loads(text)
        groups = [(m, c, mo, o, sd) for m in data["models"] for mo in data["modes"]
                  for o in data["optimizers"]
                  for c in data.get("model_contexts", {}).get(m, data["contexts"])
                  for sd in data["seeds"]]
    planned = collections.Counter((m, mo, o) for m, _, mo, o, _ in groups)
    lines = ["| model | mode | optimizer | groups planned | searched | η_c resolved | η_max resolved | runs evaluated |",
             "|---|---|---|---|---|---|---|---|"]
    for (model, mode, optimizer), n in planned.items():
        searched = resolved = resolved_max = 0
        if model in sweep.model.values and mode in sweep.mode.values and optimizer in sweep.optimizer.values:
            row = sweep.sel(model=model, mode=mode, optimizer=optimizer)
            searched = int((row.eta_c_status != "").sum())
            resolved = int((row.eta_c_status == "resolved").sum())
            resolved_max = int((row.eta_max_status == "resolved").sum())
        runs = int(((sweep.run_model == model) & (sweep.run_mode == mode)
                    & (sweep.run_optimizer == optimizer)).sum()) if sweep.sizes.get("run") else 0
        lines.append(f"| {model} | {mode} | {optimizer} | {n} | {searched} | {resolved} | "
                     f"{resolved_max} | {runs} |")
    return lines


def tables(root: Path) -> list[str]:
    """Every table of the study in folder ``root``, as Markdown lines."""
    sweep = open_sweep(root / "sweep")
    out = ["### Progress of the sweep", "", *progress_lines(root, sweep), "",
           "### Critical learning rates per architecture", "", *eta_table(sweep), "",
           "### η_c and η_max per group", "", *group_table(sweep), "",
           "### Outcomes per band of lr / η_c", "", *band_table(sweep), "",
           "### Jumps by kind and band of lr / η_c, with their phantom share", "",
           *jump_band_table(sweep), "", *jump_table(sweep, root / "sweep"), "",
           "### Frozen embeddings under LoRA", "", *frozen_lines(sweep), "",
           "### Measured cost per step", "", *cost_table(sweep, root / "sweep")]
    if (root / "quantities.nc").exists():
        out += ["", "### Every at-init predictor at η_c", "",
                *predictor_lines(sweep, root / "quantities.nc"), "",
                "### The spread of log Q per predictor", "",
                *spread_lines(sweep, root / "quantities.nc"), "",
                "### Class statistics and the LoRA cost per architecture", "",
                *class_lines(sweep, root / "quantities.nc")]
    times = sorted(root.glob("time-t*/sweep.nc"))
    if times:
        out += ["", "### η_c · T against T", "", *time_lines(sweep, times)]
    for theory in sorted(root.glob("theory*")):   # theory/ (Q = nu_c), theory-second/, ...
        if (theory / "scores.nc").exists():
            out += ["", f"#### From {theory.name}/", "", *theory_lines(theory)]
    return out


def theory_lines(theory: Path) -> list[str]:
    from phantom_theory.theory.compare import side_by_side

    scores = scores_from_dataset(open_scores(theory / "scores.nc"))
    comparison = open_comparison(theory / "comparison.nc")
    table = open_table(theory / "table.nc")
    out = ["### Every theory beside linear0 and the baselines", "",
           f"Table: {table.attrs.get('table_mode')} fine-tuning, "
           f"{table.attrs.get('table_optimizer')}, predictor "
           f"{table.attrs.get('table_predictor', 'linear')}. LOAO ELPD, its difference from "
           "linear0 over the same folds, and the blind error over the held-out "
           "architectures (median relative error of η_c, HDI coverage).", "",
           "| theory | elpd LOAO | se | vs linear0 | se | blind median error | 94% HDI covers | fits passed the gate |",
           "|---|---|---|---|---|---|---|---|"]
    for r in side_by_side(comparison, scores):
        covers = f"{r['blind_covered']}/{r['blind_n']}" if r["blind_n"] else "–"
        out.append(f"| {r['theory']} | {fmt(r['elpd_loao'])} | {fmt(r['elpd_loao_se'])} | "
                   f"{fmt(r.get('delta_elpd', np.nan))} | {fmt(r.get('delta_se', np.nan))} | "
                   f"{fmt(100 * r['blind_median_error'])}% | {covers} | "
                   f"{ {True: 'yes', False: 'no', None: 'no fit'}[r['fits_passed']] } |")
    if int(comparison.attrs.get("nested", 0)):
        out += ["", "The table is nested (no context is seen on two architectures): the "
                "context scale τ_γ and the noise σ are not separately identified."]
    out += ["", "### Blind test: each architecture held out in turn", "",
            "| theory | held out | measured η_c | predicted (median) | 94% HDI | relative error | HDI covers | 2/λ0 | its relative error |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s in scores:
        out.append(f"| {s['theory']} | {s['held_out']} | {fmt(s['measured'])} | {fmt(s['median'])} | "
                   f"[{fmt(s['hdi_low'])}, {fmt(s['hdi_high'])}] | {100 * s['relative_error']:.1f}% | "
                   f"{'yes' if s['covered'] else 'no'} | {fmt(s['anchor'])} | "
                   f"{100 * s['anchor_relative_error']:.0f}% |")
    return [*out, "", *class_membership_lines(theory, table), "", *power_lines(theory, scores)]


def class_membership_lines(theory: Path, table) -> list[str]:
    """M_class's fit on every architecture: P(class_1) beside the architecture's class
    statistic, and per class the mean statistic and the LoRA cost (or P(success))."""
    from phantom_theory.errors import PhantomError
    from phantom_theory.theory.results import load_fit
    from phantom_theory.theory.summaries import class_membership

    lines = ["### Classes (M_class, fitted on every architecture)", ""]
    for path in sorted((theory / "fits").glob("class*.nc")):
        try:
            fit = load_fit(path, table)
            classes = class_membership(fit, table)
        except (KeyError, ValueError, PhantomError) as error:
            lines += [f"{path.name}: a fit this version cannot summarise ({error!r}); run "
                      "`phantom loao` again.", ""]
            continue
        name = "lora_cost_mean" if "lora_cost_mean_median" in classes else "lora_success"
        what = "LoRA cost log(η_c^LoRA / η_c^full)" if name == "lora_cost_mean" else "P(LoRA success)"
        lines += [f"{fit.theory} (class statistic {table.attrs.get('table_class_statistic', '?')}; "
                  f"LoRA {classes.attrs.get('lora_form')}):", "",
                  "| model | class statistic | P(class_1) |", "|---|---|---|"]
        for m in classes.model.values:
            row = classes.sel(model=m)
            lines.append(f"| {m} | {fmt(float(row.class_stat))} | {float(row.p_class_1):.3f} |")
        lines += ["", f"| class | mean class statistic (94% HDI) | {what} (94% HDI) |", "|---|---|---|"]
        for k in classes["class"].values:
            row = classes.sel({"class": k})
            lines.append(f"| {k} | {fmt(float(row.s_mean_median))} [{fmt(float(row.s_mean_hdi_low))}, "
                         f"{fmt(float(row.s_mean_hdi_high))}] | {fmt(float(row[f'{name}_median']))} "
                         f"[{fmt(float(row[f'{name}_hdi_low']))}, {fmt(float(row[f'{name}_hdi_high']))}] |")
        lines.append("")
    return lines if len(lines) > 2 else []


def main(root: str, write: bool = False) -> None:
    root = Path(root)
    lines = tables(root)
    if not write:
        print("\n".join(lines))
        return
    readme = root / "README.md"
    text = readme.read_text()
    marker = "\n## Tables\n"
    if marker not in text:
        raise SystemExit(f"{readme} has no '## Tables' section to replace")
    head = text[: text.index(marker) + len(marker)]
    note = (f"\nGenerated by `python analyses/real_tables.py {root} --write` from the "
            "committed files; do not edit by hand.\n\n")
    readme.write_text(head + note + "\n".join(lines) + "\n")
    print(f"wrote the tables of {readme}")


def _cells(sweep, quantities_path: Path):
    """(quantities, steps, and per (mode, optimizer) of the sweep: eta_c per (model,
    context) and eta_hat per predictor), the quantities reindexed to the sweep."""
    import xarray as xr

    from phantom_theory.theory.table import PREDICTORS, measured, predicted_eta

    q = xr.open_dataset(quantities_path)
    models = [m for m in sweep.model.values if m in q.model.values]
    contexts = [c for c in sweep.context.values if c in q.context.values]
    q = q.sel(model=models, context=contexts)
    steps = float(sweep.attrs["run_steps"])
    out = {}
    for mode, optimizer in itertools.product(sweep.mode.values, sweep.optimizer.values):
        if mode not in q.mode.values or optimizer not in q.optimizer.values:
            continue
        eta_c, _ = measured(sweep, mode, optimizer)
        eta_c = eta_c.sel(model=models, context=contexts)
        if not np.isfinite(eta_c.values).any():
            continue
        out[(str(mode), str(optimizer))] = (eta_c, {p: predicted_eta(q, mode, optimizer, steps, p)
                                                  for p in PREDICTORS})
    return q, steps, out


def predictor_lines(sweep, quantities_path: Path) -> list[str]:
    """Per resolved group: eta_c, Q = eta_c / eta_hat for every at-init predictor (the
    linear one is the reduced rate nu_c; each is 1 where its theory holds exactly)
    and the sharpness number eta_c lambda0 / 2 (1 at the catapult edge)."""
    q, steps, cells = _cells(sweep, quantities_path)
    lines = [f"Q = η_c / η̂ at T = {steps:g}: linear η̂ = \\|m0\\| / (T G0) (Q = ν_c), second order "
             "ν̂₂ \\|m0\\| / (T G0), ray S* / T (THEORY.md section 7). η_c is the geometric mean "
             "over seeds.", "",
             "| model | context | mode | optimizer | η_c | ν_c (linear) | Q_second | Q_ray | η_c λ0 / 2 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (mode, optimizer), (eta_c, hats) in cells.items():
        lam = q.lambda0.sel(mode=mode, drop=True)
        if "optimizer" in lam.dims:
            lam = lam.sel(optimizer=optimizer, drop=True)
        for model, context in itertools.product(eta_c.model.values, eta_c.context.values):
            eta = float(eta_c.sel(model=model, context=context))
            if not np.isfinite(eta):
                continue
            ratio = {p: eta / float(h.sel(model=model, context=context)) for p, h in hats.items()}
            lines.append(f"| {model} | {context} | {mode} | {optimizer} | {fmt(eta)} | "
                         f"{fmt(ratio['linear'])} | {fmt(ratio['second'])} | {fmt(ratio['ray'])} | "
                         f"{fmt(eta * float(lam.sel(model=model, context=context)) / 2)} |")
    return lines


def spread_lines(sweep, quantities_path: Path) -> list[str]:
    """The spread of log Q per predictor, per mode and optimizer: over every resolved
    group, and between architectures (the sd of their mean log Q). A predictor that
    captures the dynamics has a small spread; nothing here was tuned to it."""
    _, _, cells = _cells(sweep, quantities_path)
    lines = ["| mode | optimizer | predictor | groups | median Q | sd of log Q | between-architecture sd of mean log Q |",
             "|---|---|---|---|---|---|---|"]
    for (mode, optimizer), (eta_c, hats) in cells.items():
        for predictor, hat in hats.items():
            log_q = np.log(eta_c / hat)
            values = log_q.values[np.isfinite(log_q.values)]
            if not len(values):
                lines.append(f"| {mode} | {optimizer} | {predictor} | 0 | – | – | – |")
                continue
            means = log_q.mean("context", skipna=True).values
            means = means[np.isfinite(means)]
            between = np.std(means, ddof=1) if len(means) > 1 else np.nan
            lines.append(f"| {mode} | {optimizer} | {predictor} | {len(values)} | "
                         f"{fmt(float(np.exp(np.median(values))))} | "
                         f"{fmt(float(np.std(values, ddof=1)) if len(values) > 1 else np.nan)} | "
                         f"{fmt(float(between))} |")
    return lines


def class_lines(sweep, quantities_path: Path) -> list[str]:
    """Per architecture: the whole-matrix class statistics of the readout rows (at
    init) and the measured LoRA cost log(eta_c^LoRA / eta_c^full) per optimizer
    (median over its contexts)."""
    import xarray as xr

    from phantom_theory.errors import PhantomError
    from phantom_theory.quantities import class_statistics
    from phantom_theory.theory.table import lora_cost

    q = xr.open_dataset(quantities_path)
    try:
        stats = class_statistics(q)
    except PhantomError as error:
        return [f"Class statistics unavailable: {error}."]
    optimizers = [str(o) for o in sweep.optimizer.values]
    lines = ["| model | mean cosine | top-PC share | effective rank / d | d | "
             + " | ".join(f"LoRA cost ({o}), median over contexts" for o in optimizers) + " |",
             "|---|---|---|---|---|" + "---|" * len(optimizers)]
    costs = {o: lora_cost(sweep, o) for o in optimizers}
    for model in stats.model.values:
        row = stats.sel(model=model)
        cells = []
        for o in optimizers:
            if model not in costs[o].model.values:
                cells.append("–")
                continue
            values = costs[o].sel(model=model).values
            values = values[np.isfinite(values)]
            cells.append(f"{np.median(values):.2f} (n = {len(values)})" if len(values) else "–")
        lines.append(f"| {model} | {fmt(float(row.mean_cosine))} | {fmt(float(row.top_pc_share))} | "
                     f"{fmt(float(row.effective_rank_ratio))} | {int(row.embedding_dim)} | "
                     + " | ".join(cells) + " |")
    return lines


def time_lines(sweep, paths) -> list[str]:
    """eta_c * T at each T for the groups the time sweeps share with the main one: the
    linear theory holds eta_c * T constant; growth is a silent-failure mechanism
    that more steps do not cure."""
    sweeps = {int(sweep.attrs["run_steps"]): sweep}
    for path in paths:
        other = open_sweep(path)
        sweeps[int(other.attrs["run_steps"])] = other
    steps = sorted(sweeps)
    lines = ["| model | context | mode | optimizer | " + " | ".join(f"η_c · T at T = {t}" for t in steps)
             + " | ratio last / first |", "|---|---|---|---|" + "---|" * (len(steps) + 1)]
    base = sweeps[steps[-1]]
    for model, context, mode, optimizer in itertools.product(
            base.model.values, base.context.values, base.mode.values, base.optimizer.values):
        values = []
        for t in steps:
            ds = sweeps[t]
            try:
                row = ds.sel(model=model, context=context, mode=mode, optimizer=optimizer)
            except KeyError:
                values.append(np.nan)
                continue
            resolved = row.eta_c.where(row.eta_c_status == "resolved")
            values.append(float(np.exp(np.log(resolved).mean("seed", skipna=True))) * t)
        if not np.isfinite(values).any():
            continue
        ratio = values[-1] / values[0] if np.isfinite(values[0]) and np.isfinite(values[-1]) else np.nan
        lines.append(f"| {model} | {context} | {mode} | {optimizer} | "
                     + " | ".join(fmt(v) for v in values) + f" | {fmt(ratio)} |")
    return lines


def power_lines(theory: Path, scores: list[dict]) -> list[str]:
    """What the fits can say with this few architectures: the posterior of each scale
    (tau, tau_gamma, sigma) against its prior (read from the theory's own priors),
    and how wide the blind predictions are."""
    import xarray as xr
    from scipy import stats

    from phantom_theory.theory.models.priors import HalfNormal

    n_arch = len({s["held_out"] for s in scores})
    lines = [f"### How much {n_arch} architectures can say", "",
             "| theory | parameter | prior median, 94% interval | posterior median | posterior 94% HDI | inference | divergences, max r_hat |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted((theory / "fits").glob("*.nc")):
        if path.stem not in THEORIES:
            continue
        priors = THEORIES[path.stem].priors
        posterior = xr.load_dataset(path, group="posterior", engine="netcdf4")
        inference = posterior.attrs.get("inference", "nuts")
        diagnostics = (f"{int(posterior.attrs.get('diagnostics_divergences', 0))}, "
                       f"{float(posterior.attrs.get('diagnostics_max_rhat', np.nan)):.3f}")
        for name in ("tau", "tau_gamma", "sigma"):
            prior = priors.get(name)
            if name not in posterior or not isinstance(prior, HalfNormal):
                continue
            half = stats.halfnorm(scale=prior.sigma)
            draws = posterior[name].values.ravel()
            low, high = hdi(draws)
            lines.append(f"| {path.stem} | {name} | {half.median():.2f}, [0, {half.ppf(0.94):.2f}] | "
                         f"{np.median(draws):.3g} | [{low:.3g}, {high:.3g}] | {inference} | {diagnostics} |")
    lines += ["", "| theory | held out | 94% HDI spans a factor of |", "|---|---|---|"]
    for s in scores:
        lines.append(f"| {s['theory']} | {s['held_out']} | {s['hdi_high'] / s['hdi_low']:.3g} |")
    return lines


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--write"]
    main(arguments[0] if arguments else "data/real", write="--write" in sys.argv[1:])
