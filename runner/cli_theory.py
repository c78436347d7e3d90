"""The ``phantom`` commands for quantities and theory models: quantities, fit,
compare, predict, score, loao and report."""

from __future__ import annotations

from pathlib import Path

from phantom_theory.errors import PhantomError


def _table(args):
    from phantom_theory.quantities import open_quantities
    from phantom_theory.sweep import open_sweep
    from phantom_theory.theory.table import TableOptions, theory_table

    if len(args.fit_on) != 2:
        raise PhantomError("--fit-on takes two paths: the sweep (folder or sweep.nc) and the "
                           "quantities file")
    sweep_path, quantities_path = args.fit_on
    options = TableOptions(mode=args.mode, optimizer=args.optimizer, quantity=args.quantity)
    return theory_table(open_quantities(quantities_path), open_sweep(sweep_path), options)


def _fit_options(args):
    from phantom_theory.theory.fit import FitOptions

    return FitOptions(draws=args.draws, tune=args.tune, chains=args.chains,
                      target_accept=args.target_accept, seed=args.seed, sampler=args.sampler)


def _provenance(args, extra=None) -> dict:
    from phantom_theory.provenance import provenance

    attrs = {**provenance("pymc", "arviz", "nutpie", "pytensor"),
             "fit_on": " ".join(map(str, args.fit_on)),
             "allow_unconverged": int(args.allow_unconverged)}
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


def cmd_quantities(args):
    from phantom_theory.quantities import write_quantities

    from .contexts import load_contexts
    from .quantities import QuantityOptions, measure_quantities
    from .sweep import load_spec

    models, contexts = list(args.models), args.contexts
    if args.spec:
        spec = load_spec(args.spec)
        models = models or list(spec.models)
        # each model's own contexts (a real model's selection), unless named
        contexts = contexts or {m: list(spec.contexts_of(m)) for m in models}
    if not models:
        raise PhantomError("name at least one model, or a sweep spec with --spec")
    contexts = contexts or list(load_contexts())
    from phantom_theory.io import check_output_path

    check_output_path(args.out, args.overwrite)
    options = QuantityOptions(modes=tuple(args.modes), optimizers=tuple(args.optimizers),
                              hessian_method=args.hessian_method, hessian_tol=args.hessian_tol,
                              hessian_max_iter=args.hessian_max_iter, seed=args.seed, tie=args.tie)
    ds = measure_quantities(models, contexts, options, args.dtype, args.device,
                            progress=not args.quiet)
    write_quantities(ds, args.out, args.overwrite)
    print(ds[["m0", "b_c", "b_k", "leak_fraction", "distinguishability"]].to_dataframe()
          .round(4).to_string())
    print(ds[["G0", "lambda0"]].to_dataframe().round(4).to_string())
    print(f"saved {args.out}")


def cmd_fit(args):
    from phantom_theory.io import check_output_path
    from phantom_theory.theory.fit import TheoryFitter
    from phantom_theory.theory.results import write_fit
    from phantom_theory.theory.summaries import summary_text

    check_output_path(args.out, args.overwrite)
    table, options = _table(args), _fit_options(args)
    fit = TheoryFitter(args.theory, table, options).fit()
    write_fit(fit, table, options, _provenance(args), args.out)
    print(summary_text(fit, table))
    print(f"saved {args.out}")
    _gate([(fit.theory, fit.diagnostics)], args)


def _evaluate(args, theories):
    from phantom_theory.theory.compare import evaluate

    table, options = _table(args), _fit_options(args)
    return table, options, evaluate(table, theories, options, workers=args.workers,
                                    attrs=_provenance(args))


