"""Screening contexts against a base model: are both words single tokens, which
one does the base model prefer, and how close are their readout rows."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from phantom_theory import order_parameter as op
from phantom_theory.errors import PhantomError
from phantom_theory.io import write_text

from ..models import LoadedModel, last_logits, readout_matrix
from .pool import Context, describe_tokens, model_input_ids, word_pieces


def screen_contexts(loaded: LoadedModel, contexts: list[Context]) -> xr.Dataset:
    """One row per context: token checks, base ranks and margin, S_ck (readout)."""
    tokenizer, model = loaded.tokenizer, loaded.model
    U = readout_matrix(model).detach().float()
    device = U.device
    rows = []
    for context in contexts:
        split = {role: word_pieces(tokenizer, context.sentence, getattr(context, role))
                 for role in ("correct", "competitor")}
        pieces = {role: tokens for role, (tokens, _) in split.items()}
        row = {"id": context.id, "correct": context.correct, "competitor": context.competitor,
               "correct_tokens": describe_tokens(tokenizer, pieces["correct"]),
               "competitor_tokens": describe_tokens(tokenizer, pieces["competitor"]),
               "in_vocabulary": not any(tokenizer.unk_token_id is not None
                                        and tokenizer.unk_token_id in p for p in pieces.values())}
        # A word the tokenizer maps to its unknown token is no usable single token.
        # A word merged into the sentence's last token is none either: the sentence's
        # tokens would no longer be the model's input.
        row["single_token"] = row["in_vocabulary"] and all(
            len(tokens) == 1 and prefix for tokens, prefix in split.values())
        row.update(rank_correct=-1, rank_competitor=-1, margin=np.nan, overlap_ck=np.nan,
                   p_correct=np.nan, p_competitor=np.nan)
        if row["single_token"] and pieces["correct"] != pieces["competitor"]:
            c, k = pieces["correct"][0], pieces["competitor"][0]
            ids = torch.tensor([model_input_ids(tokenizer, context.sentence)], device=device)
            with torch.no_grad():
                z = last_logits(model, ids)[0].double()
            p = z.softmax(-1)
            s_c, _ = op.pair_overlaps(U[[c, k]], 0, 1)
            row.update(rank_correct=int((z > z[c]).sum()) + 1,
                       rank_competitor=int((z > z[k]).sum()) + 1,
                       margin=float(z[c] - z[k]), overlap_ck=float(s_c[1]),
                       p_correct=float(p[c]), p_competitor=float(p[k]))
        rows.append(row)
    if not rows:
        raise PhantomError("no contexts to screen")
    ds = xr.Dataset(
        {name: ("context", np.array([r[name] for r in rows],
                                    dtype=object if isinstance(rows[0][name], str) else None))
         for name in rows[0] if name != "id"},
        coords={"context": [r["id"] for r in rows]},
        attrs={"model": loaded.info.name, "model_revision": loaded.info.revision},
    )
    ds["competitor_ahead"] = ds.margin < 0
    return ds


def screen_table(ds: xr.Dataset) -> str:
    """The screening as a text table."""
    header = (f"{'context':18s} {'correct':>10s} {'competitor':>11s} {'1-token':>7s} "
              f"{'rank c':>6s} {'rank k':>6s} {'margin':>7s} {'k ahead':>7s} {'S_ck':>6s}")
    lines = [f"model {ds.attrs['model']} ({ds.attrs['model_revision']})", header]
    for i, cid in enumerate(ds.context.values):
        r = {name: ds[name].values[i] for name in ds.data_vars}
        if not r["in_vocabulary"]:
            lines.append(f"{cid:18s} {r['correct']:>10s} {r['competitor']:>11s} {'no':>7s}  "
                         f"not in the vocabulary (a word maps to the unknown token)")
            continue
        if not r["single_token"]:
            lines.append(f"{cid:18s} {r['correct']:>10s} {r['competitor']:>11s} {'no':>7s}  "
                         f"multi-token: {r['correct']!r} -> {r['correct_tokens']}, "
                         f"{r['competitor']!r} -> {r['competitor_tokens']}")
            continue
        lines.append(
            f"{cid:18s} {r['correct']:>10s} {r['competitor']:>11s} {'yes':>7s} "
            f"{r['rank_correct']:>6d} {r['rank_competitor']:>6d} {r['margin']:>+7.3f} "
            f"{'yes' if r['competitor_ahead'] else 'no':>7s} {r['overlap_ck']:>6.3f}")
    return "\n".join(lines)


@dataclass(frozen=True)
class SelectOptions:
    """How ``select_contexts`` chooses: both words single tokens; the target is the
    word the base model ranks lower; the margin |m0| lies in [min_margin,
    max_margin] logits (below: as good as flipped; above: hopeless) and the
    preferred word ranks within max_rank; then the n closest to target_margin
    (in log |m0|)."""

    n: int = field(default=10, metadata={
        "help": "how many contexts to select (>= 1; with --crossed the default is 15, "
                "held-out ones included)"})
    target_margin: float = field(default=1.5, metadata={"help": "preferred |m0| in logits"})
    min_margin: float = field(default=0.25, metadata={
        "help": "smallest |m0| kept (with --crossed: on every model, default 0.3)"})
    max_margin: float = field(default=8.0, metadata={
        "help": "largest |m0| kept (with --crossed: on every model, default 6)"})
    max_rank: int = field(default=100, metadata={
        "help": "worst rank of the preferred word (with --crossed: on every model)"})

    def __post_init__(self):
        if self.n < 1:
            raise PhantomError(f"the number of contexts to select must be at least 1, not "
                               f"{self.n}")
        if not 0 <= self.min_margin < self.max_margin:
            raise PhantomError(f"the margin window must satisfy 0 <= min_margin < max_margin, "
                               f"not [{self.min_margin}, {self.max_margin}]")
        if not self.target_margin > 0:
            raise PhantomError(f"target_margin must be positive, not {self.target_margin}")
        if self.max_rank < 1:
            raise PhantomError(f"max_rank must be at least 1, not {self.max_rank}")


def orient_row(r: dict, context: Context) -> dict:
    """A screened row oriented so that the target (``correct``) is the word the base
    model ranks lower: its words, ranks and probabilities swapped where the model
    prefers the written ``correct`` word (``reversed``), and margin = -|z_c - z_k|."""
    reverse = bool(r["margin"] > 0)
    target, competitor = ((context.competitor, context.correct) if reverse
                          else (context.correct, context.competitor))
    rank_target, rank_competitor = ((r["rank_competitor"], r["rank_correct"]) if reverse
                                    else (r["rank_correct"], r["rank_competitor"]))
    p_target, p_competitor = ((r["p_competitor"], r["p_correct"]) if reverse
                              else (r["p_correct"], r["p_competitor"]))
    return {"correct": target, "competitor": competitor, "reversed": reverse,
            "rank_correct": int(rank_target), "rank_competitor": int(rank_competitor),
            "margin": round(-abs(float(r["margin"])), 4),
            "overlap_ck": round(float(r["overlap_ck"]), 4),
            "p_correct": float(p_target), "p_competitor": float(p_competitor)}


def screened_rows(screened: xr.Dataset) -> dict[str, dict]:
    """The screening's rows by context id, each a dict of its variables."""
    return {str(cid): {name: screened[name].values[i] for name in screened.data_vars}
            for i, cid in enumerate(screened.context.values)}


