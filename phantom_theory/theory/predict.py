"""Blind prediction of a held-out architecture's critical learning rate, or of the
critical learning rates on held-out contexts, and their scoring (THEORY.md section 8,
blind prediction; section 10, held-out contexts).

A prediction is made from a fit that never saw the architecture's outcomes (its
rows are masked out of the table before the fit reads it). The architecture's
level comes from the population, one draw per posterior sample shared by all its
contexts, and is combined with its own measured-at-init quantities:
log eta_c = log Q - log_scale. The prediction is written with a SHA-256 of its
content before any outcome of the architecture is read; scoring checks the hash.

A held-out context (``predict_contexts``) is the mirror image: no fit saw its rows,
its effect gamma is drawn from the context population (one draw per posterior
sample, shared by every architecture on that context), and each fitted
architecture's level comes from the fit's posterior. Its file is a sibling kind,
``context-prediction``, with dims (model, context), hashed the same way.

The hash (``prediction_digest``) covers a canonical serialisation of everything in
the file: every variable's values, dims, dtype and attributes (the context labels
included) and every global attribute (hdi_prob, the diagnostics, the theory, the
options), all but the hash itself and the time of writing. It only detects an
accident: whoever edits the file can recompute it. What proves a blind test is the
prediction committed to git before its sweep exists: ``check_commit`` compares the
file with its content at a commit (``phantom score --commit REV``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import PhantomError
from ..schema import (
    KIND_OF_SCHEMA,
    SCHEMA_ATTR,
    SCHEMAS,
    label,
    open_dataset,
    schema_of,
    write_dataset,
)
from .fit import Fit
from .models import THEORIES

SCHEMA = SCHEMAS["prediction"]
CONTEXT_SCHEMA = SCHEMAS["context-prediction"]
PREDICTION_KINDS = ("prediction", "context-prediction")
HDI_PROB = 0.94
# How the hash is made: a file hashed another way (or not at all) is refused, not
# trusted. The time of writing is left out, so the same prediction hashes the same.
HASH_SCHEME = "phantom-prediction-canonical/2"
UNHASHED = ("prediction_sha256", "created")


def hdi(draws: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """Highest-density interval of 1-D draws (the narrowest interval holding prob)."""
    draws = np.sort(np.asarray(draws, dtype=float))
    n = len(draws)
    width = max(1, int(np.floor(prob * n)))
    lows, highs = draws[: n - width], draws[width:]
    best = int(np.argmin(highs - lows))
    return float(lows[best]), float(highs[best])


def _plain(value):
    """An attribute value as plain JSON, the same before and after a netCDF round trip
    (numpy scalars and arrays as Python numbers and lists)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _values(values: np.ndarray) -> dict:
    """An array's dtype class, shape and content digest: numbers as little-endian
    64-bit (or bytes for booleans), text as the JSON list of its strings."""
    if values.dtype.kind in "fc":
        kind, data = "float", np.ascontiguousarray(values, dtype="<f8").tobytes()
    elif values.dtype.kind in "iu":
        kind, data = "int", np.ascontiguousarray(values, dtype="<i8").tobytes()
    elif values.dtype.kind == "b":
        kind, data = "bool", np.ascontiguousarray(values, dtype="|u1").tobytes()
    else:
        kind = "text"
        data = json.dumps([str(v) for v in values.ravel().tolist()]).encode()
    return {"kind": kind, "shape": list(values.shape), "sha256": hashlib.sha256(data).hexdigest()}


def canonical_content(ds: xr.Dataset) -> dict:
    """What the hash covers, field by field: ``attr NAME`` for each global attribute
    (but the hash and the time of writing) and ``variable NAME`` for each variable,
    coordinates included (dims, attributes, dtype class, shape, content digest)."""
    fields = {f"attr {k}": _plain(v) for k, v in ds.attrs.items() if k not in UNHASHED}
    for name, var in ds.variables.items():
        fields[f"variable {name}"] = {"dims": list(var.dims),
                                      "attrs": {k: _plain(v) for k, v in var.attrs.items()},
                                      **_values(np.asarray(var.values))}
    return fields


