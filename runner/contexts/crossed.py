"""The crossed context set (THEORY.md sections 8 and 10): the same near-synonym
contexts on every model, oriented per model, their base margins spread over a
range, and a few held out of every fit.

``phantom contexts select --crossed MODEL...`` builds it in three steps:

1. the token filter: the pool pairs whose two words are each one token after
   their sentence in every model's tokenizer (the sentence's own tokens a prefix
   of sentence + word), from the tokenizers alone;
2. the screen: each model's base ranks, margin, probabilities and S_ck on those
   pairs, one model loaded at a time;
3. the choice (``select_crossed``): each pair is oriented per model, its target
   the word that model ranks lower, so that m0 < 0 on every model (the
   orientation is a covariate, never a reason to drop a pair); the pairs with
   |m0| in [min_margin, max_margin] and the preferred word within max_rank on
   every model are the candidates; of those, the n whose log g (g = the
   geometric mean of |m0| over the models) lie closest to n points evenly
   spaced between the candidates' smallest and largest log g (one candidate per
   point, the assignment of least total distance); and of the n, ordered by g,
   the n_held_out at positions floor((i + 1/2) n / n_held_out) are held out:
   run by sweeps, never fitted.

The set is written to data/contexts/selected/crossed.toml. Its contexts are
named ``correct~competitor`` in the pool's order and carry their orientation per
model, which ``tokenize_context`` applies for the model at hand.
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from phantom_theory.errors import PhantomError
from phantom_theory.io import write_text

from .pool import (
    SELECTED,
    Context,
    data_dir,
    load_contexts,
    pool_paths,
    read_contexts,
    word_problem,
)

CROSSED = "crossed"
ROLES = ("correct", "competitor")
SEPARATOR = "~"
EXAMPLES = 3   # split words named per model in a too-few error


def crossed_path() -> Path:
    """The crossed set's file: data/contexts/selected/crossed.toml."""
    return data_dir() / "contexts" / SELECTED / f"{CROSSED}.toml"


def crossed_id(context: Context) -> str:
    """The crossed id of a pool context: its words in the pool's order joined by
    '~' (either may be the target, per model)."""
    return f"{context.correct}{SEPARATOR}{context.competitor}"


@dataclass(frozen=True)
class CrossedOptions:
    """How ``select_crossed`` chooses (see the module docstring): n pairs in all, of
    which n_held_out are held out of every fit; the window on |m0| and the rank of
    the preferred word apply on every model."""

    n: int = field(default=15, metadata={"help": "pairs in the crossed set, held out included"})
    n_held_out: int = field(default=3, metadata={
        "help": "of those, how many are held out of every fit (--crossed only)"})
    min_margin: float = field(default=0.3, metadata={"help": "smallest |m0| on any model"})
    max_margin: float = field(default=6.0, metadata={"help": "largest |m0| on any model"})
    max_rank: int = field(default=100, metadata={
        "help": "worst rank of the preferred word on any model"})

    def __post_init__(self):
        if self.n < 1:
            raise PhantomError(f"the number of contexts to select must be at least 1, not "
                               f"{self.n}")
        if not 0 <= self.n_held_out < self.n:
            raise PhantomError(f"n_held_out must be at least 0 and below n = {self.n} (some "
                               f"contexts must be left to fit), not {self.n_held_out}")
        if not 0 < self.min_margin < self.max_margin:
            raise PhantomError(f"the margin window must satisfy 0 < min_margin < max_margin, "
                               f"not [{self.min_margin}, {self.max_margin}]")
        if self.max_rank < 1:
            raise PhantomError(f"max_rank must be at least 1, not {self.max_rank}")


# -- step 1: the token filter ----------------------------------------------------------

def load_tokenizer(model: str):
    """The tokenizer of ``model`` alone (a registry model's from its converted cache,
    without loading its weights)."""
    from ..models import resolve

    source, location = resolve(model)
    if source == "builtin":
        from ..models.tiny import build_tiny

        return build_tiny(model)[1]
    if source == "registry":
        from ..models.gguf import cached_metadata

        cached_metadata(model)   # a clear error when it was never pulled
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location)
    except OSError as error:
        raise PhantomError(f"cannot load the tokenizer of {model!r} from {location!r}: "
                           f"{str(error).splitlines()[0]}") from None


def token_problems(tokenizer, contexts: list[Context]) -> dict[str, str]:
    """{pool id: why} for the contexts whose words are not both usable single
    tokens with ``tokenizer`` (``word_problem``), or map to one token."""
    problems = {}
    for context in contexts:
        why = [p for p in (word_problem(tokenizer, context.sentence, getattr(context, role))
                           for role in ROLES) if p]
        if not why:
            ids = [tokenizer(f"{context.sentence} {getattr(context, role)}",
                             add_special_tokens=False)["input_ids"][-1] for role in ROLES]
            if ids[0] == ids[1]:
                why = [f"{context.correct!r} and {context.competitor!r} are one token"]
        if why:
            problems[context.id] = " and ".join(why)
    return problems


