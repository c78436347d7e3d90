"""Per-step measurements of fine-tuning runs (THEORY.md sections 3 and 5).

A ``Recorder`` holds the states of up to ``slots`` runs that advance together (one
for a single run, many for a batched sweep). Each step it receives the runs'
last-position logits and, when the geometry moves (full fine-tuning), their
population weights, taken by ``pair_geometry`` from one pass over the readout
rows plus two matrix-vector products: O(V d), never V x V. Under LoRA the
geometry is frozen and taken once per run. Every ``chunk`` states a run's buffer
is reduced to its logged columns in a few vectorised float64 operations on the
buffers' own device, so the per-step cost is a copy (LoRA) or one geometry pass
(full fine-tuning) and the host never waits on an accelerator mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from phantom_theory import order_parameter as op

from ..models import input_embedding, is_tied, readout_matrix

BASE_COLUMNS = (
    "loss", "p_correct", "p_competitor", "margin", "rank_correct", "rank_competitor",
    "entropy", "bulk_mass", "phi", "signal", "drag", "signal_normalised", "overlap_ck",
    "pair_distance",
)
# The readout and geometry parts of each increment t -> t + 1, of Phi and of the drag.
ATTRIBUTION_COLUMNS = ("attribution_readout", "attribution_geometry",
                       "attribution_drag_readout", "attribution_drag_geometry")
SECONDARY_COLUMNS = ("phi", "signal", "drag", "overlap_ck")
MATRICES = {"readout": readout_matrix, "input": input_embedding}


def other_geometry(geometry: str) -> str:
    """The geometry option that is not ``geometry``: "input" for "readout", else
    "readout"."""
    return "input" if geometry == "readout" else "readout"


def columns(geometry: str) -> tuple[str, ...]:
    """The logged columns under ``geometry``: the base columns, Phi, signal, drag and
    S_ck under the other geometry (suffixed with its name), and the readout/geometry
    attribution of the change of Phi and of the drag."""
    return (*BASE_COLUMNS, *(f"{name}_{other_geometry(geometry)}" for name in SECONDARY_COLUMNS),
            *ATTRIBUTION_COLUMNS)


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the measurements run in: ``dtype`` promoted to at least float32."""
    return torch.promote_types(dtype, torch.float32)


def pair_geometry(U: torch.Tensor, index: torch.Tensor):
    """(bulk weights (n, V), pair rows (n, 2, d)) of n runs.

    U is one matrix (V, d) shared by the runs, or their stacked matrices (n, V, d);
    index (n, 2) holds each run's (c, k). On the CPU the arithmetic runs in numpy on
    views that share memory with the tensors: a numpy call costs a fraction of a
    torch call, and these are many small calls.
    """
    with torch.no_grad():
        U = U.detach()
        if U.dtype != working_dtype(U.dtype):
            U = U.to(working_dtype(U.dtype))
        if U.device.type == "cpu":
            U, index = U.numpy(), index.numpy()
        pairs = U[index] if U.ndim == 2 else U[np.arange(len(index))[:, None], index]
        return op.bulk_weights(U, pairs), pairs


@dataclass
class _Run:
    """The recording state of the run in one slot."""

    c: int
    k: int
    table: np.ndarray
    frozen: tuple | None          # per geometry: (weights (V,), pair (2, d)), or None
    steps: list = field(default_factory=list)   # steps buffered since the last reduction
    previous: tuple | None = None               # (weights, phi, delta) of the last reduced state


