"""Outcome of one trajectory: flip, silent failure (kinematic or structural),
unstable, diverged (THEORY.md section 4).

Pure numpy on the per-step arrays of a run; ``classify_run`` reads them from a
trajectory Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .errors import PhantomError

OUTCOMES = ("success", "kinematic_failure", "structural_failure", "unstable", "diverged")
NO_STEP = -1  # stored in integer step fields when the event never happened


@dataclass(frozen=True)
class OutcomeOptions:
    """How a trajectory is classified.

    eps_delta: the drag must fall by more than this (in Phi units) for a
        structural failure.
    trend_test: "kendall" also requires a Mann-Kendall (Kendall tau against step)
        test to find a falling trend in the drag at level ``trend_alpha``;
        "none" uses the end-point rule alone.
    """

    eps_delta: float = 1e-3
    trend_test: str = "kendall"
    trend_alpha: float = 0.05

    def __post_init__(self):
        if self.trend_test not in ("kendall", "none"):
            raise PhantomError(f"trend_test must be 'kendall' or 'none', not {self.trend_test!r}")


@dataclass(frozen=True)
class Outcome:
    """The outcome of one trajectory (one of ``OUTCOMES``) and the steps and drag
    statistics that decided it."""

    outcome: str
    flipped: bool          # p_c > p_k at some step within T
    flip_step: int         # first such step, NO_STEP if none
    rank1_step: int        # first step with rank(c) = 1, NO_STEP if none
    ahead_at_end: bool     # p_c > p_k at the last finite step
    transient: bool        # flipped, then fell back (p_c <= p_k) later
    diverged_step: int     # first step with a non-finite value, NO_STEP if none
    drag_change: float     # delta(end) - delta(0)
    drag_trend_tau: float  # Kendall tau of delta against step (NaN if not tested)
    drag_trend_p: float    # one-sided p-value for a falling trend


def _first(mask: np.ndarray) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else NO_STEP


def classify(loss, p_correct, p_competitor, rank_correct, drag, options=OutcomeOptions()):
    """Classify one trajectory of T + 1 logged states (step 0 is the base model).

    A non-finite value anywhere in the state makes the run ``diverged`` from that
    step on; the flip is still looked for before it. Otherwise:
    flip within T -> success; no flip and loss(T) < loss(0) -> silent failure,
    structural when the drag worsened (delta(T) < delta(0) - eps_delta and the
    trend test agrees), kinematic otherwise; no flip and loss(T) >= loss(0) -> unstable.
    """
    loss, p_c, p_k, rank_c, delta = (
        np.asarray(a, dtype=float) for a in (loss, p_correct, p_competitor, rank_correct, drag)
    )
    finite = np.isfinite(loss) & np.isfinite(p_c) & np.isfinite(p_k) & np.isfinite(delta)
    diverged_step = _first(~finite)
    end = len(loss) if diverged_step == NO_STEP else diverged_step
    ahead = p_c[:end] > p_k[:end]
    flip_step = _first(ahead)
    flipped = flip_step != NO_STEP
    transient = flipped and not ahead[flip_step:].all()
    ahead_at_end = bool(ahead[-1]) if end else False
    rank1_step = _first(rank_c[:end] == 1)

    drag_change, tau, p_value = np.nan, np.nan, np.nan
    if end >= 2:
        drag_change = float(delta[end - 1] - delta[0])
        if options.trend_test == "kendall" and np.ptp(delta[:end]) > 0:
            test = stats.kendalltau(np.arange(end), delta[:end], alternative="less")
            tau, p_value = float(test.statistic), float(test.pvalue)

    if diverged_step != NO_STEP:
        outcome = "diverged"
    elif flipped:
        outcome = "success"
    elif loss[end - 1] >= loss[0]:
        outcome = "unstable"
    else:
        worsened = drag_change < -options.eps_delta
        if options.trend_test == "kendall":
            worsened = worsened and p_value < options.trend_alpha
        outcome = "structural_failure" if worsened else "kinematic_failure"

    return Outcome(
        outcome=outcome, flipped=flipped, flip_step=flip_step, rank1_step=rank1_step,
        ahead_at_end=ahead_at_end, transient=bool(transient), diverged_step=diverged_step,
        drag_change=drag_change, drag_trend_tau=tau, drag_trend_p=p_value,
    )