# -- step 3: the choice ---------------------------------------------------------------

def _too_few(found: int, options: CrossedOptions, stage: str, problems: dict,
             dropped: dict | None = None) -> PhantomError:
    models = list(problems)
    parts = []
    for model in models:
        split = problems[model]
        examples = ", ".join(list(split.values())[:EXAMPLES])
        part = (f"{model} splits {len(split)} pair(s)" + (f" ({examples}, ...)" if split else ""))
        if dropped is not None:
            window, rank = dropped[model]
            part += (f", has |m0| outside [{options.min_margin:g}, {options.max_margin:g}] on "
                     f"{window} and the preferred word past rank {options.max_rank} on {rank}")
        parts.append(part)
    return PhantomError(
        f"only {found} pool pair(s) {stage} for the crossed set over {', '.join(models)}, "
        f"fewer than the {options.n} asked for: {'; '.join(parts)}; lower --n, widen "
        "--min-margin/--max-margin or --max-rank, or add pairs to data/contexts/pool.toml")


def check_token_filter(contexts: list[Context], problems: dict[str, dict[str, str]],
                       options: CrossedOptions) -> list[Context]:
    """The contexts single-token in every model's tokenizer (``problems``: per model,
    ``token_problems``); fewer than n is an error that says which tokenizer split
    which words."""
    kept = [c for c in contexts if not any(c.id in p for p in problems.values())]
    if len(kept) < options.n:
        raise _too_few(len(kept), options, "are single tokens in every tokenizer", problems)
    return kept


def select_crossed(screens: dict, contexts: dict[str, Context],
                   options: CrossedOptions = CrossedOptions(),
                   problems: dict[str, dict[str, str]] | None = None) -> list[dict]:
    """The crossed set's rows, in order of g (the geometric mean of |m0| over the
    models), from each model's screening (``screen_contexts``; a pair missing from
    one model's screening is no candidate). Each row holds the pool context, its
    crossed id, g, whether it is held out, and per model the oriented words, ranks,
    margin, probabilities and S_ck (``orient_row``). Fewer than n candidates is an
    error that says why, per model."""
    from scipy.optimize import linear_sum_assignment

    from .selection import orient_row, screened_rows

    models = list(screens)
    rows_of = {model: screened_rows(ds) for model, ds in screens.items()}
    # what the tokenizers split, and what the screening itself found unusable
    problems = {model: {**(problems or {}).get(model, {}),
                        **{cid: f"{cid!r} is not single tokens" for cid, r in rows.items()
                           if cid in contexts and not r["single_token"]}}
                for model, rows in rows_of.items()}
    dropped = {model: [0, 0] for model in models}
    candidates = []
    for cid in sorted(contexts):
        if not all(cid in rows and rows[cid]["single_token"] for rows in rows_of.values()):
            continue
        oriented, fits = {}, True
        for model in models:
            r = rows_of[model][cid]
            if not in_window(r, options):
                dropped[model][0] += 1
                fits = False
                continue
            oriented[model] = orient_row(r, contexts[cid])
            if oriented[model]["rank_competitor"] > options.max_rank:
                dropped[model][1] += 1
                fits = False
        if fits:
            log_g = float(np.mean([math.log(abs(float(rows_of[m][cid]["margin"])))
                                   for m in models]))
            candidates.append((log_g, cid, oriented))
    if len(candidates) < options.n:
        raise _too_few(len(candidates), options, "qualify", problems, dropped)
    candidates.sort(key=lambda c: (c[0], c[1]))
    log_g = np.array([c[0] for c in candidates])
    targets = (np.linspace(log_g[0], log_g[-1], options.n) if options.n > 1
               else np.array([np.median(log_g)]))
    chosen, _ = linear_sum_assignment(np.abs(log_g[:, None] - targets[None, :]))
    chosen = sorted(chosen)
    held = held_out_positions(options.n, options.n_held_out)
    rows = []
    for position, index in enumerate(chosen):
        value, cid, oriented = candidates[index]
        context = contexts[cid]
        rows.append({"id": crossed_id(context), "pool_id": cid, "sentence": context.sentence,
                     "correct": context.correct, "competitor": context.competitor,
                     "held_out": position in held, "margin_geomean": round(math.exp(value), 4),
                     "models": oriented})
    return rows


def in_window(r: dict, options: CrossedOptions) -> bool:
    """Whether a screened row can be oriented with |m0| in [min_margin, max_margin]."""
    from .selection import orientable

    return orientable(r) and options.min_margin <= abs(float(r["margin"])) <= options.max_margin


