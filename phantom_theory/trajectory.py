"""The trajectory Dataset of one fine-tuning run (THEORY.md section 9).

Dims: ``step`` (the T + 1 logged states; step 0 is the base model) and ``jump`` (the
jump events). The run's identity (model, context, mode, optimizer, lr, seed) sits in
scalar coordinates, so runs concatenate along a ``run`` dim into a sweep. Every
variable carries CF-style ``units`` and ``long_name``; the global attributes carry
provenance and every option that shaped the numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from .io import SCHEMA_ATTR, open_checked, write_netcdf
from .jumps import JumpOptions, find_jumps
from .outcomes import OutcomeOptions, classify
from .provenance import options_attrs

SCHEMA = "phantom-theory/trajectory/1"
RUN_COORDS = ("model", "context", "mode", "optimizer", "lr", "seed")
GEOMETRIES = ("readout", "input")
COORD_LABELS = {
    "model": ("", "model name"),
    "context": ("", "context id"),
    "mode": ("", "fine-tuning mode (full or lora)"),
    "optimizer": ("", "optimizer (sgd or adamw)"),
    "lr": ("1", "learning rate"),
    "seed": ("1", "random seed"),
}

STEP_VARIABLES = {
    "loss": ("1", "cross-entropy loss -log p_c (nats)"),
    "p_correct": ("1", "probability of the correct token c"),
    "p_competitor": ("1", "probability of the competitor token k"),
    "margin": ("1", "logit margin m = z_c - z_k"),
    "rank_correct": ("1", "rank of c among all tokens (1 = top)"),
    "rank_competitor": ("1", "rank of k among all tokens (1 = top)"),
    "entropy": ("1", "entropy of the predicted distribution (nats)"),
    "bulk_mass": ("1", "probability outside the pair, 1 - p_c - p_k"),
    "phi": ("1", "order parameter Phi = sum_i p_i (S_ci^2 - S_ki^2)"),
    "signal": ("1", "signal sigma = (p_c - p_k)(1 - S_ck^2)"),
    "drag": ("1", "drag delta = sum over the bulk of p_i (S_ci^2 - S_ki^2)"),
    "signal_normalised": ("1", "normalised signal sigma / (1 - S_ck^2) = p_c - p_k"),
    "overlap_ck": ("1", "pair overlap S_ck = u_c . u_k of normalised rows"),
    "pair_distance": ("1", "distance |U_c - U_k| between the pair's rows"),
    "attribution_readout": ("1", "readout part of Phi(t+1) - Phi(t): Phi(p_t+1, S_t) - Phi(p_t, S_t)"),
    "attribution_geometry": ("1", "geometry part of Phi(t+1) - Phi(t): Phi(p_t+1, S_t+1) - Phi(p_t+1, S_t)"),
    "embedding_sha256": ("", "SHA-256 of the input embedding matrix's bytes"),
    "readout_sha256": ("", "SHA-256 of the readout matrix's bytes"),
}
# The order parameter is also recorded in the other geometry, suffixed by its name.
SECONDARY = ("phi", "signal", "drag", "overlap_ck")

OUTCOME_VARIABLES = {
    "outcome": ("", "outcome: " + ", ".join(
        ("success", "kinematic_failure", "structural_failure", "unstable", "diverged"))),
    "flipped": ("1", "c overtook k (p_c > p_k) within T steps"),
    "flip_step": ("1", "first step with p_c > p_k (-1: never)"),
    "rank1_step": ("1", "first step with rank(c) = 1 (-1: never)"),
    "ahead_at_end": ("1", "p_c > p_k at the last finite step"),
    "transient": ("1", "flipped, then fell back (p_c <= p_k) later"),
    "diverged_step": ("1", "first step with a non-finite value (-1: never)"),
    "drag_change": ("1", "drag at the end minus drag at step 0"),
    "drag_trend_tau": ("1", "Kendall tau of the drag against step"),
    "drag_trend_p": ("1", "one-sided p-value of a falling drag trend"),
}

JUMP_VARIABLES = {
    "start": ("1", "first increment step of the jump (Phi_t -> Phi_t+1)"),
    "end": ("1", "last increment step of the jump"),
    "size": ("1", "change in Phi over the jump"),
    "readout": ("1", "readout part of the jump's change in Phi"),
    "geometry": ("1", "geometry part of the jump's change in Phi"),
    "readout_share": ("1", "|readout| / (|readout| + |geometry|)"),
    "phantom": ("1", "phantom verdict: readout share >= phantom_share"),
    "sharpness": ("1", "largest |dPhi| / local median |dPhi| in the jump"),
    "overlap_ratio": ("1", "per-step |dS_ck| in the jump / its median over the run"),
    "distance_ratio": ("1", "per-step |d|U_c - U_k|| in the jump / its median over the run"),
}


def describe(name: str) -> tuple[str, str]:
    """(units, long_name) of a trajectory variable."""
    if name in STEP_VARIABLES:
        return STEP_VARIABLES[name]
    if name in OUTCOME_VARIABLES:
        return OUTCOME_VARIABLES[name]
    if name.startswith("jump_") and name[5:] in JUMP_VARIABLES:
        return JUMP_VARIABLES[name[5:]]
    base, _, geometry = name.rpartition("_")
    if base in SECONDARY and geometry in GEOMETRIES:
        units, long_name = STEP_VARIABLES[base]
        return units, f"{long_name}, in the {geometry} geometry"
    raise KeyError(f"no description for trajectory variable {name!r}")


def _labelled(values, dims, name):
    units, long_name = describe(name)
    attrs = {"long_name": long_name}
    if units:
        attrs["units"] = units
    return xr.Variable(dims, values, attrs)


def build_trajectory(steps: dict, run: dict, attrs: dict) -> xr.Dataset:
    """A trajectory Dataset from per-step arrays (each of length T + 1), the run's
    identity (the RUN_COORDS) and global attributes."""
    missing = [name for name in RUN_COORDS if name not in run]
    if missing:
        raise ValueError(f"run identity lacks {missing}")
    n_steps = len(steps["loss"])
    ds = xr.Dataset(
        {name: _labelled(np.asarray(values), ("step",), name) for name, values in steps.items()},
        coords={"step": ("step", np.arange(n_steps), {"long_name": "optimizer step", "units": "1"}),
                **{name: run[name] for name in RUN_COORDS}},
        attrs={SCHEMA_ATTR: SCHEMA, **attrs},
    )
    for name, (units, long_name) in COORD_LABELS.items():
        ds[name].attrs.update(long_name=long_name, **({"units": units} if units else {}))
    return ds


def annotate(ds: xr.Dataset, outcome_options=OutcomeOptions(),
             jump_options=JumpOptions()) -> xr.Dataset:
    """Add the run's outcome (section 4) and its jump events (section 5) to ``ds``,
    with the options that produced them in the attributes."""
    result = classify(ds.loss, ds.p_correct, ds.p_competitor, ds.rank_correct, ds.drag,
                      outcome_options)
    jumps = find_jumps(ds.phi, ds.attribution_readout, ds.attribution_geometry,
                       ds.overlap_ck, ds.pair_distance, jump_options)
    out = ds.drop_vars([v for v in ds.variables if v.startswith("jump")] +
                       [v for v in OUTCOME_VARIABLES if v in ds.variables])
    added = {}
    for name, value in dataclasses.asdict(result).items():
        added[name] = _labelled(np.asarray(value, dtype=object if name == "outcome" else None),
                                (), name)
    for name in JUMP_VARIABLES:
        values = np.array([getattr(j, name) for j in jumps],
                          dtype=bool if name == "phantom" else float)
        if name in ("start", "end"):
            values = values.astype(int)
        added[f"jump_{name}"] = _labelled(values, ("jump",), f"jump_{name}")
    jump_coord = xr.Variable("jump", np.arange(len(jumps)), {"long_name": "jump event"})
    out = out.assign(added).assign_coords(jump=jump_coord)
    out.attrs.update(options_attrs("outcome", outcome_options))
    out.attrs.update(options_attrs("jump", jump_options))
    return out


def open_run(path) -> xr.Dataset:
    """Read a trajectory written by ``phantom run`` (or ``write_run``) into memory."""
    return open_checked(path, SCHEMA, "trajectory (.nc from `phantom run`)")


def write_run(ds: xr.Dataset, path, overwrite: bool = False):
    """Write a trajectory atomically; refuses to replace a file unless ``overwrite``."""
    return write_netcdf(ds, path, overwrite)


def run_summary(ds: xr.Dataset) -> str:
    """A few lines a person reads: the run, its outcome, Phi's start and end, the jumps."""
    last = int(ds.diverged_step) - 1 if int(ds.diverged_step) >= 0 else ds.sizes["step"] - 1
    flip, rank1 = int(ds.flip_step), int(ds.rank1_step)
    flip_text = f"flip at step {flip}" if flip >= 0 else "no flip"
    if flip >= 0:
        flip_text += f", rank 1 at step {rank1}" if rank1 >= 0 else ", never rank 1"
        flip_text += ", ahead at the end" if bool(ds.ahead_at_end) else ", behind at the end"
        if bool(ds.transient):
            flip_text += " (transient: fell back after flipping)"
    if int(ds.diverged_step) >= 0:
        flip_text += f"; diverged at step {int(ds.diverged_step)}"

    def span(name):
        return f"{float(ds[name][0]):+.4f} -> {float(ds[name][last]):+.4f}"

    lines = [
        f"run      {ds.model.item()} · {ds.context.item()} · {ds.mode.item()} · "
        f"{ds.optimizer.item()} · lr {float(ds.lr):g} · seed {int(ds.seed)} · "
        f"T = {ds.sizes['step'] - 1}",
        f"context  \"{ds.attrs.get('context_sentence', '')}\" -> "
        f"{ds.attrs.get('context_correct', '?')!r} (correct) vs "
        f"{ds.attrs.get('context_competitor', '?')!r} (competitor)",
        f"outcome  {ds.outcome.item()}: {flip_text}",
        f"loss     {float(ds.loss[0]):.4f} -> {float(ds.loss[last]):.4f}",
        f"phi      {span('phi')}   (signal {span('signal')}, drag {span('drag')})",
        f"jumps    {ds.sizes.get('jump', 0)}",
    ]
    for i in range(ds.sizes.get("jump", 0)):
        verdict = "phantom" if bool(ds.jump_phantom[i]) else "not a phantom"
        lines.append(
            f"  steps {int(ds.jump_start[i])}-{int(ds.jump_end[i]) + 1}: "
            f"dPhi {float(ds.jump_size[i]):+.4f}, readout share "
            f"{float(ds.jump_readout_share[i]):.3f} -> {verdict}; "
            f"S_ck moved {float(ds.jump_overlap_ratio[i]):.2g}x its typical step"
        )
    return "\n".join(lines)
