"""One self-contained HTML report of a results folder: every figure embedded as a
PNG, no script, no stylesheet or font from the network.

It reads what it finds under the folder (by each file's phantom_schema): a sweep
(with its run files, for trajectories), a theory evaluation (table, comparison,
scores, fits), and draws what that allows.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import itertools
from pathlib import Path

from .errors import PhantomError
from .plots import plot_calibration, plot_classes, plot_levels, plot_sweep, plot_trajectory
from .plots.common import plt
from .provenance import provenance
from .schema import SCHEMAS, schema_of
from .sweep import band_tables, open_sweep, sweep_table
from .theory.compare import comparison_table, side_by_side_table
from .theory.models import get_theory
from .theory.predict import calibration_table
from .theory.results import (
    load_fit,
    open_comparison,
    open_scores,
    open_table,
    scores_from_dataset,
)
from .theory.summaries import architecture_levels, class_membership
from .trajectory import open_run, run_summary

STYLE = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.25em;
margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}img{max-width:100%;
border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
.note{color:#555;font-size:.92em}.grid{display:flex;flex-wrap:wrap;gap:1em}
.grid figure{flex:1 1 460px;margin:0}figcaption{font-size:.85em;color:#555}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(fig, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def discover(root: Path) -> dict:
    """Files under ``root`` by schema (run files of a sweep are skipped)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.nc")):
        if "runs" in path.relative_to(root).parts[:-1] and path.name != "sweep.nc":
            continue
        if "predictions" in path.parts:
            continue
        found.setdefault(schema_of(path), []).append(path)
    fits = sorted(root.rglob("fits/*.nc"))
    return {**found, "fits": fits}


def check_results(root: Path) -> list[str]:
    """Refuse a results folder that mixes the output of two ``phantom loao`` runs: a
    folder with a manifest must hold exactly its files, unchanged; one without (a
    folder with scores.nc) must carry one run id (``loao_run_id``) in all its files.
    Returns a warning for each folder too old to be checked."""
    import xarray as xr

    from .io import MANIFEST_NAME, check_manifest

    checked = [m.parent for m in sorted(root.rglob(MANIFEST_NAME))]
    for folder in checked:
        check_manifest(folder)
    theory = {SCHEMAS[k] for k in ("theory-table", "comparison", "scores", "prediction")}
    notes = []
    for folder in sorted({p.parent for p in root.rglob("*.nc")
                          if schema_of(p) == SCHEMAS["scores"]} - set(checked)):
        files = [(p, None) for p in sorted(folder.glob("*.nc")) if schema_of(p) in theory]
        files += [(p, None) for p in sorted(folder.glob("predictions/*.nc"))]
        files += [(p, "posterior") for p in sorted(folder.glob("fits/*.nc"))]
        ids = {}
        for path, group in files:
            try:
                with xr.open_dataset(path, engine="netcdf4", group=group) as ds:
                    ids[path] = str(ds.attrs.get("loao_run_id", ""))
            except (OSError, ValueError):
                raise PhantomError(f"{path} is not a readable results file; write {folder} "
                                   "again with `phantom loao --overwrite`") from None
        distinct = sorted(set(ids.values()))
        if len(distinct) > 1:
            first, other = (next(p for p, i in ids.items() if i == d) for d in distinct[:2])
            raise PhantomError(
                f"{folder} mixes the results of two loao runs: {first.relative_to(folder)} is "
                f"from run {distinct[0] or '(none)'}, {other.relative_to(folder)} from run "
                f"{distinct[1] or '(none)'}; rerun `phantom loao --overwrite` into it")
        if distinct == [""]:
            notes.append(f"{folder} was written before loao recorded its run, so it cannot be "
                         "checked for results mixed from two runs")
    return notes


