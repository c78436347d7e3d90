"""The pure ``phantom`` commands: they read files and compute, and need no model
(show, plot, sweep-show, plot-sweep, fit, compare, predict, score, loao, report).
``runner.cli`` mounts them beside the commands that train or load models.

Each command's options come from the options dataclass of its stage
(``phantom_theory.options.add_option_arguments``): a default and its help text
live once, in the dataclass. A ``PhantomError`` becomes one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .errors import PhantomError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, like every other user error."""

    def error(self, message):
        """Raise the usage mistake as a PhantomError."""
        raise PhantomError(f"{message} (see `{self.prog} --help`)")


def add_output_arguments(p, help=None) -> None:
    """-o/--output and --overwrite, the same on every command that writes one file."""
    p.add_argument("-o", "--output", required=True, help=help)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def save_plot(args, draw) -> None:
    """Refuse a bad or existing output before drawing, then draw() and save it."""
    from .plots import save_figure
    from .plots.common import check_figure_path

    check_figure_path(args.output, args.overwrite)
    save_figure(draw(), args.output, args.overwrite)
    print(f"saved {args.output}")


def cmd_show(args):
    from .trajectory import open_run, run_summary

    print(run_summary(open_run(args.path)))


def cmd_plot(args):
    from .plots import plot_trajectory
    from .trajectory import open_run

    save_plot(args, lambda: plot_trajectory(open_run(args.path)))


def cmd_sweep_show(args):
    from .options import options_from_args
    from .sweep import BandOptions, open_sweep, sweep_table

    print(sweep_table(open_sweep(args.path), options_from_args(BandOptions, args)))


def cmd_plot_sweep(args):
    from .plots import plot_sweep
    from .sweep import open_sweep

    save_plot(args, lambda: plot_sweep(open_sweep(args.path)))


# -- theory models -------------------------------------------------------------------

def recorded_held_out_contexts(sweep, path) -> list[str]:
    """The held-out contexts a crossed sweep's spec records (its ``sweep_spec``
    attribute, JSON, at crossed.held_out): the sweep runs them, no fit may see them.
    Empty for a sweep without a crossed set."""
    import json

    text = sweep.attrs.get("sweep_spec")
    if not text:
        return []
    try:
        spec = json.loads(text)
        held_out = spec.get("crossed", {}).get("held_out", [])
    except (ValueError, AttributeError):
        raise PhantomError(f"the sweep {path} records a sweep_spec attribute that is not a "
                           "spec's JSON; write the sweep again with `phantom sweep`") from None
    if not isinstance(held_out, list) or not all(isinstance(c, str) for c in held_out):
        raise PhantomError(f"the sweep {path} records crossed.held_out {held_out!r}, not a "
                           "list of context ids; write the sweep again with `phantom sweep`")
    return held_out


def contexts_file_ids(path) -> list[str]:
    """The ids of the [[context]] tables of a contexts TOML file (as
    data/contexts/pool.toml), in the file's order."""
    import tomllib
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise PhantomError(f"no such contexts file: {path}; give a TOML file of [[context]] "
                           "tables, as data/contexts/pool.toml")
    try:
        tables = tomllib.loads(path.read_text()).get("context")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PhantomError(f"the contexts file {path} is not TOML ({error})") from None
    if not isinstance(tables, list) or not tables:
        raise PhantomError(f"the contexts file {path} has no [[context]] tables; give one as "
                           "data/contexts/pool.toml")
    ids = [t.get("id") if isinstance(t, dict) else None for t in tables]
    bad = [i for i, c in enumerate(ids) if not isinstance(c, str) or not c.strip()]
    if bad:
        raise PhantomError(f"[[context]] table {bad[0] + 1} of {path} has no id (a non-empty "
                           "string); every context needs one")
    return list(dict.fromkeys(ids))