def prediction_digest(ds: xr.Dataset) -> str:
    """SHA-256 of the canonical JSON of ``canonical_content``."""
    text = json.dumps(canonical_content(ds), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def differing_fields(a: dict, b: dict) -> list[str]:
    """The fields of two ``canonical_content`` records that differ (or one lacks),
    compared as their canonical JSON (so that NaN equals NaN, as in the hash)."""
    def text(record, key):
        return json.dumps(record.get(key, "(absent)"), sort_keys=True)

    return sorted(k for k in set(a) | set(b) if text(a, k) != text(b, k))


def predict_architecture(fit: Fit, table: xr.Dataset, held_out: str, seed: int = 0,
                         attrs: dict | None = None) -> xr.Dataset:
    """The posterior predictive of eta_c for ``held_out`` on each of its contexts with
    quantities, and for the architecture (the geometric mean over them), from a fit
    without its outcomes. Includes the catapult anchor 2 / lambda0."""
    if fit.held_out != held_out:
        raise PhantomError(f"the fit held out {fit.held_out!r}, not {held_out!r}")
    theory = THEORIES[fit.theory]
    arch = list(table.model.values).index(held_out)
    row = table.sel(model=held_out)
    usable = (row.has_quantities & np.isfinite(row[theory.offset])).values
    if not usable.any():
        raise PhantomError(f"{held_out} has no measured-at-init quantities to predict from; "
                           "run `phantom quantities` on it")
    contexts = np.flatnonzero(usable)
    rng = np.random.default_rng(seed)
    log_target = theory.predict(fit.flat(), fit.data, arch, contexts, rng)
    log_eta = log_target - row[theory.offset].values[contexts][None, :]
    arch_draws = log_eta.mean(axis=1)
    context_ids = [str(c) for c in table.context.values[contexts]]
    summaries = {"eta_c_median": np.exp(np.median(log_eta, axis=0)),
                 "eta_c_hdi_low": np.exp([hdi(d)[0] for d in log_eta.T]),
                 "eta_c_hdi_high": np.exp([hdi(d)[1] for d in log_eta.T])}
    anchor = 2.0 / row.lambda0.values[contexts]
    low, high = hdi(arch_draws)
    ds = xr.Dataset(
        {"log_eta_c_draws": (("sample", "context"), log_eta),
         **{k: ("context", v) for k, v in summaries.items()},
         "anchor_eta_c": ("context", anchor),
         "eta_c_arch_draws": ("sample", np.exp(arch_draws)),
         "eta_c_arch_median": np.exp(np.median(arch_draws)),
         "eta_c_arch_hdi_low": np.exp(low), "eta_c_arch_hdi_high": np.exp(high),
         "anchor_eta_c_arch": np.exp(np.mean(np.log(anchor)))},
        coords={"context": context_ids},
        attrs={SCHEMA_ATTR: SCHEMA, "held_out": held_out,
               **_fit_attrs(fit, table, seed, attrs)},
    )
    label(ds, "prediction")
    ds.attrs["prediction_sha256"] = prediction_digest(ds)
    return ds


def _fit_attrs(fit: Fit, table: xr.Dataset, seed: int, attrs: dict | None) -> dict:
    """The attributes every prediction records of its fit (theory, sampler, the
    diagnostics), its table's options, the interval, the seed and the hash scheme."""
    return {"theory": fit.theory, "hdi_prob": HDI_PROB, "prediction_seed": seed,
            "sampler": fit.sampler,
            **{f"diagnostics_{k}": int(v) if isinstance(v, bool) else v
               for k, v in fit.diagnostics.items()},
            "table_options_json": table.attrs.get("table_options_json", ""),
            **(attrs or {}), "prediction_hash_scheme": HASH_SCHEME}


def predict_contexts(fit: Fit, table: xr.Dataset, contexts, seed: int = 0,
                     attrs: dict | None = None) -> xr.Dataset:
    """The posterior predictive of eta_c on each fitted architecture for each held-out context.

    For every fitted architecture a of ``fit`` and each context k of ``contexts``
    (none of whose rows the fit saw):

        log eta_c[a, k] = level_a + gamma_k + sigma e - offset[a, k],   e ~ Normal(0, 1),

    with level_a from the fit's posterior, gamma_k drawn from the context population
    (``Theory.effects``: one draw per posterior sample, shared by every architecture
    on context k) and offset the architecture's own measured-at-init shift
    (log_scale, or log lambda0 for the sharpness baseline). Returns a
    ``context-prediction`` Dataset over (model, context): the draws, the median and
    94% HDI of eta_c, the anchor 2 / lambda0 and gamma_k's draws, hashed like
    ``predict_architecture``'s. A cell without quantities is NaN; a context the fit
    saw, or one without quantities on any fitted architecture, is a PhantomError."""
    theory = THEORIES[fit.theory]
    data = fit.data
    if (data.n_models, data.n_contexts) != (table.sizes["model"], table.sizes["context"]):
        raise PhantomError(f"the {fit.theory} fit was made on a table of {data.n_models} "
                           f"models x {data.n_contexts} contexts, not this one of "
                           f"{table.sizes['model']} x {table.sizes['context']}; predict from "
                           "the table it was fitted to")
    contexts = [str(c) for c in dict.fromkeys(contexts)]
    if not contexts:
        raise PhantomError("no held-out context to predict; name one with --context")
    known = [str(c) for c in table.context.values]
    unknown = [c for c in contexts if c not in known]
    if unknown:
        raise PhantomError(f"context {unknown[0]!r} is not in the table (its contexts are "
                           f"{', '.join(known)}); name a context of the sweep or the quantities")
    index = np.array([known.index(c) for c in contexts])
    seen = sorted(set(index) & set(np.unique(data.context).tolist()))
    if seen:
        raise PhantomError(f"the {fit.theory} fit saw context {known[seen[0]]!r} (it has rows "
                           "in the fit), so predicting it is no blind test; hold it out of "
                           "the table (--held-out-contexts) and fit again")
    archs = data.fitted_index
    if not len(archs):
        raise PhantomError(f"the {fit.theory} fit has no fitted architecture to predict on")
    cells = table.isel(model=archs, context=index)
    usable = (cells.has_quantities & np.isfinite(cells[theory.offset])).values
    lacking = [c for c, ok in zip(contexts, usable.any(axis=0), strict=True) if not ok]
    if lacking:
        raise PhantomError(f"context {lacking[0]!r} has no measured-at-init quantities on any "
                           "fitted architecture; run `phantom quantities` on it")
    post = fit.flat()
    rng = np.random.default_rng(seed)
    levels, gamma = theory.effects(post, data, rng)
    gamma = gamma[:, index]                                       # (samples, contexts)
    mean = levels[:, archs][:, :, None] + gamma[:, None, :]       # (samples, models, contexts)
    log_target = mean + post["sigma"][:, None, None] * rng.standard_normal(mean.shape)
    offset = np.where(usable, cells[theory.offset].values, np.nan)
    log_eta = log_target - offset[None]
    low, high = np.full(usable.shape, np.nan), np.full(usable.shape, np.nan)
    for a, k in zip(*np.nonzero(usable), strict=True):
        low[a, k], high[a, k] = hdi(log_eta[:, a, k])
    mc = ("model", "context")
    ds = xr.Dataset(
        {"log_eta_c_draws": (("sample", *mc), log_eta),
         "eta_c_median": (mc, np.exp(np.median(log_eta, axis=0))),
         "eta_c_hdi_low": (mc, np.exp(low)), "eta_c_hdi_high": (mc, np.exp(high)),
         "anchor_eta_c": (mc, np.where(usable, 2.0 / cells.lambda0.values, np.nan)),
         "context_effect_draws": (("sample", "context"), gamma)},
        coords={"model": [str(m) for m in cells.model.values], "context": contexts},
        attrs={SCHEMA_ATTR: CONTEXT_SCHEMA, "held_out_contexts": ",".join(contexts),
               "fit_held_out": fit.held_out or "", **_fit_attrs(fit, table, seed, attrs)},
    )
    label(ds, "context-prediction")
    ds.attrs["prediction_sha256"] = prediction_digest(ds)
    return ds


def prediction_kind(ds: xr.Dataset) -> str:
    """The kind of a prediction Dataset: "prediction" (a held-out architecture) or
    "context-prediction" (held-out contexts)."""
    kind = KIND_OF_SCHEMA.get(str(ds.attrs.get(SCHEMA_ATTR, "")), "")
    if kind not in PREDICTION_KINDS:
        raise PhantomError(f"a Dataset of schema {ds.attrs.get(SCHEMA_ATTR)!r} is no prediction")
    return kind


def write_prediction(ds, path, overwrite: bool = False):
    """Write a prediction (either kind) atomically; refuses to replace a file unless
    ``overwrite``."""
    return write_dataset(ds, path, prediction_kind(ds), overwrite)


def _open_either(path) -> xr.Dataset:
    """A prediction file of either kind, by its schema attribute (any other file is
    refused as not a prediction)."""
    kind = ("context-prediction" if schema_of(path) == CONTEXT_SCHEMA else "prediction")
    return open_dataset(path, kind)


def open_prediction(path) -> xr.Dataset:
    """Read a prediction (of an architecture or of held-out contexts) and check that
    its content still matches its hash (a mismatch, or a file hashed another way, is
    a PhantomError)."""
    ds = _open_either(path)
    scheme = ds.attrs.get("prediction_hash_scheme")
    if scheme != HASH_SCHEME:
        raise PhantomError(
            f"{path} was hashed as {scheme or 'an older phantom did'}, not {HASH_SCHEME}: "
            "that hash left its context labels, interval and diagnostics out, so nothing "
            "can be verified; make the prediction again with `phantom predict` or "
            "`phantom loao`")
    if prediction_digest(ds) != ds.attrs.get("prediction_sha256"):
        raise PhantomError(f"{path} does not match its recorded SHA-256: the prediction was "
                           "changed after it was written")
    return ds


def _git(args: list[str], folder: Path, text: bool = True):
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=text, timeout=60, check=False)
    except OSError as error:
        raise PhantomError(f"cannot run git to check the commit ({error}); install git") from None


