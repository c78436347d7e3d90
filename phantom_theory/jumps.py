"""Jumps in the order parameter and the phantom test (THEORY.md section 5).

A jump is a step t whose increment dPhi_t = Phi_{t+1} - Phi_t is both sharp against
its own neighbourhood and large against the whole run. Consecutive jump steps merge
into one event. Each event carries its readout share, from the exact attribution of
dPhi_t into readout and geometry parts; an event is a phantom when the readout
share is at least ``phantom_share``: the geometry did not take part.

Each event has a kind (``JUMP_KINDS``), decided in this order:

- ``onset``: it starts at one of the first ``onset_increments`` increments (first-step
  saturation far above eta_c, not a transition);
- ``catapult``: at some state from the event's first increment to ``window`` states
  after its last, the loss reaches ``spike_ratio`` times its running minimum, and at
  some later state it is back below that level (a spike and a recovery);
- ``jump``: any other event.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import PhantomError
from .order_parameter import readout_share

JUMP_KINDS = ("onset", "catapult", "jump")


@dataclass(frozen=True)
class JumpOptions:
    """How jumps are found, judged and labelled (THEORY.md section 5)."""

    z_star: float = field(default=6.0, metadata={
        "help": "a jump's |dPhi| exceeds this many times the median |dPhi| of its neighbours"})
    window: int = field(default=10, metadata={
        "help": "neighbours: the steps within this distance; also the states after an event "
                "searched for a loss spike"})
    a_star: float = field(default=0.1, metadata={
        "help": "a jump's |dPhi| exceeds this fraction of Phi's total variation over the run"})
    phantom_share: float = field(default=0.95, metadata={
        "help": "readout share at or above which a jump is a phantom"})
    spike_ratio: float = field(default=2.0, metadata={
        "help": "catapult: the loss rises to this many times its running minimum and later "
                "falls back below that level"})
    onset_increments: int = field(default=2, metadata={
        "help": "onset: an event starting at one of the first this many increments"})

    def __post_init__(self):
        if self.window < 1:
            raise PhantomError(f"window must be at least 1, not {self.window}")
        if not self.spike_ratio > 1:
            raise PhantomError(f"spike_ratio must exceed 1, not {self.spike_ratio}")
        if self.onset_increments < 0:
            raise PhantomError(f"onset_increments must be 0 or more, not {self.onset_increments}")


@dataclass(frozen=True)
class Jump:
    """One jump event: the merged increments start..end, their attribution and the
    symmetry-breaking ratios of the pair geometry."""

    start: int              # first increment step t of the event (Phi_t -> Phi_{t+1})
    end: int                # last increment step of the event
    size: float             # Phi_{end+1} - Phi_start
    readout: float          # summed readout part over the event
    geometry: float         # summed geometry part over the event
    readout_share: float    # |readout| / (|readout| + |geometry|)
    phantom: bool           # readout_share >= phantom_share
    sharpness: float        # largest |dPhi_t| / local median in the event
    overlap_ratio: float    # per-step |dS_ck| during the event / its median over the run
    distance_ratio: float   # the same for |U_c - U_k|
    kind: str               # one of JUMP_KINDS
    loss_spike: float       # largest loss / running minimum from start to end + 1 + window


def local_median(values: np.ndarray, window: int) -> np.ndarray:
    """median{ values[s] : 0 < |s - t| <= window } for every t (edges use what exists)."""
    n = len(values)
    padded = np.full(n + 2 * window, np.nan)
    padded[window:window + n] = values
    windows = sliding_window_view(padded, 2 * window + 1).copy()
    windows[:, window] = np.nan  # the step itself is not its own neighbour
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (length-1 runs)
        return np.nanmedian(windows, axis=1)


def jump_mask(dphi, options: JumpOptions = JumpOptions()) -> np.ndarray:
    """True at every increment that passes both the local and the global test."""
    dphi = np.abs(np.asarray(dphi, dtype=float))
    if dphi.size == 0:
        return np.zeros(0, dtype=bool)
    total_variation = dphi.sum()
    if not total_variation > 0:
        return np.zeros(dphi.size, dtype=bool)
    neighbourhood = local_median(dphi, options.window)
    sharp = dphi > options.z_star * np.nan_to_num(neighbourhood, nan=0.0)
    large = dphi > options.a_star * total_variation
    return sharp & large


def _events(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def _per_step_ratio(series: np.ndarray, start: int, end: int) -> float:
    """Mean |change| per step over the event against the run's median |change|."""
    changes = np.abs(np.diff(series))
    event = changes[start:end + 1].mean()
    typical = np.median(changes)
    if event == 0:
        return 0.0
    return float(event / typical) if typical > 0 else float("inf")