def _table(args, held_out_contexts=()):
    """The theory table of --fit-on, for the table options, with the contexts held out
    of every fit: those the sweep's spec records (crossed.held_out), those of
    --held-out-contexts and ``held_out_contexts`` (the contexts to predict). Its
    attributes record the three lists."""
    from .options import options_from_args
    from .quantities import open_quantities
    from .sweep import open_sweep
    from .theory.table import TableOptions, theory_table

    if len(args.fit_on) != 2:
        raise PhantomError("--fit-on takes two paths: the sweep (folder or sweep.nc) and the "
                           "quantities file")
    sweep_path, quantities_path = args.fit_on
    options = options_from_args(TableOptions, args)
    quantities, sweep = open_quantities(quantities_path), open_sweep(sweep_path)
    for dim, value in (("mode", options.mode), ("optimizer", options.optimizer)):
        if value not in sweep[dim].values:
            raise PhantomError(f"the sweep {sweep_path} has no {dim} {value!r} (it has "
                               f"{', '.join(map(str, sweep[dim].values))}); choose one with "
                               f"--{dim}")
        if value not in quantities[dim].values:
            raise PhantomError(f"the quantities {quantities_path} have no G0 for {dim} "
                               f"{value!r}; measure them with `phantom quantities --{dim}s "
                               f"{value}`")
    recorded = recorded_held_out_contexts(sweep, sweep_path)
    named = list(dict.fromkeys([*args.held_out_contexts, *held_out_contexts]))
    held_out = list(dict.fromkeys([*recorded, *named]))
    known = {*map(str, sweep.context.values), *map(str, quantities.context.values)}
    unknown = [c for c in held_out if c not in known]
    if unknown:
        source = "the sweep's spec records" if unknown[0] in recorded else "you named"
        raise PhantomError(f"held-out context {unknown[0]!r} ({source}) is in neither the sweep "
                           f"{sweep_path} nor the quantities {quantities_path}; name one of "
                           f"{', '.join(sorted(known))}")
    table = theory_table(quantities, sweep, options, held_out_contexts=held_out)
    if held_out and not table.observed.any():
        raise PhantomError(f"holding out context(s) {', '.join(held_out)} leaves no outcome row "
                           "to fit; hold out fewer contexts")
    return table.assign_attrs(held_out_contexts_recorded=",".join(recorded),
                              held_out_contexts_named=",".join(named))


def _fit_options(args):
    """The fit options, and the command's other numbers, checked before any file is
    read."""
    from .options import options_from_args
    from .theory.fit import FitOptions
    from .theory.table import TableOptions

    options_from_args(TableOptions, args)
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise PhantomError(f"--workers must be at least 1, not {workers}")
    if getattr(args, "held_out", None) is not None and not args.held_out.strip():
        raise PhantomError("--held-out is empty (''); name the architecture to predict, a "
                           "model of the sweep")
    for option in ("held_out_contexts", "context"):
        ids = getattr(args, option, None) or []
        if any(not c.strip() for c in ids):
            raise PhantomError(f"--{option.replace('_', '-')} names an empty context id ('');"
                               " name contexts of the sweep")
    return options_from_args(FitOptions, args)


def _provenance(args, table, extra=None) -> dict:
    """The attributes every theory output records: the versions, --fit-on, whether
    unconverged fits were accepted, and the contexts held out of the fits (all of
    them, those the sweep's spec records, those named)."""
    from .provenance import provenance

    attrs = {**provenance("pymc", "arviz", "nutpie", "pytensor"),
             "fit_on": " ".join(map(str, args.fit_on)),
             "allow_unconverged": int(args.allow_unconverged),
             **{key: table.attrs.get(key, "") for key in (
                 "held_out_contexts", "held_out_contexts_recorded", "held_out_contexts_named")}}
    attrs.update(extra or {})
    return attrs


def _gate(fits_described: list[tuple[str, dict]], args) -> None:
    failed = [(name, d) for name, d in fits_described if not d["passed"]]
    if failed and not args.allow_unconverged:
        details = "; ".join(f"{name}: max r_hat {d['max_rhat']:.4f}, min bulk ESS "
                            f"{d['min_ess_bulk']:.0f}, {d['divergences']} divergences"
                            for name, d in failed)
        raise PhantomError(f"{len(failed)} fit(s) failed the diagnostics gate (r_hat <= 1.01, "
                           f"bulk ESS >= 400, no divergences): {details}; the results were "
                           "written and marked failed; --allow-unconverged accepts them")