def check_commit(path, rev: str) -> dict:
    """Check the prediction file ``path`` against its content at git commit ``rev``:
    the commit, its time, and the canonical content of both must agree field by
    field. Returns {"commit", "committed"}; a PhantomError names what differs, or
    why the file cannot be found at that commit."""
    path = Path(path).resolve()
    top = _git(["rev-parse", "--show-toplevel"], path.parent)
    if top.returncode != 0:
        raise PhantomError(f"{path} is not in a git repository, so it cannot be checked "
                           f"against commit {rev!r}: commit the prediction before its sweep "
                           "runs, then score it with --commit")
    root = Path(top.stdout.strip())
    found = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    if found.returncode != 0:
        raise PhantomError(f"{rev!r} is not a commit of the repository at {root}; give the "
                           "commit that pre-registered the prediction")
    commit = found.stdout.strip()
    relative = path.relative_to(root).as_posix()
    blob = _git(["show", f"{commit}:{relative}"], root, text=False)
    if blob.returncode != 0:
        raise PhantomError(f"{relative} is not in commit {commit[:12]}: that commit did not "
                           "pre-register this prediction (git log -- the file shows which did)")
    when = _git(["show", "-s", "--format=%cI", commit], root).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        committed = Path(folder) / "committed.nc"
        committed.write_bytes(blob.stdout)
        try:
            then = canonical_content(_open_either(committed))
        except PhantomError:
            raise PhantomError(f"{relative} at commit {commit[:12]} is not a prediction "
                               "file") from None
    now = canonical_content(_open_either(path))
    changed = differing_fields(then, now)
    if changed:
        raise PhantomError(f"{path} is not the prediction committed in {commit[:12]} ({when}): "
                           f"its {', '.join(changed[:4])} changed since; score the committed "
                           f"file (git show {commit[:12]}:{relative})")
    return {"commit": commit, "committed": when}