class Recorder:
    """Buffers and reduces the logged columns of up to ``slots`` concurrent runs."""

    def __init__(self, slots: int, vocab: int, dim: int, device, dtype: torch.dtype,
                 geometry: str = "readout", tied: bool = True, chunk: int = 64):
        self.chunk, self.tied = chunk, tied
        self.columns = columns(geometry)
        dtype = working_dtype(dtype)
        n_geometries = 1 if tied else 2
        self.logits = torch.empty(slots, chunk, vocab, dtype=dtype, device=device)
        self.weights = torch.empty(n_geometries, slots, chunk, vocab, dtype=dtype, device=device)
        self.pairs = torch.empty(n_geometries, slots, chunk, 2, dim, dtype=torch.float64,
                                 device=device)
        self.runs: dict[int, _Run] = {}
        # On the CPU, writes go through numpy views of the buffers (cheaper calls).
        self._host = (self.logits.numpy(), self.weights.numpy(), self.pairs.numpy()) \
            if self.logits.device.type == "cpu" else None

    def start(self, slot: int, c: int, k: int, steps: int, frozen=None) -> None:
        """Begin recording a run of ``steps`` updates in ``slot``. ``frozen`` gives its
        fixed geometry, one (weights (V,), pair (2, d)) per geometry, under LoRA."""
        table = np.full((steps + 1, len(self.columns)), np.nan)
        self.runs[slot] = _Run(c, k, table, frozen)

    def push(self, slots, steps, logits: torch.Tensor, geometries=None) -> None:
        """Buffer one state of each run in ``slots`` (at its own step in ``steps``).
        ``geometries`` holds (weights (n, V), pairs (n, 2, d)) per geometry, or None
        when every run in ``slots`` is frozen."""
        rows = [len(self.runs[s].steps) for s in slots]
        if self._host is not None:
            logits_buffer, weights_buffer, pairs_buffer = self._host
            index = (np.asarray(slots), np.asarray(rows))
            logits_buffer[index] = logits.detach().numpy()
        else:
            logits_buffer, weights_buffer, pairs_buffer = self.logits, self.weights, self.pairs
            index = (torch.as_tensor(slots), torch.as_tensor(rows))
            logits_buffer[index] = logits.detach()
        for g, (weights, pairs) in enumerate(geometries or ()):
            if self._host is None:
                weights, pairs = weights.to(weights_buffer.dtype), pairs.to(torch.float64)
            weights_buffer[g][index] = weights
            pairs_buffer[g][index] = pairs
        for slot, step in zip(slots, steps, strict=True):
            run = self.runs[slot]
            run.steps.append(int(step))
            if len(run.steps) == self.chunk:
                self.reduce(slot)

    def _geometry(self, run: _Run, g: int, slot: int, n: int):
        """(weights (n or 1, V), S_ck, |U_c - U_k|) in float64 for geometry g."""
        if run.frozen is not None:
            weights, pairs = (torch.as_tensor(a)[None] for a in run.frozen[g])
            weights = weights.to(self.logits.device)
            pairs = pairs.to(self.logits.device, torch.float64)
        else:
            weights, pairs = self.weights[g, slot, :n], self.pairs[g, slot, :n]
        s_ck = op.pair_overlap(pairs)
        weights = op.exact_pair_weights(weights.double(), s_ck, run.c, run.k)
        return weights, s_ck, (pairs[:, 0] - pairs[:, 1]).norm(dim=-1)

    def reduce(self, slot: int) -> None:
        """Turn the run's buffered states into table rows, with the attribution of
        each increment, of Phi and of the drag (the first one reaching back to the
        previous chunk). Under a frozen geometry the next state read through the
        previous geometry is the next state itself, so both geometry parts are 0."""
        run = self.runs[slot]
        n = len(run.steps)
        if not n:
            return
        c, k = run.c, run.k
        with torch.no_grad():
            z = self.logits[slot, :n].double()
            log_partition = z.logsumexp(-1)
            p = (z - log_partition[:, None]).exp()
            z_c, z_k, p_c, p_k = z[:, c], z[:, k], p[:, c], p[:, k]
            weights, s_ck, distance = self._geometry(run, 0, slot, n)
            phi, sigma, delta = op.decompose(p, weights, s_ck, c, k)
            if self.tied:
                secondary = (phi, sigma, delta, s_ck)
            else:
                weights2, s_ck2, _ = self._geometry(run, 1, slot, n)
                secondary = (*op.decompose(p, weights2, s_ck2, c, k), s_ck2)
            ones = torch.ones(n, dtype=torch.float64, device=z.device)
            table = torch.stack([
                log_partition - z_c, p_c, p_k, z_c - z_k,
                (z > z_c[:, None]).sum(-1) + 1, (z > z_k[:, None]).sum(-1) + 1,
                log_partition - (p * z).sum(-1), 1 - p_c - p_k,
                phi, sigma, delta, p_c - p_k, s_ck * ones, distance * ones,
                *(v * ones for v in secondary),
            ], dim=-1)
            weights = weights.expand(n, -1)
            if run.previous is None:
                before_w, before_phi, before_delta = weights[:-1], phi[:-1], delta[:-1]
                p_after, after_phi, after_delta = p[1:], phi[1:], delta[1:]
            else:
                before_w, before_phi, before_delta = (
                    torch.cat([last[None], now[:-1]])
                    for last, now in zip(run.previous, (weights, phi, delta), strict=True))
                p_after, after_phi, after_delta = p, phi, delta
            if run.frozen is not None:
                mixed_phi, mixed_delta = after_phi, after_delta
            else:
                mixed_phi, _, mixed_delta = op.decompose(p_after, before_w, None, c, k)
            parts = (*op.split_change(before_phi, mixed_phi, after_phi),
                     *op.split_change(before_delta, mixed_delta, after_delta))
            run.previous = (weights[-1].clone(), phi[-1].clone(), delta[-1].clone())
        steps = np.asarray(run.steps)
        n_parts = len(ATTRIBUTION_COLUMNS)
        run.table[steps, :-n_parts] = table.cpu().numpy()
        increments = steps[len(steps) - len(parts[0]):] - 1
        run.table[increments, -n_parts:] = torch.stack(parts, -1).cpu().numpy()
        run.steps = []

    def finish(self, slot: int) -> dict[str, np.ndarray]:
        """The run's logged columns by name (NaN where a state was never reached);
        frees the slot."""
        self.reduce(slot)
        run = self.runs.pop(slot)
        return {name: run.table[:, i] for i, name in enumerate(self.columns)}