def cmd_fit(args):
    from .io import check_output_path
    from .theory.fit import TheoryFitter
    from .theory.results import write_fit
    from .theory.summaries import summary_text

    check_output_path(args.out, args.overwrite)
    options = _fit_options(args)
    table = _table(args)
    fit = TheoryFitter(args.theory, table, options).fit()
    write_fit(fit, table, options, _provenance(args, table), args.out, args.overwrite)
    print(summary_text(fit, table))
    print(f"saved {args.out}")
    _gate([(fit.theory, fit.diagnostics)], args)


def _evaluate(args, theories, extra=None):
    """(table, options, evaluation, attrs): every theory fitted and cross-validated,
    and the provenance attributes its outputs record (with ``extra``)."""
    from .theory.compare import evaluate

    options = _fit_options(args)
    table = _table(args)
    attrs = _provenance(args, table, extra)
    return table, options, evaluate(table, theories, options, workers=args.workers,
                                    attrs=attrs), attrs


def _all_diagnostics(evaluation) -> list[tuple[str, dict]]:
    return ([(f"{t} (all)", r["full"].diagnostics) for t, r in evaluation.results.items()]
            + [(f"{t} without {h}", d) for t, h, d in evaluation.fold_diagnostics()])


def cmd_compare(args):
    from .io import check_output_path
    from .schema import write_dataset
    from .theory.compare import comparison_table

    check_output_path(args.out, args.overwrite)
    _, _, evaluation, attrs = _evaluate(args, args.theories)
    ds = evaluation.comparison()
    ds.attrs.update(attrs)
    write_dataset(ds, args.out, "comparison", args.overwrite)
    print(comparison_table(ds))
    print(f"saved {args.out}")
    _gate(_all_diagnostics(evaluation), args)


def cmd_predict(args):
    from .io import check_output_path
    from .theory.fit import TheoryFitter
    from .theory.predict import predict_architecture, write_prediction

    check_output_path(args.out, args.overwrite)
    options = _fit_options(args)
    contexts = (contexts_file_ids(args.contexts_file) if args.contexts_file
                else list(dict.fromkeys(args.context or [])))
    if contexts:
        return _predict_contexts(args, options, contexts)
    table = _table(args)
    if args.held_out not in table.model.values:
        raise PhantomError(f"{args.held_out!r} is neither in the sweep nor in the quantities")
    fit = TheoryFitter(args.theory, table, options).fit(held_out=args.held_out)
    ds = predict_architecture(fit, table, args.held_out, options.seed,
                              _provenance(args, table))
    write_prediction(ds, args.out, args.overwrite)
    print(f"{args.theory} prediction for {args.held_out} (fitted without its outcomes):")
    print(f"  eta_c = {float(ds.eta_c_arch_median):.4g}, 94% HDI "
          f"[{float(ds.eta_c_arch_hdi_low):.4g}, {float(ds.eta_c_arch_hdi_high):.4g}]"
          f"; 2 / lambda0 = {float(ds.anchor_eta_c_arch):.4g}")
    for c in ds.context.values:
        row = ds.sel(context=c)
        print(f"  {c:18s} {float(row.eta_c_median):.4g}  [{float(row.eta_c_hdi_low):.4g}, "
              f"{float(row.eta_c_hdi_high):.4g}]")
    print(f"  {fit.describe()}")
    print(f"prediction SHA-256 {ds.attrs['prediction_sha256']}")
    print(f"saved {args.out}")
    _gate([(fit.theory, fit.diagnostics)], args)


