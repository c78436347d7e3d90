"""What both searches share: the options, the edge statuses, what a search is told
of a finished run, and the geometric summary of eta_c over contexts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import PhantomError

METHODS = ("root", "bisect")
STARTS = ("linear", "blind")
RESOLVED, BELOW, ABOVE, UNDEFINED = "resolved", "below_bracket", "above_bracket", "undefined"
EDGE_STATUSES = (RESOLVED, BELOW, ABOVE, UNDEFINED)
UNSTABLE = ("unstable", "diverged")


@dataclass(frozen=True)
class SearchOptions:
    """How a group's edges are searched (THEORY.md section 6).

    method: "root" (a seeded root-finder on the margin proxies, the default) or
    "bisect" (a log-spaced grid over [lo, hi], then bisection); lo, hi: the bracket
    no search leaves; tolerance: stop once hi / lo - 1 <= tolerance for eta_c (and
    for eta_max unless max_tolerance is given); find_max: also locate eta_max;
    grid_points: the bisect method's grid; expansion: the root method's geometric
    step where no law predicts the edge.
    """

    lo: float = field(default=1e-5, metadata={"help": "lowest learning rate searched"})
    hi: float = field(default=10.0, metadata={"help": "highest learning rate searched"})
    tolerance: float = field(default=0.01, metadata={"help": "relative bracket of eta_c"})
    grid_points: int = field(default=8, metadata={"help": "bisect: grid points over [lo, hi]"})
    find_max: bool = field(default=True, metadata={"help": "also search eta_max"})
    method: str = field(default="root", metadata={"help": "root or bisect"})
    max_tolerance: float | None = field(default=None, metadata={
        "help": "relative bracket of eta_max (default: tolerance)"})
    expansion: float = field(default=10.0, metadata={"help": "root: geometric step factor"})
    start: str = field(default="linear", metadata={
        "help": "root: where eta_c's search starts: linear (|m0| / (T G0) at init) or "
                "blind (the bracket's geometric middle)"})

    def __post_init__(self):
        if not (0 < self.lo < self.hi and math.isfinite(self.hi)):
            raise PhantomError(f"the lr bracket must satisfy 0 < lo < hi, not lo={self.lo}, "
                               f"hi={self.hi}")
        if not 0 < self.tolerance < 1:
            raise PhantomError(f"the relative tolerance must lie in (0, 1), not {self.tolerance}")
        if self.grid_points < 2:
            raise PhantomError(f"the bracket needs at least 2 grid points, not {self.grid_points}")
        if self.method not in METHODS:
            raise PhantomError(f"the search method must be one of {METHODS}, not {self.method!r}")
        if self.max_tolerance is not None and not 0 < self.max_tolerance < 1:
            raise PhantomError(f"max_tolerance must lie in (0, 1), not {self.max_tolerance}")
        if self.start not in STARTS:
            raise PhantomError(f"the search start must be one of {STARTS}, not {self.start!r}")
        if not self.expansion > 1:
            raise PhantomError(f"the expansion factor must exceed 1, not {self.expansion}")

    @property
    def edge_tolerance(self) -> float:
        """The relative bracket of eta_max."""
        return self.max_tolerance if self.max_tolerance is not None else self.tolerance

    def grid(self) -> list[float]:
        """The grid_points log-spaced learning rates over [lo, hi], both ends included."""
        return [float(x) for x in np.geomspace(self.lo, self.hi, self.grid_points)]



@dataclass(frozen=True)
class Observation:
    """A finished run as a search sees it: its lr, whether it flipped, its outcome,
    and the margin proxies (NaN where a record predates them): m0, the largest
    margin reached over steps 1..T (f), and the end margin m_T (g)."""

    lr: float
    flipped: bool
    outcome: str
    margin_start: float = math.nan
    margin_max: float = math.nan
    margin_end: float = math.nan
    ahead_at_end: bool | None = None   # None: as flipped (records that predate it)

    def __post_init__(self):
        if self.ahead_at_end is None:
            object.__setattr__(self, "ahead_at_end", bool(self.flipped))

    @property
    def unstable(self) -> bool:
        """The run ended unstable or diverged: past the stability edge."""
        return self.outcome in UNSTABLE

    @property
    def past_edge(self) -> bool:
        """Not a success, for a run above eta_c: unstable, diverged, or no longer ahead
        at T (transient, or never flipped). The eta_max proxy's sign."""
        return self.unstable or not self.ahead_at_end


def geometric_summary(values) -> dict:
    """Geometric mean, geometric standard deviation and range of positive values
    (NaN when there are none)."""
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    if not values.size:
        return {"mean": math.nan, "gsd": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    logs = np.log(values)
    return {"mean": float(np.exp(logs.mean())),
            "gsd": float(np.exp(logs.std(ddof=1))) if values.size > 1 else math.nan,
            "min": float(values.min()), "max": float(values.max()), "n": int(values.size)}