def committed_before(committed: str, created: str) -> bool | None:
    """Whether the ISO time ``committed`` is earlier than ``created`` (None if
    either cannot be read)."""
    try:
        return _dt.datetime.fromisoformat(committed) < _dt.datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return None


def score(prediction: xr.Dataset, measured_eta_c: xr.DataArray, measured_eta_max=None) -> dict:
    """Score a prediction against the measured eta_c of its contexts (NaN where a
    context did not resolve). The architecture's value, predicted and measured,
    is the geometric mean over the contexts that resolved. A context prediction is
    scored per (architecture, context) by ``score_contexts`` (``measured_eta_c``
    then over (model, context))."""
    if prediction_kind(prediction) == "context-prediction":
        return score_contexts(prediction, measured_eta_c)
    contexts = [c for c in prediction.context.values
                if c in measured_eta_c.context.values and np.isfinite(float(measured_eta_c.sel(context=c)))]
    if not contexts:
        raise PhantomError(f"no resolved eta_c of {prediction.attrs['held_out']} to score against")
    pred = prediction.sel(context=contexts)
    measured = np.exp(np.mean(np.log(measured_eta_c.sel(context=contexts).values)))
    draws = np.exp(pred.log_eta_c_draws.values.mean(axis=1))
    median = float(np.median(draws))
    low, high = np.exp(hdi(np.log(draws), float(prediction.attrs["hdi_prob"])))
    anchor = float(np.exp(np.mean(np.log(pred.anchor_eta_c.values))))
    per_context = pred.eta_c_median.values
    measured_per_context = measured_eta_c.sel(context=contexts).values
    covered = ((pred.eta_c_hdi_low.values <= measured_per_context)
               & (measured_per_context <= pred.eta_c_hdi_high.values))
    result = {
        "theory": prediction.attrs["theory"], "held_out": prediction.attrs["held_out"],
        "n_contexts": len(contexts), "measured": float(measured),
        "median": median, "hdi_low": float(low), "hdi_high": float(high),
        "relative_error": abs(median - measured) / measured,
        "covered": bool(low <= measured <= high),
        "context_relative_error": float(np.median(np.abs(per_context - measured_per_context)
                                                  / measured_per_context)),
        "context_coverage": float(covered.mean()),
        "anchor": anchor, "anchor_relative_error": abs(anchor - measured) / measured,
        "prediction_sha256": prediction.attrs["prediction_sha256"],
    }
    if measured_eta_max is not None:
        eta_max = measured_eta_max.sel(context=contexts).values
        finite = np.isfinite(eta_max)
        if finite.any():
            edge = float(np.exp(np.mean(np.log(eta_max[finite]))))
            result.update(measured_eta_max=edge, anchor_relative_error_eta_max=abs(anchor - edge) / edge)
    return result