def _predict_contexts(args, options, contexts):
    """Predict held-out contexts (`phantom predict --context` or --contexts-file): fit
    on the table without the contexts' rows, then predict them on every fitted
    architecture."""
    import numpy as np

    from .theory.fit import TheoryFitter
    from .theory.predict import predict_contexts, write_prediction

    table = _table(args, contexts)
    fit = TheoryFitter(args.theory, table, options).fit()
    ds = predict_contexts(fit, table, contexts, options.seed, _provenance(args, table))
    write_prediction(ds, args.out, args.overwrite)
    print(f"{args.theory} prediction for held-out context(s) {', '.join(contexts)} (fitted "
          f"without their outcomes; every held-out context: {table.attrs['held_out_contexts']}):")
    print(f"  {'context':18s} {'model':16s} {'eta_c':>10s} {'94% HDI':>23s} {'2/lambda0':>10s}")
    for c in ds.context.values:
        for m in ds.model.values:
            cell = ds.sel(model=m, context=c)
            if not np.isfinite(float(cell.eta_c_median)):
                continue
            interval = f"[{float(cell.eta_c_hdi_low):.4g}, {float(cell.eta_c_hdi_high):.4g}]"
            print(f"  {c:18s} {m:16s} {float(cell.eta_c_median):10.4g} {interval:>23s} "
                  f"{float(cell.anchor_eta_c):10.4g}")
    print(f"  {fit.describe()}")
    print(f"prediction SHA-256 {ds.attrs['prediction_sha256']}")
    print(f"saved {args.out}")
    _gate([(fit.theory, fit.diagnostics)], args)


def _first_run_time(sweep, prediction, by_context) -> tuple[str, str]:
    """(time, what) of the earliest run of what the prediction is about (the held-out
    architecture, or the held-out contexts) that the sweep records; the sweep's own
    writing time where its record predates per-run times (a sweep.nc is rewritten as
    it grows, so that bound is weaker)."""
    import numpy as np

    from .sweep import run_values

    created = run_values(sweep, "created").astype(str)
    if by_context:
        rows = np.isin(sweep.run_context.values.astype(str),
                       list(map(str, prediction.context.values)))
    else:
        rows = sweep.run_model.values.astype(str) == str(prediction.attrs["held_out"])
    times = sorted(t for t in created[rows] if t)
    if times:
        return times[0], "its first run"
    return str(sweep.attrs.get("created")), "the sweep table's writing"


def cmd_score(args):
    import json

    from .sweep import open_sweep
    from .theory.predict import (
        calibration_table,
        check_commit,
        committed_before,
        context_score_table,
        open_prediction,
        prediction_kind,
        score,
    )
    from .theory.table import TableOptions, measured

    prediction = open_prediction(args.prediction)   # a mismatch is a failure, exit 2
    committed = check_commit(args.prediction, args.commit) if args.commit else None
    options = TableOptions(**json.loads(prediction.attrs["table_options_json"]))
    sweep = open_sweep(args.sweep)
    by_context = prediction_kind(prediction) == "context-prediction"
    if by_context:
        held_out = prediction.attrs["held_out_contexts"]
        if not set(map(str, prediction.context.values)) & set(map(str, sweep.context.values)):
            raise PhantomError(f"the sweep {args.sweep} has no runs of the held-out "
                               f"context(s) {held_out}")
    else:
        held_out = prediction.attrs["held_out"]
        if held_out not in sweep.model.values:
            raise PhantomError(f"the sweep {args.sweep} has no runs of {held_out}")
    if committed is not None:
        first, what = _first_run_time(sweep, prediction, by_context)
        if committed_before(committed["committed"], first) is False:
            raise PhantomError(
                f"commit {committed['commit'][:12]} ({committed['committed']}) is later than "
                f"{what} ({first}) in {args.sweep}: the prediction was not committed before "
                "its runs existed, so it is no pre-registration")
    eta_c, eta_max = measured(sweep, options.mode, options.optimizer)
    result = (score(prediction, eta_c) if by_context
              else score(prediction, eta_c.sel(model=held_out), eta_max.sel(model=held_out)))
    print(f"prediction SHA-256 {result['prediction_sha256']} (verified: the file matches "
          "the hash it records)")
    if committed is not None:
        print(f"pre-registered: the file is its content at commit {committed['commit'][:12]} "
              f"({committed['committed']}), before the sweep was written "
              f"({sweep.attrs.get('created')})")
    gate = "passed" if int(prediction.attrs.get("diagnostics_passed", 0)) else "FAILED"
    print(f"its fit ({prediction.attrs.get('sampler', '?')}) {gate} the diagnostics gate: "
          f"max r_hat {float(prediction.attrs.get('diagnostics_max_rhat', float('nan'))):.4f}, "
          f"min bulk ESS {float(prediction.attrs.get('diagnostics_min_ess_bulk', float('nan'))):.0f}, "
          f"{prediction.attrs.get('diagnostics_divergences', '?')} divergences")
    if by_context:
        print(context_score_table(result))
        return
    print(calibration_table([result]))
    if "measured_eta_max" in result:
        print(f"2 / lambda0 against the measured eta_max {result['measured_eta_max']:.4g}: "
              f"relative error {100 * result['anchor_relative_error_eta_max']:.1f}%")


