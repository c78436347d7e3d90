"""The grid-and-bisection search (``method = "bisect"``), kept as the reference the
root-finder is measured against.

For one group: a log-spaced grid over the bracket [lo, hi], then bisection in
log eta between the two grid points that straddle each edge, until
hi / lo - 1 <= tolerance. A bracket that does not contain an edge is reported as
such (the edge lies below lo or above hi); no value is invented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .common import ABOVE, BELOW, RESOLVED, UNDEFINED, Observation, SearchOptions


@dataclass
class Bisection:
    """Bisection in log eta for the lower edge of {eta : predicate}, with the
    predicate False at ``lo`` and True at ``hi``."""

    lo: float
    hi: float
    tolerance: float

    def next_lr(self) -> float | None:
        """The geometric midpoint to run next, or None once hi / lo - 1 <= tolerance."""
        if self.hi / self.lo - 1 <= self.tolerance:
            return None
        return math.sqrt(self.lo * self.hi)

    def observe(self, lr: float, value: bool) -> None:
        """Move the end on ``value``'s side (True: the predicate holds) to ``lr``."""
        if value:
            self.hi = lr
        else:
            self.lo = lr


@dataclass
class Edge:
    """What is known of one edge (eta_c or eta_max)."""

    status: str = UNDEFINED
    search: Bisection | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        """The final bracket (lo, hi) of the edge, NaN when it was never bracketed."""
        if self.search is None:
            return math.nan, math.nan
        return self.search.lo, self.search.hi

    @property
    def value(self) -> float:
        """The geometric midpoint of the final bracket."""
        lo, hi = self.bounds
        return math.sqrt(lo * hi) if self.status == RESOLVED else math.nan


@dataclass
class BisectSearch:
    """eta_c and eta_max of one group. ``pending()`` gives the learning rates to run
    next; ``observe`` takes each finished run. Done when nothing is pending and
    nothing is awaited."""

    options: SearchOptions
    observations: dict[float, Observation] = field(default_factory=dict)
    critical: Edge = field(default_factory=Edge)
    maximum: Edge = field(default_factory=Edge)
    _requested: set = field(default_factory=set)
    _grid_done: bool = False

    def _wanted(self) -> list[float]:
        if not self._grid_done:
            return self.options.grid()
        wanted = [edge.search.next_lr() for edge in (self.critical, self.maximum)
                  if edge.status == RESOLVED and edge.search is not None]
        return [lr for lr in wanted if lr is not None]

    def pending(self) -> list[float]:
        """Learning rates to run now (each is returned once)."""
        new = [lr for lr in dict.fromkeys(self._wanted()) if lr not in self._requested]
        self._requested.update(new)
        return new

    @property
    def done(self) -> bool:
        """Nothing is pending and no run is awaited."""
        return (self._grid_done and self._requested <= set(self.observations)
                and all(lr in self._requested for lr in self._wanted()))

    def observe(self, observation: Observation) -> None:
        """Take a finished run: after the grid, it narrows the bracket it falls in."""
        lr = observation.lr
        self.observations[lr] = observation
        if not self._grid_done:
            if all(x in self.observations for x in self.options.grid()):
                self._grid_done = True
                self._start_searches()
            return
        for edge, value in ((self.critical, observation.flipped),
                            (self.maximum, observation.unstable)):
            if edge.search is not None and edge.search.lo < lr < edge.search.hi:
                edge.search.observe(lr, value)

    def _start_searches(self) -> None:
        grid = self.options.grid()
        runs = [self.observations[lr] for lr in grid]
        flips = [r.flipped for r in runs]
        tol = self.options.tolerance
        if not any(flips):
            self.critical.status = ABOVE
        elif flips[0]:
            self.critical.status = BELOW
        else:
            first = flips.index(True)
            self.critical = Edge(RESOLVED, Bisection(grid[first - 1], grid[first], tol))
        if not self.options.find_max or self.critical.status == ABOVE:
            return
        start = 0 if self.critical.status == BELOW else flips.index(True)
        j = next((i for i in range(start, len(grid)) if runs[i].unstable), None)
        if j is None:
            self.maximum.status = ABOVE
        elif j == 0:
            self.maximum.status = BELOW
        elif runs[j - 1].unstable:
            self.maximum.status = UNDEFINED   # unstable on both sides: no edge to straddle
        else:
            self.maximum = Edge(RESOLVED, Bisection(grid[j - 1], grid[j], tol))

    def non_monotone(self) -> bool:
        """A run below the stability edge failed to flip although a smaller learning
        rate flipped."""
        edge = self.maximum.bounds[0] if self.maximum.status == RESOLVED else math.inf
        ordered = sorted(self.observations.values(), key=lambda o: o.lr)
        seen_flip = False
        for o in ordered:
            if o.lr >= edge or o.unstable:
                break
            if o.flipped:
                seen_flip = True
            elif seen_flip:
                return True
        return False

    def summary(self) -> dict:
        """eta_c and eta_max with their brackets and statuses, and the run counts."""
        outcomes = [o.outcome for o in self.observations.values()]
        lo_c, hi_c = self.critical.bounds
        lo_m, hi_m = self.maximum.bounds
        return {
            "eta_c": self.critical.value, "eta_c_lo": lo_c, "eta_c_hi": hi_c,
            "eta_c_status": self.critical.status,
            "eta_max": self.maximum.value, "eta_max_lo": lo_m, "eta_max_hi": hi_m,
            "eta_max_status": self.maximum.status,
            "non_monotone": self.non_monotone(),
            "n_runs": len(self.observations),
            "n_diverged": outcomes.count("diverged"),
            "n_unstable": outcomes.count("unstable"),
        }