def score_contexts(prediction: xr.Dataset, measured_eta_c: xr.DataArray) -> dict:
    """Score a context prediction against the measured eta_c (model, context): per
    predicted (architecture, context) cell that resolved, the relative error
    |median - measured| / measured and whether the HDI covers the measured value,
    likewise for the anchor 2 / lambda0. Returns {"kind": "context", "theory",
    "held_out_contexts", "cells": [one dict per cell], "n_cells", "coverage" (the
    share of cells covered), "median_relative_error", "anchor_median_relative_error",
    "prediction_sha256"}."""
    cells = []
    for model in map(str, prediction.model.values):
        for context in map(str, prediction.context.values):
            cell = prediction.sel(model=model, context=context)
            if (model not in measured_eta_c.model.values
                    or context not in measured_eta_c.context.values
                    or not np.isfinite(float(cell.eta_c_median))):
                continue
            measured = float(measured_eta_c.sel(model=model, context=context))
            if not np.isfinite(measured):
                continue
            median, anchor = float(cell.eta_c_median), float(cell.anchor_eta_c)
            cells.append({
                "model": model, "context": context, "measured": measured, "median": median,
                "hdi_low": float(cell.eta_c_hdi_low), "hdi_high": float(cell.eta_c_hdi_high),
                "relative_error": abs(median - measured) / measured,
                "covered": bool(float(cell.eta_c_hdi_low) <= measured
                                <= float(cell.eta_c_hdi_high)),
                "anchor": anchor, "anchor_relative_error": abs(anchor - measured) / measured})
    contexts = prediction.attrs["held_out_contexts"]
    if not cells:
        raise PhantomError(f"no resolved eta_c of the held-out context(s) {contexts} on the "
                           "predicted architectures to score against")
    return {"kind": "context", "theory": prediction.attrs["theory"],
            "held_out_contexts": contexts, "cells": cells, "n_cells": len(cells),
            "coverage": float(np.mean([c["covered"] for c in cells])),
            "median_relative_error": float(np.median([c["relative_error"] for c in cells])),
            "anchor_median_relative_error": float(np.median(
                [c["anchor_relative_error"] for c in cells])),
            "prediction_sha256": prediction.attrs["prediction_sha256"]}


