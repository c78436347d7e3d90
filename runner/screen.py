"""Screening contexts against a base model: are both words single tokens, which
one does the base model prefer, and how close are their readout rows."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from phantom_theory import order_parameter as op
from phantom_theory.errors import PhantomError

from .contexts import Context, describe_tokens, model_input_ids, word_tokens
from .models import LoadedModel, readout_matrix
from .train import last_logits


def screen_contexts(loaded: LoadedModel, contexts: list[Context]) -> xr.Dataset:
    """One row per context: token checks, base ranks and margin, S_ck (readout)."""
    tokenizer, model = loaded.tokenizer, loaded.model
    U = readout_matrix(model).detach().float()
    device = U.device
    rows = []
    for context in contexts:
        pieces = {role: word_tokens(tokenizer, context.sentence, getattr(context, role))
                  for role in ("correct", "competitor")}
        row = {"id": context.id, "correct": context.correct, "competitor": context.competitor,
               "correct_tokens": describe_tokens(tokenizer, pieces["correct"]),
               "competitor_tokens": describe_tokens(tokenizer, pieces["competitor"]),
               "single_token": all(len(p) == 1 for p in pieces.values())}
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