def cmd_loao(args):
    import uuid

    from .io import atomic_folder, check_output_folder, write_manifest
    from .schema import write_dataset
    from .theory.compare import comparison_table
    from .theory.predict import calibration_table, score, scores_dataset, write_prediction
    from .theory.results import write_fit

    out = check_output_folder(args.out, overwrite=args.overwrite)
    # Every file this run writes carries its id; the folder appears whole, with a
    # manifest of its files, or not at all (a killed run leaves the old one).
    run_id = uuid.uuid4().hex
    table, options, evaluation, attrs = _evaluate(args, args.theories, {"loao_run_id": run_id})
    table = table.assign_attrs(loao_run_id=run_id)
    with atomic_folder(out, args.overwrite) as folder:
        for sub in ("predictions", "fits"):
            (folder / sub).mkdir()
        # Pre-registration: every prediction is on disk, hashed, before any is scored.
        for (theory, held_out), prediction in evaluation.predictions().items():
            write_prediction(prediction, folder / "predictions" / f"{theory}--{held_out}.nc")
        scores = [score(prediction, table.eta_c.sel(model=held_out),
                        table.eta_max.sel(model=held_out))
                  for (theory, held_out), prediction in evaluation.predictions().items()]
        write_dataset(table, folder / "table.nc", "theory-table")
        comparison = evaluation.comparison()
        comparison.attrs.update(attrs)
        write_dataset(comparison, folder / "comparison.nc", "comparison")
        scored = scores_dataset(scores)
        scored.attrs.update(attrs)
        write_dataset(scored, folder / "scores.nc", "scores")
        for fit in evaluation.fits():
            write_fit(fit, table, options, attrs, folder / "fits" / f"{fit.theory}.nc")
        write_manifest(folder, run_id, "loao")
    print(comparison_table(comparison))
    print()
    print(calibration_table(scores))
    print(f"saved {out}/ (table, comparison, scores, fits/, predictions/; run {run_id[:12]})")
    _gate(_all_diagnostics(evaluation), args)


def cmd_report(args):
    from .report import write_report

    path = write_report(args.results, args.output, args.overwrite)
    print(f"saved {path}")


def _fitting(p, theory: bool = True) -> None:
    from .options import add_option_arguments
    from .theory.fit import FitOptions
    from .theory.models import THEORIES
    from .theory.table import TableOptions

    p.add_argument("--fit-on", nargs="+", required=True, metavar="PATH",
                   help="the sweep (folder or sweep.nc) and the quantities file")
    add_option_arguments(p, TableOptions)
    p.add_argument("--held-out-contexts", nargs="+", default=[], metavar="ID",
                   help="contexts to keep out of every fit, besides those the sweep's spec "
                        "records (crossed.held_out); recorded in the outputs")
    if theory:
        p.add_argument("--theory", default="hier", choices=sorted(THEORIES))
    add_option_arguments(p, FitOptions)
    p.add_argument("--allow-unconverged", action="store_true",
                   help="accept fits that fail the diagnostics gate (recorded)")


