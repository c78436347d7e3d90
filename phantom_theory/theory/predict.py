"""Blind prediction of a held-out architecture's critical learning rate, and its
scoring (THEORY.md section 8, blind prediction).

A prediction is made from a fit that never saw the architecture's outcomes (its
rows are masked out of the table before the fit reads it). The architecture's
level comes from the population, one draw per posterior sample shared by all its
contexts, and is combined with its own measured-at-init quantities:
log eta_c = log Q - log_scale. The prediction is written with a SHA-256 of its
content before any outcome of the architecture is read; scoring checks the hash.

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
from ..schema import SCHEMA_ATTR, SCHEMAS, label, open_dataset, write_dataset
from .fit import Fit
from .models import THEORIES

SCHEMA = SCHEMAS["prediction"]
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
        attrs={SCHEMA_ATTR: SCHEMA, "theory": fit.theory, "held_out": held_out,
               "hdi_prob": HDI_PROB, "prediction_seed": seed, "sampler": fit.sampler,
               **{f"diagnostics_{k}": int(v) if isinstance(v, bool) else v
                  for k, v in fit.diagnostics.items()},
               "table_options_json": table.attrs.get("table_options_json", ""),
               **(attrs or {}), "prediction_hash_scheme": HASH_SCHEME},
    )
    label(ds, "prediction")
    ds.attrs["prediction_sha256"] = prediction_digest(ds)
    return ds


def write_prediction(ds, path, overwrite: bool = False):
    """Write a prediction atomically; refuses to replace a file unless ``overwrite``."""
    return write_dataset(ds, path, "prediction", overwrite)


def open_prediction(path) -> xr.Dataset:
    """Read a prediction and check that its content still matches its hash (a
    mismatch, or a file hashed another way, is a PhantomError)."""
    ds = open_dataset(path, "prediction")
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
            then = canonical_content(open_dataset(committed, "prediction"))
        except PhantomError:
            raise PhantomError(f"{relative} at commit {commit[:12]} is not a prediction "
                               "file") from None
    now = canonical_content(open_dataset(path, "prediction"))
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
    is the geometric mean over the contexts that resolved."""
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