def orientable(r: dict) -> bool:
    """Whether a screened row can be oriented: both words single tokens and a finite,
    non-zero margin."""
    return bool(r["single_token"]) and bool(np.isfinite(r["margin"])) and r["margin"] != 0


def select_contexts(screened: xr.Dataset, contexts: dict, options: SelectOptions = SelectOptions()):
    """Rows of the oriented selection, best first."""
    rows = []
    for cid, r in screened_rows(screened).items():
        if not orientable(r):
            continue
        context = contexts[cid]
        row, size = orient_row(r, context), abs(float(r["margin"]))
        if not options.min_margin <= size <= options.max_margin:
            continue
        if row["rank_competitor"] > options.max_rank:
            continue
        rows.append({"id": f"{row['correct']}-{row['competitor']}", "sentence": context.sentence,
                     "correct": row["correct"], "competitor": row["competitor"], "pool_id": cid,
                     **{k: v for k, v in row.items() if k not in ("correct", "competitor")},
                     "score": abs(np.log(size / options.target_margin))})
    rows.sort(key=lambda row: row["score"])
    return rows[:options.n]


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def write_selection(rows: list[dict], model_info, options: SelectOptions, path: Path,
                    n_screened: int, overwrite: bool = False) -> Path:
    """Write the selection as TOML: a [selection] table of how it was made, then one
    [[context]] per chosen context with its orientation, ranks, margin and S_ck."""
    from phantom_theory.provenance import git_commit

    if not rows:
        raise PhantomError(
            f"no context of the {n_screened} screened qualifies for {model_info.name} with "
            f"|m0| in [{options.min_margin}, {options.max_margin}] and the preferred word "
            f"within rank {options.max_rank}; nothing was written to {path}; widen "
            "--min-margin/--max-margin or raise --max-rank")
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    lines = [f"# Contexts selected for {model_info.name} by `phantom contexts select`.",
             "# The target (correct) is the word the base model ranks lower; `reversed` marks",
             "# a pair oriented against the pool's own order. Do not edit by hand: re-select.",
             "", "[selection]",
             f"model = {_toml_value(model_info.name)}",
             f"model_revision = {_toml_value(model_info.revision)}",
             f"created = {_toml_value(created)}",
             f"git_commit = {_toml_value(git_commit())}",
             f"screened = {n_screened}",
             *(f"{k} = {_toml_value(v)}" for k, v in asdict(options).items())]
    for row in rows:
        lines += ["", "[[context]]",
                  *(f"{k} = {_toml_value(v)}" for k, v in row.items() if k != "score")]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, "\n".join(lines) + "\n", overwrite)