def add_commands(commands) -> None:
    """Add the pure commands to a sub-command set of a ``Parser``."""
    from .theory.models import DEFAULT_THEORIES, THEORIES

    p = commands.add_parser("show", help="print a run's outcome, flip, jumps and Phi")
    p.add_argument("path")
    p.set_defaults(func=cmd_show)

    p = commands.add_parser("plot", help="draw a run's trajectory to a PNG")
    p.add_argument("path")
    add_output_arguments(p, help="output image (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot)

    p = commands.add_parser("sweep-show", help="print a sweep's eta_c table")
    p.add_argument("path", help="sweep folder or its sweep.nc")
    from .options import add_option_arguments
    from .sweep import BandOptions

    add_option_arguments(p, BandOptions)
    p.set_defaults(func=cmd_sweep_show)

    p = commands.add_parser("plot-sweep", help="draw outcome against lr for every group")
    p.add_argument("path", help="sweep folder or its sweep.nc")
    add_output_arguments(p, help="output image (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot_sweep)

    p = commands.add_parser("fit", help="fit one theory model to a sweep and its quantities")
    _fitting(p)
    p.add_argument("--out", required=True, help="InferenceData netCDF")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_fit)

    for name, func, text, out in (
            ("compare", cmd_compare, "PSIS-LOO and LOAO ELPD of the theories",
             "comparison .nc"),
            ("loao", cmd_loao, "hold out every architecture in turn: predictions, scores and "
                               "comparison", "results folder")):
        p = commands.add_parser(name, help=text)
        _fitting(p, theory=False)
        p.add_argument("--theories", nargs="+", default=list(DEFAULT_THEORIES),
                       choices=sorted(THEORIES))
        p.add_argument("--workers", type=int, default=2, help="parallel fitting processes")
        p.add_argument("--out", required=True, help=out)
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing output (a results folder as a whole)")
        p.set_defaults(func=func)

    p = commands.add_parser("predict", help="blind prediction of a held-out architecture, "
                                            "or of held-out contexts")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--held-out", help="the architecture to predict")
    target.add_argument("--context", nargs="+", metavar="ID",
                        help="contexts to hold out of the fit and predict on every fitted "
                             "architecture (their effect drawn from the context population)")
    target.add_argument("--contexts-file", metavar="FILE",
                        help="a TOML file of [[context]] tables (as data/contexts/pool.toml) "
                             "whose ids are the contexts to hold out and predict")
    _fitting(p)
    p.add_argument("--out", required=True, help="prediction .nc (hashed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("score", help="score a prediction against a sweep of its model "
                                          "or of its held-out contexts")
    p.add_argument("prediction")
    p.add_argument("--sweep", required=True, help="sweep folder or sweep.nc with the held-out runs")
    p.add_argument("--commit", metavar="REV", default=None,
                   help="check that the prediction is its content at this git commit, made "
                        "before the sweep (the pre-registration)")
    p.set_defaults(func=cmd_score)

    p = commands.add_parser("report", help="one self-contained HTML report of a results folder")
    p.add_argument("results", help="folder holding sweeps, quantities and theory results")
    add_output_arguments(p, help="the HTML file")
    p.set_defaults(func=cmd_report)


def build_parser() -> Parser:
    """The parser of the pure commands alone (``python -m phantom_theory.cli``)."""
    parser = Parser(prog="phantom", description="phantom-theory's pure commands")
    add_commands(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    return parser


def run_cli(build, argv=None) -> int:
    """Parse ``argv`` with the parser ``build()`` makes and run its command; a
    PhantomError is one line on stderr and exit status 2."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # transformers announces deprecations our users cannot act on; ours still show
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        args = build().parse_args(argv)
        args.func(args)
    except PhantomError as error:
        print(f"phantom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phantom: interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m phantom_theory.cli``."""
    return run_cli(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Parser", "add_commands", "add_output_arguments", "main", "run_cli", "save_plot"]