def _bracketing_runs(sweep, folder: Path, limit: int = 2) -> list[tuple[str, Path, Path]]:
    """(label, run below eta_c, run above) for the first groups with a resolved eta_c."""
    out = []
    keys = itertools.product(sweep.model.values, sweep.context.values, sweep.mode.values,
                             sweep.optimizer.values, sweep.seed.values)
    for model, context, mode, optimizer, seed in keys:
        group = sweep.sel(model=model, context=context, mode=mode, optimizer=optimizer, seed=seed)
        if str(group.eta_c_status.item()) != "resolved":
            continue
        runs = ((sweep.run_model == model) & (sweep.run_context == context)
                & (sweep.run_mode == mode) & (sweep.run_optimizer == optimizer)
                & (sweep.run_seed == seed)).values
        files = dict(zip(sweep.run_lr.values[runs], sweep.run_file.values[runs], strict=True))
        lo, hi = float(group.eta_c_lo), float(group.eta_c_hi)
        if lo in files and hi in files:
            out.append((f"{model} · {context} · {mode} · {optimizer}", folder / files[lo],
                        folder / files[hi]))
        if len(out) >= limit:
            break
    return out


def build_report(root, title: str = "phantom-theory report") -> str:
    """The HTML text of the report of folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise PhantomError(f"{root} is not a folder of results")
    warnings = "".join(f"<p class=note><strong>Warning:</strong> {html.escape(note)}</p>"
                       for note in check_results(root))
    found = discover(root)
    sections = []
    for path in found.get(SCHEMAS["trajectory"], [])[:4]:
        ds = open_run(path)
        sections.append(f"<h2>Run {html.escape(str(path.relative_to(root)))}</h2>"
                        f"<pre>{html.escape(run_summary(ds))}</pre>"
                        + _figure(plot_trajectory(ds), "loss, probabilities, Φ = σ + δ and "
                                  "the readout/geometry attribution; jumps shaded"))
    for path in found.get(SCHEMAS["sweep"], []):
        sweep = open_sweep(path)
        figures = []
        for label, below, above in _bracketing_runs(sweep, path.parent):
            for run_path, side in ((below, "just below η_c"), (above, "just above η_c")):
                if run_path.is_file():
                    figures.append(_figure(plot_trajectory(open_run(run_path)),
                                           f"{label}: the run {side}"))
        sections.append(
            f"<h2>Sweep {html.escape(str(sweep.attrs.get('sweep_name', path.parent.name)))}</h2>"
            f"<p class=note>{html.escape(str(path.relative_to(root)))}: {sweep.sizes['run']} runs, "
            f"spec SHA-256 {html.escape(str(sweep.attrs.get('sweep_spec_sha256', ''))[:16])}…</p>"
            + _figure(plot_sweep(sweep), "outcome against learning rate, η_c and η_max marked")
            + (f"<h3>Trajectories bracketing η_c, with jumps shaded</h3><div class=grid>"
               f"{''.join(figures)}</div>" if figures else "")
            + f"<pre>{html.escape(sweep_table(sweep, by_band=False))}</pre>"
            + "<h3>Failure modes and jumps by band of lr / η_c</h3><p class=note>Outcome "
              "counts per group, and jumps per architecture by kind (onset, catapult, jump) "
              "with their phantom share, in bands of lr / η_c: never pooled over bands, "
              "kinds or the runs a search happened to evaluate.</p>"
            + f"<pre>{html.escape(band_tables(sweep))}</pre>")
    tables = found.get(SCHEMAS["theory-table"], [])
    table = open_table(tables[0]) if tables else None
    for path in found.get(SCHEMAS["comparison"], []):
        sections.append("<h2>Theory comparison</h2><p class=note>PSIS-LOO over rows and exact "
                        "leave-one-architecture-out over architectures, on log η_c; stacking "
                        "weights for both.</p>"
                        f"<pre>{html.escape(comparison_table(open_comparison(path)))}</pre>")
    if table is not None:
        for path in found["fits"]:
            fit = load_fit(path, table)
            if get_theory(fit.theory).has_levels:
                sections.append(f"<h2>Architecture effects: {fit.theory}</h2>"
                                f"<p class=note>{html.escape(fit.describe())}</p>"
                                + _figure(plot_levels(architecture_levels(fit, table)),
                                          "forest plot of the architecture levels"))
            if get_theory(fit.theory).has_classes:
                sections.append("<h2>Classes</h2>" + _figure(
                    plot_classes(class_membership(fit, table)),
                    "class probabilities and LoRA success per class"))
    comparisons, score_files = found.get(SCHEMAS["comparison"], []), found.get(SCHEMAS["scores"], [])
    if comparisons and score_files:
        sections.append(
            "<h2>Every theory beside the baselines</h2><p class=note>LOAO ELPD (its "
            "difference from the zero-parameter baseline linear0 over the same folds) and "
            "the blind error over the held-out architectures: the median relative error of "
            "the predicted η_c, and how many 94% HDIs covered the measured one. The "
            "catapult anchor 2/λ0 has no density; its blind error is shown. A fitted theory "
            "earns its parameters only by beating linear0 in both.</p>"
            f"<pre>{html.escape(side_by_side_table(open_comparison(comparisons[0]), scores_from_dataset(open_scores(score_files[0]))))}</pre>")
    sweeps = found.get(SCHEMAS["sweep"], [])
    for path in found.get(SCHEMAS["context-prediction"], []):
        sections.append(_context_section(root, path, open_sweep(sweeps[0]) if sweeps else None))
    for path in score_files:
        scores = open_scores(path)
        sections.append("<h2>Blind predictions</h2><p class=note>Each architecture held out in "
                        "turn: the fit never saw its outcomes; its level is drawn from the "
                        "population and combined with its own measured-at-init quantities.</p>"
                        + _figure(plot_calibration(scores), "predicted against measured η_c")
                        + f"<pre>{html.escape(calibration_table(scores_from_dataset(scores)))}</pre>")
    if not sections:
        raise PhantomError(f"found no phantom-theory results under {root}")
    meta = provenance()
    footer = (f"<h2>Provenance</h2><pre>{html.escape(chr(10).join(f'{k}: {v}' for k, v in meta.items()))}"
              f"</pre>")
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=note>{html.escape(str(root))} · made {created}</p>{warnings}{''.join(sections)}"
            f"{footer}</body></html>")


def _context_section(root: Path, path: Path, sweep) -> str:
    """Held-out contexts: the prediction (its hash checked) per (architecture,
    context), scored against the folder's sweep where it measured them."""
    from .theory.predict import context_score_table, open_prediction, score
    from .theory.table import measured

    prediction = open_prediction(path)
    head = (f"<h2>Held-out contexts: {html.escape(str(prediction.attrs.get('theory')))}</h2>"
            f"<p class=note>{html.escape(str(path.relative_to(root)))}: contexts no fit saw "
            f"({html.escape(str(prediction.attrs.get('held_out_contexts')))}), on every fitted "
            "architecture; each context's effect drawn from its population, one draw per "
            "posterior sample shared by the architectures. SHA-256 "
            f"{html.escape(str(prediction.attrs['prediction_sha256'])[:16])}….</p>")
    mode, optimizer = (_table_options(prediction).get(k) for k in ("mode", "optimizer"))
    if sweep is not None and mode in sweep.mode.values and optimizer in sweep.optimizer.values:
        eta_c, _ = measured(sweep, mode, optimizer)
        try:
            return head + f"<pre>{html.escape(context_score_table(score(prediction, eta_c)))}</pre>"
        except PhantomError as error:
            head += f"<p class=note>Not scored: {html.escape(str(error))}</p>"
    rows = [f"{'context':18s} {'model':18s} {'median':>10s} {'94% HDI':>24s}"]
    for model, context in itertools.product(prediction.model.values, prediction.context.values):
        cell = prediction.sel(model=model, context=context)
        rows.append(f"{context:18s} {model:18s} {float(cell.eta_c_median):10.4g} "
                    f"[{float(cell.eta_c_hdi_low):.4g}, {float(cell.eta_c_hdi_high):.4g}]")
    return head + f"<pre>{html.escape(chr(10).join(rows))}</pre>"


def _table_options(prediction) -> dict:
    """The table options a prediction records (mode, optimizer, predictor, ...)."""
    import json

    try:
        return json.loads(prediction.attrs.get("table_options_json") or "{}")
    except ValueError:
        return {}


def write_report(root, output, overwrite: bool = False) -> Path:
    """Write the HTML report of folder ``root`` to ``output`` and return its path."""
    from .io import check_output_path, write_text

    output = check_output_path(output, overwrite)   # refuse before the work, not after
    return write_text(output, build_report(root), overwrite)


__all__ = ["build_report", "discover", "write_report"]
