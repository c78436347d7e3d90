"""Jumps in the order parameter and the phantom test (THEORY.md section 5).

A jump is a step t whose increment dPhi_t = Phi_{t+1} - Phi_t is both sharp against
its own neighbourhood and large against the whole run. Consecutive jump steps merge
into one event. Each event carries its readout share, from the exact attribution of
dPhi_t into readout and geometry parts; an event is a phantom when the readout
share is at least ``phantom_share``: the geometry did not take part.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import PhantomError
from .order_parameter import readout_share


@dataclass(frozen=True)
class JumpOptions:
    """z_star: sharpness against the local median of |dPhi| over +-window steps.
    a_star: size against the total variation of Phi over the run.
    phantom_share: readout share at or above which a jump is a phantom."""

    z_star: float = 6.0
    window: int = 10
    a_star: float = 0.1
    phantom_share: float = 0.95

    def __post_init__(self):
        if self.window < 1:
            raise PhantomError(f"window must be at least 1, not {self.window}")


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


def find_jumps(phi, readout_part, geometry_part, overlap_ck, pair_distance,
               options: JumpOptions = JumpOptions()) -> list[Jump]:
    """Jump events of one trajectory.

    phi, overlap_ck and pair_distance hold the T + 1 logged states; readout_part and
    geometry_part hold the attribution of each increment t -> t + 1 (length T, or
    T + 1 with a trailing NaN). A diverged run is read up to its last finite state.
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

    mask = jump_mask(dphi, options)
    neighbourhood = local_median(np.abs(dphi), options.window)
    jumps = []
    for start, end in _events(mask):
        readout = float(readout_part[start:end + 1].sum())
        geometry = float(geometry_part[start:end + 1].sum())
        share = float(readout_share(readout, geometry))
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpness = np.abs(dphi[start:end + 1]) / neighbourhood[start:end + 1]
        jumps.append(Jump(
            start=int(start), end=int(end), size=float(phi[end + 1] - phi[start]),
            readout=readout, geometry=geometry, readout_share=share,
            phantom=share >= options.phantom_share,
            sharpness=float(np.nanmax(np.where(np.isfinite(sharpness), sharpness, np.inf))),
            overlap_ratio=_per_step_ratio(overlap_ck, start, end),
            distance_ratio=_per_step_ratio(pair_distance, start, end),
        ))
    return jumps
