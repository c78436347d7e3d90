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

from .jumps import JUMP_KINDS, JumpOptions, find_jumps
from .options import options_attrs
from .outcomes import OutcomeOptions, classify
from .schema import (
    JUMP_VARIABLES,
    OUTCOME_VARIABLES,
    RUN_DIMS,
    SCHEMA_ATTR,
    SCHEMAS,
    label,
    labelled,
    open_dataset,
    write_dataset,
)


def build_trajectory(steps: dict, run: dict, attrs: dict) -> xr.Dataset:
    """A trajectory Dataset from per-step arrays (each of length T + 1), the run's
    identity (the RUN_DIMS) and global attributes."""
    missing = [name for name in RUN_DIMS if name not in run]
    if missing:
        raise ValueError(f"run identity lacks {missing}")
    n_steps = len(steps["loss"])
    ds = xr.Dataset(
        {name: labelled(np.asarray(values), ("step",), "trajectory", name)
         for name, values in steps.items()},
        coords={"step": ("step", np.arange(n_steps)), **{name: run[name] for name in RUN_DIMS}},
        attrs={SCHEMA_ATTR: SCHEMAS["trajectory"], **attrs},
    )
    return label(ds, "trajectory")


def annotate(ds: xr.Dataset, outcome_options=OutcomeOptions(),
             jump_options=JumpOptions()) -> xr.Dataset:
    """Add the run's outcome (section 4) and its jump events (section 5) to ``ds``,
    with the options that produced them in the attributes."""
    result = classify(ds.loss, ds.p_correct, ds.p_competitor, ds.rank_correct, ds.drag,
                      ds.attribution_drag_readout, ds.attribution_drag_geometry,
                      outcome_options)
    jumps = find_jumps(ds.phi, ds.attribution_readout, ds.attribution_geometry,
                       ds.overlap_ck, ds.pair_distance, ds.loss, jump_options)
    out = ds.drop_vars([v for v in ds.variables if v.startswith("jump")] +
                       [v for v in OUTCOME_VARIABLES if v in ds.variables])
    added = {}
    for name, value in dataclasses.asdict(result).items():
        added[name] = labelled(np.asarray(value, dtype=object if isinstance(value, str) else None),
                               (), "trajectory", name)
    dtypes = {"phantom": bool, "start": int, "end": int, "kind": object}
    for name in JUMP_VARIABLES:
        values = np.array([getattr(j, name) for j in jumps], dtype=dtypes.get(name, float))
        added[f"jump_{name}"] = labelled(values, ("jump",), "trajectory", f"jump_{name}")
    jump_coord = labelled(np.arange(len(jumps)), "jump", "trajectory", "jump")
    out = out.assign(added).assign_coords(jump=jump_coord)
    out.attrs.update(options_attrs("outcome", outcome_options))
    out.attrs.update(options_attrs("jump", jump_options))
    return out


def outcome_fields(ds: xr.Dataset) -> dict:
    """The outcome and jump fields of an annotated run that a sweep's run record
    carries beside its identity (the RUN_VARIABLES of section 4 and 5): the outcome,
    the transient flag, the structural sub-label, the drag's change split into its
    readout and geometry parts, and the number of jumps and of phantoms per kind."""
    kinds = ds.jump_kind.values if "jump_kind" in ds else np.array([], dtype=object)
    phantom = ds.jump_phantom.values.astype(bool) if "jump_phantom" in ds else \
        np.zeros(0, dtype=bool)
    fields = {"outcome": str(ds.outcome.item()), "flipped": bool(ds.flipped),
              "transient": bool(ds.transient), "structural_kind": str(ds.structural_kind.item()),
              "drag_change": float(ds.drag_change),
              "drag_change_readout": float(ds.drag_change_readout),
              "drag_change_geometry": float(ds.drag_change_geometry),
              "n_jumps": int(kinds.size), "n_phantom_jumps": int(phantom.sum())}
    for kind in JUMP_KINDS:
        fields[f"n_jumps_{kind}"] = int((kinds == kind).sum())
        fields[f"n_phantom_jumps_{kind}"] = int(((kinds == kind) & phantom).sum())
    return fields


def open_run(path) -> xr.Dataset:
    """Read a trajectory written by ``phantom run`` (or ``write_run``) into memory."""
    return open_dataset(path, "trajectory")


def write_run(ds: xr.Dataset, path, overwrite: bool = False):
    """Write a trajectory atomically; refuses to replace a file unless ``overwrite``."""
    return write_dataset(ds, path, "trajectory", overwrite)


def run_summary(ds: xr.Dataset) -> str:
    """A few lines a person reads: the run, its outcome, Phi's start and end, the jumps."""
    last = int(ds.diverged_step) - 1 if int(ds.diverged_step) >= 0 else ds.sizes["step"] - 1
    flip, rank1 = int(ds.flip_step), int(ds.rank1_step)
    flip_text = f"flip at step {flip}" if flip >= 0 else "no flip"
    if flip >= 0:
        flip_text += f", rank 1 at step {rank1}" if rank1 >= 0 else ", never rank 1"
        flip_text += ", ahead at the end" if bool(ds.ahead_at_end) else ", behind at the end"
        if bool(ds.fell_back) and bool(ds.ahead_at_end):
            flip_text += " (fell back after flipping, then recovered)"
    kind = str(ds.structural_kind.item())
    outcome = ds.outcome.item() + (f" ({kind})" if kind else "")
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
        f"outcome  {outcome}: {flip_text}",
        f"loss     {float(ds.loss[0]):.4f} -> {float(ds.loss[last]):.4f}",
        f"phi      {span('phi')}   (signal {span('signal')}, drag {span('drag')})",
        f"drag     change {float(ds.drag_change):+.4g} = readout part "
        f"{float(ds.drag_change_readout):+.4g} + geometry part "
        f"{float(ds.drag_change_geometry):+.4g}; worsened by "
        f"{float(ds.drag_worsening):+.3f} of its total variation",
        f"jumps    {ds.sizes.get('jump', 0)}",
    ]
    for i in range(ds.sizes.get("jump", 0)):
        verdict = "phantom" if bool(ds.jump_phantom[i]) else "not a phantom"
        lines.append(
            f"  {ds.jump_kind.values[i]:8s} steps {int(ds.jump_start[i])}-{int(ds.jump_end[i]) + 1}: "
            f"dPhi {float(ds.jump_size[i]):+.4f}, readout share "
            f"{float(ds.jump_readout_share[i]):.3f} -> {verdict}; "
            f"S_ck moved {float(ds.jump_overlap_ratio[i]):.2g}x its typical step"
        )
    return "\n".join(lines)