def passes(r: dict, context: Context, options: CrossedOptions) -> bool:
    """Whether a screened row passes one model's part of the rule: single tokens, |m0|
    in the window, the preferred word within max_rank."""
    from .selection import orient_row

    return in_window(r, options) and orient_row(r, context)["rank_competitor"] <= options.max_rank


def held_out_positions(n: int, n_held_out: int) -> set[int]:
    """The positions (0-based, in order of g) of the held-out pairs: floor((i + 1/2)
    n / n_held_out) for i < n_held_out, one in the middle of each of n_held_out
    equal slices, so that the held-out pairs span the margins the fit sees."""
    return {int((i + 0.5) * n / n_held_out) for i in range(n_held_out)}


# -- the file --------------------------------------------------------------------------

def _toml_value(value):
    from .selection import _toml_value as value_of

    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_of(v) for v in value) + "]"
    return value_of(value)


def _key(name: str) -> str:
    return f'"{name}"'


def write_crossed(rows: list[dict], infos: dict, options: CrossedOptions, path,
                  counts: dict, overwrite: bool = False) -> Path:
    """Write the crossed set as TOML: a [selection] table of how it was made (the
    options, the counts, the held-out ids), a [model.NAME] table per model (its
    revision, GGUF SHA-256, how many pool pairs its tokenizer keeps), then one
    [[context]] per pair with a [context.models.NAME] table per model."""
    from phantom_theory.provenance import git_commit

    if not rows:
        raise PhantomError(f"the crossed set is empty; nothing was written to {path}")
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    lines = ["# The crossed context set, written by `phantom contexts select --crossed`: the same",
             "# pairs on every model; per model, the target (correct) is the word that model",
             "# ranks lower (`reversed` marks the pool's pair swapped). The held-out pairs are",
             "# run by sweeps and never fitted. Do not edit by hand: re-select.",
             "", "[selection]", f"kind = {_toml_value(CROSSED)}",
             f"models = {_toml_value(list(infos))}",
             f"created = {_toml_value(created)}", f"git_commit = {_toml_value(git_commit())}",
             *(f"{k} = {_toml_value(v)}" for k, v in counts.items()),
             *(f"{k} = {_toml_value(v)}" for k, v in asdict(options).items()),
             f"held_out = {_toml_value([r['id'] for r in rows if r['held_out']])}",
             'rule = "n pairs closest in log g (g = geometric mean of |m0| over the models) to '
             'n points evenly spaced over the candidates\' log g, by the assignment of least '
             'total distance"',
             'held_out_rule = "in order of g, the pairs at positions floor((i + 1/2) n / '
             'n_held_out), i = 0 .. n_held_out - 1"']
    for model, info in infos.items():
        lines += ["", f"[model.{_key(model)}]",
                  *(f"{k} = {_toml_value(v)}" for k, v in info.items())]
    for row in rows:
        lines += ["", "[[context]]",
                  *(f"{k} = {_toml_value(v)}" for k, v in row.items() if k != "models")]
        for model, oriented in row["models"].items():
            lines += [f"[context.models.{_key(model)}]",
                      *(f"{k} = {_toml_value(v)}" for k, v in oriented.items())]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, "\n".join(lines) + "\n", overwrite)


def model_record(info) -> dict:
    """What the crossed file records of a model: its revision, GGUF SHA-256 (registry
    models), source, architecture and size."""
    return {"revision": info.revision, "gguf_sha256": info.extra.get("gguf_sha256", ""),
            "source": info.source, "architecture": info.architecture,
            "n_params": int(info.n_params)}