def cmd_compare(args):
    from phantom_theory.theory.compare import comparison_table
    from phantom_theory.theory.results import COMPARISON_SCHEMA, write_dataset

    _, _, evaluation = _evaluate(args, args.theories)
    ds = evaluation.comparison()
    ds.attrs.update(_provenance(args))
    write_dataset(ds, args.out, COMPARISON_SCHEMA)
    print(comparison_table(ds))
    print(f"saved {args.out}")
    _gate([(f"{t} (all)", r["full"].diagnostics) for t, r in evaluation.results.items()]
          + [(f"{t} without {h}", d) for t, h, d in evaluation.fold_diagnostics()], args)


def cmd_predict(args):
    from phantom_theory.io import check_output_path
    from phantom_theory.theory.fit import TheoryFitter
    from phantom_theory.theory.predict import predict_architecture, write_prediction

    check_output_path(args.out, args.overwrite)
    table, options = _table(args), _fit_options(args)
    if args.held_out not in table.model.values:
        raise PhantomError(f"{args.held_out!r} is neither in the sweep nor in the quantities")
    fit = TheoryFitter(args.theory, table, options).fit(held_out=args.held_out)
    ds = predict_architecture(fit, table, args.held_out, args.seed, _provenance(args))
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


def cmd_score(args):
    import json

    from phantom_theory.sweep import open_sweep
    from phantom_theory.theory.predict import calibration_table, open_prediction, score
    from phantom_theory.theory.table import TableOptions, measured

    prediction = open_prediction(args.prediction)
    options = TableOptions(**json.loads(prediction.attrs["table_options_json"]))
    sweep = open_sweep(args.sweep)
    held_out = prediction.attrs["held_out"]
    if held_out not in sweep.model.values:
        raise PhantomError(f"the sweep {args.sweep} has no runs of {held_out}")
    eta_c, eta_max = measured(sweep, options.mode, options.optimizer)
    result = score(prediction, eta_c.sel(model=held_out), eta_max.sel(model=held_out))
    print(f"prediction SHA-256 {result['prediction_sha256']} (verified)")
    print(calibration_table([result]))
    if "measured_eta_max" in result:
        print(f"2 / lambda0 against the measured eta_max {result['measured_eta_max']:.4g}: "
              f"relative error {100 * result['anchor_relative_error_eta_max']:.1f}%")