def loss_spike(loss, start: int, end: int, window: int, spike_ratio: float) -> tuple[float, bool]:
    """(spike, recovered) of the event over increments start..end.

    spike is the largest loss(s) / min_{u <= s} loss(u) over the states s from
    start + 1 (the event's first new state) to end + 1 + window; recovered is True
    when at one such s the ratio reaches ``spike_ratio`` and at a later state the
    loss is below spike_ratio times that running minimum. The loss is read up to
    its last finite state; (NaN, False) when no state of the window is finite.
    """
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    loss = loss[:len(loss) if finite.all() else int(np.argmin(finite))]
    first, last = start + 1, min(end + 1 + window, len(loss) - 1)
    if first > last:
        return float("nan"), False
    running = np.minimum.accumulate(loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = loss[first:last + 1] / running[first:last + 1]
    recovered = False
    for s in np.flatnonzero(ratio >= spike_ratio) + first:
        if (loss[s + 1:] < spike_ratio * running[s]).any():
            recovered = True
            break
    defined = ~np.isnan(ratio)     # 0 / 0 where the loss sat at exactly 0
    return (float(ratio[defined].max()) if defined.any() else float("nan")), recovered


def jump_kind(start: int, recovered_spike: bool, options: JumpOptions = JumpOptions()) -> str:
    """The kind of an event (one of JUMP_KINDS): onset first, then catapult, else jump."""
    if start < options.onset_increments:
        return "onset"
    return "catapult" if recovered_spike else "jump"


def find_jumps(phi, readout_part, geometry_part, overlap_ck, pair_distance, loss,
               options: JumpOptions = JumpOptions()) -> list[Jump]:
    """Jump events of one trajectory.

    phi, overlap_ck, pair_distance and loss hold the T + 1 logged states;
    readout_part and geometry_part hold the attribution of each increment t -> t + 1
    (length T, or T + 1 with a trailing NaN). A diverged run is read up to its last
    finite state.
    """
    phi = np.asarray(phi, dtype=float)
    finite = np.isfinite(phi)
    n_states = len(phi) if finite.all() else int(np.argmin(finite))
    if n_states < 2:
        return []
    phi = phi[:n_states]
    dphi = np.diff(phi)
    readout_part = np.asarray(readout_part, dtype=float)[:n_states - 1]
    geometry_part = np.asarray(geometry_part, dtype=float)[:n_states - 1]
    overlap_ck = np.asarray(overlap_ck, dtype=float)[:n_states]
    pair_distance = np.asarray(pair_distance, dtype=float)[:n_states]
    loss = np.asarray(loss, dtype=float)[:n_states]

    mask = jump_mask(dphi, options)
    neighbourhood = local_median(np.abs(dphi), options.window)
    jumps = []
    for start, end in _events(mask):
        readout = float(readout_part[start:end + 1].sum())
        geometry = float(geometry_part[start:end + 1].sum())
        share = float(readout_share(readout, geometry))
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpness = np.abs(dphi[start:end + 1]) / neighbourhood[start:end + 1]
        spike, recovered = loss_spike(loss, start, end, options.window, options.spike_ratio)
        jumps.append(Jump(
            start=int(start), end=int(end), size=float(phi[end + 1] - phi[start]),
            readout=readout, geometry=geometry, readout_share=share,
            phantom=share >= options.phantom_share,
            sharpness=float(np.nanmax(np.where(np.isfinite(sharpness), sharpness, np.inf))),
            overlap_ratio=_per_step_ratio(overlap_ck, start, end),
            distance_ratio=_per_step_ratio(pair_distance, start, end),
            kind=jump_kind(int(start), recovered, options), loss_spike=spike,
        ))
    return jumps