@dataclass(frozen=True)
class CrossedSet:
    """A crossed set read back: its models, its context ids in order of g, the
    held-out ids and the orientation per model ({model: {id: reversed}})."""

    path: Path
    models: tuple[str, ...]
    contexts: tuple[str, ...]
    held_out: tuple[str, ...]
    orientation: dict

    def fitted(self) -> tuple[str, ...]:
        """The ids a fit may use: all but the held-out ones."""
        return tuple(c for c in self.contexts if c not in self.held_out)

    def check_models(self, models) -> None:
        """An error naming the models the set does not cover, and the fix."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise PhantomError(
                f"the crossed set {self.path} covers {', '.join(self.models)}, not "
                f"{', '.join(missing)}; re-select it with `phantom contexts select --crossed "
                f"{' '.join(dict.fromkeys([*self.models, *missing]))} --overwrite`")

    def record(self, models) -> dict:
        """What a sweep spec records of the set for ``models``: the file, the held-out
        ids and each model's orientation, so that a re-selected set shows as a changed
        spec instead of changing the runs silently."""
        self.check_models(models)
        return {"file": self.path.name, "held_out": list(self.held_out),
                "orientation": {m: dict(self.orientation[m]) for m in models}}


def read_crossed(path=None) -> CrossedSet:
    """The crossed set of ``path`` (default data/contexts/selected/crossed.toml); a
    missing or broken file is an error naming it and the fix."""
    import tomllib

    path = Path(path) if path is not None else crossed_path()
    fix = "build it with `phantom contexts select --crossed MODEL...`"
    if not path.is_file():
        raise PhantomError(f"there is no crossed context set ({path} is missing); {fix}")
    try:
        contexts = read_contexts(path)
        selection = tomllib.loads(path.read_text())["selection"]
        models = tuple(selection["models"])
        held_out = tuple(selection["held_out"])
        orientation = {m: {c.id: dict(c.orientation)[m] for c in contexts} for m in models}
    except (PhantomError, KeyError, TypeError) as error:
        raise PhantomError(f"the crossed set {path} cannot be used ({error}); re-{fix} "
                           "--overwrite") from None
    unknown = [c for c in held_out if c not in {c.id for c in contexts}]
    if unknown:
        raise PhantomError(f"the crossed set {path} holds out {unknown}, which it does not "
                           f"contain; re-{fix} --overwrite")
    return CrossedSet(path, models, tuple(c.id for c in contexts), held_out, orientation)


def held_out_contexts(path=None) -> tuple[str, ...]:
    """The ids of the crossed set's held-out contexts: sweeps run them, fits must
    not use them."""
    return read_crossed(path).held_out


# -- the whole selection ----------------------------------------------------------------

def select_crossed_set(models: list[str], options: CrossedOptions, path, device: str = "cpu",
                       overwrite: bool = False, progress: bool = False) -> tuple[list[dict], str]:
    """Filter, screen and choose the crossed set over ``models`` and write it to
    ``path``: (rows, a printable report). Nothing is written when too few pairs
    qualify."""
    from ..models import load_model
    from .selection import screen_contexts, screened_rows

    models = list(dict.fromkeys(models))
    pool = load_contexts(pool_paths())
    contexts = list(pool.values())
    problems = {}
    for model in models:
        problems[model] = token_problems(load_tokenizer(model), contexts)
        if progress:
            print(f"{model}: {len(contexts) - len(problems[model])} of {len(contexts)} pool "
                  "pairs are single tokens", flush=True)
    kept = check_token_filter(contexts, problems, options)
    screens, infos, remaining = {}, {}, kept
    for model in models:
        # A pair outside the window on one model is out whatever the others say: each
        # model screens only the pairs every model before it left in.
        loaded = load_model(model, device=device)
        screens[model] = screen_contexts(loaded, remaining)
        infos[model] = {**model_record(loaded.info),
                        "single_token": len(contexts) - len(problems[model])}
        del loaded
        gc.collect()
        remaining = [c for c in remaining
                     if passes(screened_rows(screens[model])[c.id], c, options)]
        if progress:
            print(f"{model}: {len(remaining)} pairs left after its window and rank", flush=True)
        if len(remaining) < options.n:
            break   # select_crossed says why, with the counts so far
    try:
        rows = select_crossed(screens, {c.id: c for c in kept}, options, problems)
    except PhantomError as error:
        unscreened = [m for m in models if m not in screens]
        if unscreened:
            raise PhantomError(f"{error} ({', '.join(unscreened)} not screened: too few were "
                               "left)") from None
        raise
    counts = {"pool": len(contexts), "single_token_in_all": len(kept)}
    write_crossed(rows, infos, options, path, counts, overwrite)
    return rows, crossed_report(rows, infos, counts, path)


def crossed_report(rows: list[dict], infos: dict, counts: dict, path) -> str:
    """The crossed set as a text table: per pair g, whether held out, and per model
    the target and |m0|."""
    models = list(infos)
    lines = [f"pool: {counts['pool']} pairs; single tokens: "
             + ", ".join(f"{m} {infos[m]['single_token']}" for m in models)
             + f"; in every tokenizer: {counts['single_token_in_all']}",
             f"{'id':24s} {'g':>6s} {'held':>4s} " + " ".join(
                 f"{m[:18]:>18s}" for m in models)]
    for row in rows:
        cells = [f"{row['models'][m]['correct'][:11]:>11s} {-row['models'][m]['margin']:6.2f}"
                 for m in models]
        lines.append(f"{row['id']:24s} {row['margin_geomean']:6.2f} "
                     f"{'yes' if row['held_out'] else '':>4s} " + " ".join(cells))
    lines.append(f"saved {path} ({len(rows)} pairs, "
                 f"{sum(r['held_out'] for r in rows)} held out; cells: target and |m0|)")
    return "\n".join(lines)