def frozen_geometry(model, c: int, k: int, geometry: str):
    """One run's fixed geometry (weights, pair) per recorded geometry, for LoRA."""
    index = torch.tensor([[c, k]], device=readout_matrix(model).device)
    names = [geometry] if is_tied(model) else [geometry, other_geometry(geometry)]
    taken = [pair_geometry(MATRICES[name](model), index) for name in names]
    return [(weights[0], pairs[0]) for weights, pairs in taken]


class Instrument:
    """The recorder of a single run, taking its geometry from the model itself."""

    def __init__(self, model, c: int, k: int, steps: int, geometry: str = "readout",
                 frozen: bool = False, chunk: int = 64):
        U = readout_matrix(model)
        tied = is_tied(model)
        self.recorder = Recorder(1, U.shape[0], U.shape[1], U.device, U.dtype, geometry, tied,
                                 chunk)
        self.columns = self.recorder.columns
        names = [geometry] if tied else [geometry, other_geometry(geometry)]
        self.matrices = [MATRICES[name](model) for name in names]
        self.index = torch.tensor([[c, k]], device=U.device)
        self.recorder.start(0, c, k, steps,
                            frozen_geometry(model, c, k, geometry) if frozen else None)
        self.frozen = frozen

    def record(self, step: int, logits: torch.Tensor) -> None:
        """Buffer the state whose last-position logits are ``logits`` (V,) as ``step``."""
        geometries = (None if self.frozen else
                      [pair_geometry(matrix, self.index) for matrix in self.matrices])
        self.recorder.push([0], [step], logits[None], geometries)

    def steps(self) -> dict[str, np.ndarray]:
        """The run's logged columns by name (NaN where a state was never reached)."""
        return self.recorder.finish(0)
