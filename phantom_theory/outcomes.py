"""Outcome of one trajectory: success, transient, silent failure (kinematic or
structural, the latter geometric or readout), unstable, diverged (THEORY.md section 4).

Pure numpy on the per-step arrays of a run; ``trajectory.annotate`` reads them from
a trajectory Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .errors import PhantomError

OUTCOMES = ("success", "transient", "kinematic_failure", "structural_failure", "unstable",
            "diverged")
STRUCTURAL_KINDS = ("geometric", "readout")
NO_STEP = -1  # stored in integer step fields when the event never happened


@dataclass(frozen=True)
class OutcomeOptions:
    """How a trajectory is classified (THEORY.md section 4)."""

    eps_rel: float = field(default=0.1, metadata={
        "help": "structural failure: the drag must worsen by more than this fraction of its "
                "total variation over the run (scale-free)"})
    trend_test: str = field(default="kendall", metadata={
        "help": "kendall: a Mann-Kendall test (Kendall tau against step) must also find a "
                "falling drag at level trend_alpha; none: the end-point rule alone"})
    trend_alpha: float = field(default=0.05, metadata={
        "help": "level of the one-sided trend test"})

    def __post_init__(self):
        if self.trend_test not in ("kendall", "none"):
            raise PhantomError(f"trend_test must be 'kendall' or 'none', not {self.trend_test!r}")
        if not 0 <= self.eps_rel < 1:
            raise PhantomError(f"eps_rel must be in [0, 1) (the worsening is at most the drag's "
                               f"total variation), not {self.eps_rel}")
        if not 0 < self.trend_alpha < 1:
            raise PhantomError(f"trend_alpha must be in (0, 1), not {self.trend_alpha}")


@dataclass(frozen=True)
class Outcome:
    """The outcome of one trajectory (one of ``OUTCOMES``) and the steps and drag
    statistics that decided it."""

    outcome: str
    flipped: bool          # p_c > p_k at some step within T
    flip_step: int         # first such step, NO_STEP if none
    rank1_step: int        # first step with rank(c) = 1, NO_STEP if none
    ahead_at_end: bool     # p_c > p_k at the last finite step
    transient: bool        # outcome "transient": flipped, not ahead at the end
    fell_back: bool        # flipped, then p_c <= p_k at some later step (recovered or not)
    diverged_step: int     # first step with a non-finite value, NO_STEP if none
    drag_change: float     # delta(end) - delta(0)
    drag_change_readout: float   # readout part of the drag's change, summed over the run
    drag_change_geometry: float  # geometry part, likewise
    drag_variation: float  # total variation sum_t |delta(t+1) - delta(t)|
    drag_worsening: float  # -drag_change / drag_variation, in [-1, 1] (NaN if no variation)
    drag_geometry_share: float   # geometry part / (readout + geometry part) of the change
    drag_trend_tau: float  # Kendall tau of delta against step (NaN if not tested)
    drag_trend_p: float    # one-sided p-value for a falling trend
    structural_kind: str   # "geometric" or "readout" for a structural failure, else ""


def _first(mask: np.ndarray) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else NO_STEP


def classify(loss, p_correct, p_competitor, rank_correct, drag, drag_readout, drag_geometry,
             options: OutcomeOptions = OutcomeOptions()) -> Outcome:
    """Classify one trajectory of T + 1 logged states (step 0 is the base model).

    ``drag_readout`` and ``drag_geometry`` hold the attribution of each increment of
    the drag (length T, or T + 1 with a trailing NaN). A non-finite value anywhere in
    the state makes the run ``diverged`` from that step on; the flip is still looked
    for before it. Otherwise the outcome is an end state:

    - flip within T and c ahead at T -> ``success``;
    - flip within T and c behind at T -> ``transient``;
    - no flip, loss(T) >= loss(0) -> ``unstable``;
    - no flip, loss(T) < loss(0) -> a silent failure: ``structural_failure`` when the
      drag worsened, -(delta(T) - delta(0)) > eps_rel * sum_t |d delta_t|, and the trend
      test agrees; ``kinematic_failure`` otherwise. A structural failure is
      ``geometric`` when the geometry part carries at least half of the worsening,
      else ``readout``.
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
    fell_back = flipped and not ahead[flip_step:].all()
    ahead_at_end = bool(ahead[-1]) if end else False
    rank1_step = _first(rank_c[:end] == 1)

    nan = float("nan")
    change = readout = geometry = variation = worsening = share = tau = p_value = nan
    if end >= 2:
        change = float(delta[end - 1] - delta[0])
        variation = float(np.abs(np.diff(delta[:end])).sum())
        readout = float(np.asarray(drag_readout, dtype=float)[:end - 1].sum())
        geometry = float(np.asarray(drag_geometry, dtype=float)[:end - 1].sum())
        if variation > 0:
            worsening = -change / variation
        if readout + geometry != 0:
            share = geometry / (readout + geometry)
        if options.trend_test == "kendall" and variation > 0:
            test = stats.kendalltau(np.arange(end), delta[:end], alternative="less")
            tau, p_value = float(test.statistic), float(test.pvalue)

    kind = ""
    if diverged_step != NO_STEP:
        outcome = "diverged"
    elif flipped:
        outcome = "success" if ahead_at_end else "transient"
    elif loss[end - 1] >= loss[0]:
        outcome = "unstable"
    else:
        worsened = bool(worsening > options.eps_rel)   # False when NaN (no variation)
        if options.trend_test == "kendall":
            worsened = worsened and p_value < options.trend_alpha
        outcome = "structural_failure" if worsened else "kinematic_failure"
        if worsened:
            kind = "geometric" if share >= 0.5 else "readout"

    return Outcome(
        outcome=outcome, flipped=flipped, flip_step=flip_step, rank1_step=rank1_step,
        ahead_at_end=ahead_at_end, transient=outcome == "transient", fell_back=bool(fell_back),
        diverged_step=diverged_step, drag_change=change, drag_change_readout=readout,
        drag_change_geometry=geometry, drag_variation=variation, drag_worsening=worsening,
        drag_geometry_share=share, drag_trend_tau=tau, drag_trend_p=p_value,
        structural_kind=kind,
    )