def cmd_loao(args):
    from phantom_theory.theory.compare import comparison_table
    from phantom_theory.theory.predict import (
        calibration_table,
        score,
        scores_dataset,
        write_prediction,
    )
    from phantom_theory.theory.results import (
        COMPARISON_SCHEMA,
        SCORES_SCHEMA,
        write_dataset,
        write_fit,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions").mkdir(exist_ok=True)
    (out / "fits").mkdir(exist_ok=True)
    table, options, evaluation = _evaluate(args, args.theories)
    attrs = _provenance(args)
    # Pre-registration: every prediction is on disk, hashed, before any is scored.
    for (theory, held_out), prediction in evaluation.predictions().items():
        write_prediction(prediction, out / "predictions" / f"{theory}--{held_out}.nc",
                         overwrite=True)
    scores = [score(prediction, table.eta_c.sel(model=held_out), table.eta_max.sel(model=held_out))
              for (theory, held_out), prediction in evaluation.predictions().items()]
    write_dataset(table, out / "table.nc", table.attrs["phantom_schema"])
    comparison = evaluation.comparison()
    comparison.attrs.update(attrs)
    write_dataset(comparison, out / "comparison.nc", COMPARISON_SCHEMA)
    scored = scores_dataset(scores)
    scored.attrs.update(attrs)
    write_dataset(scored, out / "scores.nc", SCORES_SCHEMA)
    for fit in evaluation.fits():
        write_fit(fit, table, options, attrs, out / "fits" / f"{fit.theory}.nc")
    print(comparison_table(comparison))
    print()
    print(calibration_table(scores))
    print(f"saved {out}/ (table, comparison, scores, fits/, predictions/)")
    _gate([(f"{t} (all)", r["full"].diagnostics) for t, r in evaluation.results.items()]
          + [(f"{t} without {h}", d) for t, h, d in evaluation.fold_diagnostics()], args)


def cmd_report(args):
    from phantom_theory.report import write_report

    path = write_report(args.results, args.output, args.overwrite)
    print(f"saved {path}")


def add_theory_commands(commands) -> None:
    from phantom_theory.theory.compare import DEFAULT_THEORIES
    from phantom_theory.theory.theories import THEORIES

    from .cli import add_output_arguments

    p = commands.add_parser("quantities", help="measure m0, G0, lambda0, b and more at init")
    p.add_argument("models", nargs="*", help="model names (or take them from --spec)")
    p.add_argument("--contexts", nargs="*", help="context ids (default: the spec's, or all)")
    p.add_argument("--spec", help="take models and contexts from this sweep spec")
    p.add_argument("--modes", nargs="+", default=["full", "lora"])
    p.add_argument("--optimizers", nargs="+", default=["sgd", "adamw"])
    p.add_argument("--tie", default="auto", help="for registry models stored untied")
    p.add_argument("--hessian-method", default="auto", help="auto, lanczos or power")
    p.add_argument("--hessian-tol", type=float, default=1e-4,
                   help="relative tolerance of lambda0 (default 1e-4)")
    p.add_argument("--hessian-max-iter", type=int, default=200,
                   help="most Hessian-vector products of power iteration (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_quantities)

    def fitting(p, theory=True):
        p.add_argument("--fit-on", nargs="+", required=True, metavar="PATH",
                       help="the sweep (folder or sweep.nc) and the quantities file")
        p.add_argument("--mode", default="full", help="which runs' eta_c to model")
        p.add_argument("--optimizer", default="sgd")
        p.add_argument("--quantity", default="nu_c", help="nu_c (default) or c_sharp")
        if theory:
            p.add_argument("--theory", default="hier", choices=sorted(THEORIES))
        p.add_argument("--draws", type=int, default=1000)
        p.add_argument("--tune", type=int, default=1500)
        p.add_argument("--chains", type=int, default=4)
        p.add_argument("--target-accept", type=float, default=0.99)
        p.add_argument("--sampler", default="auto", help="auto (nutpie if installed), nutpie, pymc")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--allow-unconverged", action="store_true",
                       help="accept fits that fail the diagnostics gate (recorded)")

    p = commands.add_parser("fit", help="fit one theory model to a sweep and its quantities")
    fitting(p)
    p.add_argument("--out", required=True, help="InferenceData netCDF")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_fit)

    for name, func, text in (("compare", cmd_compare, "PSIS-LOO and LOAO ELPD of the theories"),
                             ("loao", cmd_loao, "hold out every architecture in turn: "
                                                "predictions, scores and comparison")):
        p = commands.add_parser(name, help=text)
        fitting(p, theory=False)
        p.add_argument("--theories", nargs="+", default=list(DEFAULT_THEORIES),
                       choices=sorted(THEORIES))
        p.add_argument("--workers", type=int, default=2, help="parallel fitting processes")
        p.add_argument("--out", required=True,
                       help="comparison .nc (compare) or results folder (loao)")
        p.set_defaults(func=func)

    p = commands.add_parser("predict", help="blind prediction of a held-out architecture")
    p.add_argument("--held-out", required=True, help="the architecture to predict")
    fitting(p)
    p.add_argument("--out", required=True, help="prediction .nc (hashed)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("score", help="score a prediction against a sweep of its model")
    p.add_argument("prediction")
    p.add_argument("--sweep", required=True, help="sweep folder or sweep.nc with the held-out runs")
    p.set_defaults(func=cmd_score)

    p = commands.add_parser("report", help="one self-contained HTML report of a results folder")
    p.add_argument("results", help="folder holding sweeps, quantities and theory results")
    add_output_arguments(p, help="the HTML file")
    p.set_defaults(func=cmd_report)