def context_score_table(result: dict) -> str:
    """A context prediction's score as a text table, one row per (context,
    architecture): measured and median eta_c, HDI, relative error, coverage, the
    2/lambda0 anchor and its error; then the coverage and median relative errors."""
    lines = [f"{'context':18s} {'model':16s} {'measured':>10s} {'median':>10s} "
             f"{'94% HDI':>23s} {'rel.err':>8s} {'covers':>6s} {'2/lambda0':>10s} {'rel.err':>8s}"]
    for c in sorted(result["cells"], key=lambda c: (c["context"], c["model"])):
        interval = "[{:.4g}, {:.4g}]".format(c["hdi_low"], c["hdi_high"])
        lines.append(
            f"{c['context']:18s} {c['model']:16s} {c['measured']:10.4g} {c['median']:10.4g} "
            f"{interval:>23s} {100 * c['relative_error']:7.1f}% "
            f"{'yes' if c['covered'] else 'no':>6s} "
            f"{c['anchor']:10.4g} {100 * c['anchor_relative_error']:7.1f}%")
    covered = sum(c["covered"] for c in result["cells"])
    lines += ["", f"{result['theory']} on held-out context(s) {result['held_out_contexts']}: "
                  f"HDI covers {covered}/{result['n_cells']}; median relative error "
                  f"{100 * result['median_relative_error']:.1f}% (anchor 2/lambda0: "
                  f"{100 * result['anchor_median_relative_error']:.1f}%)"]
    return "\n".join(lines)


def calibration_table(scores: list[dict]) -> str:
    """The scores as a text table, one row per fold (measured and median eta_c, HDI,
    relative error, coverage, the 2/lambda0 anchor and its error), then per theory the
    HDI coverage and the median relative errors."""
    lines = [f"{'theory':10s} {'held out':14s} {'measured':>10s} {'median':>10s} "
             f"{'94% HDI':>23s} {'rel.err':>8s} {'covers':>6s} {'2/lambda0':>10s} {'rel.err':>8s}"]
    for s in scores:
        interval = "[{:.4g}, {:.4g}]".format(s["hdi_low"], s["hdi_high"])
        lines.append(
            f"{s['theory']:10s} {s['held_out']:14s} {s['measured']:10.4g} {s['median']:10.4g} "
            f"{interval:>23s} {100 * s['relative_error']:7.1f}% "
            f"{'yes' if s['covered'] else 'no':>6s} "
            f"{s['anchor']:10.4g} {100 * s['anchor_relative_error']:7.1f}%")
    by_theory: dict[str, list] = {}
    for s in scores:
        by_theory.setdefault(s["theory"], []).append(s)
    lines.append("")
    for theory, rows in by_theory.items():
        covered = sum(r["covered"] for r in rows)
        errors = [r["relative_error"] for r in rows]
        lines.append(f"{theory}: HDI covers {covered}/{len(rows)}; median relative error "
                     f"{100 * np.median(errors):.1f}% (anchor 2/lambda0: "
                     f"{100 * np.median([r['anchor_relative_error'] for r in rows]):.1f}%)")
    return "\n".join(lines)


def scores_dataset(scores: list[dict]) -> xr.Dataset:
    """The scores as a Dataset over ``fold``, with theory and held_out as coordinates
    and the list itself kept as JSON in the ``scores_json`` attribute."""
    keys = [k for k in scores[0] if k not in ("theory", "held_out")]
    return xr.Dataset({k: ("fold", np.array([s.get(k, np.nan) for s in scores])) for k in keys},
                      coords={"theory": ("fold", [s["theory"] for s in scores]),
                              "held_out": ("fold", [s["held_out"] for s in scores])},
                      attrs={"scores_json": json.dumps(scores, default=float)})
