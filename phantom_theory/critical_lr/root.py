"""The root-finding search for an edge in learning rate (THEORY.md section 6).

An edge is where a run's outcome changes side: for eta_c, from "no flip within T"
below to "a flip" above; for eta_max, from "a success" below to "past the edge"
above. The outcome is a step function of eta, but it is the sign of a continuous
proxy (for eta_c the largest margin reached, f = max_t m_t; for eta_max the end
margin m_T), so the edge is a root of the proxy in log eta. The search:

1. starts from a seed (an at-init prediction), and extrapolates from it to a sign
   change: for eta_c through the linear law f(eta) ~ m0 + eta (f(eta1) - m0) / eta1
   (the margin grows linearly with eta at first), for eta_max geometrically;
2. closes the bracket with a safeguarded Illinois (regula falsi) step on the proxy
   in log eta, keeping each new point at least half a tolerance inside the bracket
   so that a good estimate closes the bracket in one more run, and bisecting when
   an end's proxy is not finite or the bracket stops shrinking;
3. stops when hi / lo - 1 <= tolerance. The two ends certify the answer as
   bisection's do: the lower on the below side, the upper on the above side.

The side of a run is decided by its outcome, never by the proxy: the proxy only
chooses where to look next. Runs that contradict the bracket (a run below the
bracket's upper end on the above side, or the reverse) are kept and flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .common import ABOVE, BELOW, RESOLVED, UNDEFINED, Observation, SearchOptions


@dataclass
class EdgeSearch:
    """One edge in [lo_bound, hi_bound]. ``propose()`` gives the next learning rate
    (or None when done or waiting), ``observe(lr, above, value)`` takes a run: its
    side and its proxy value (NaN if not finite), oriented negative below and
    positive above the edge.

    ``start``: where the search begins; ``anchor``: the proxy's value at eta = 0
    (m0 for eta_c) for the linear extrapolation, or None to expand geometrically
    by ``expansion``; ``top_first``: while every run is below the edge, run
    ``hi_bound`` next (eta_max: one run can then show the edge is above the bracket).
    """

    lo_bound: float
    hi_bound: float
    tolerance: float
    start: float
    anchor: float | None = None
    expansion: float = 10.0
    max_step: float = 100.0
    top_first: bool = False     # below side only so far: try hi_bound next
    points: dict[float, tuple[bool, float]] = field(default_factory=dict)
    _waiting: set = field(default_factory=set)
    _retained: list = field(default_factory=list)   # which end each step kept
    _widths: list = field(default_factory=list)
    _order: list = field(default_factory=list)      # learning rates in the order run
    _straddle: set = field(default_factory=set)     # those placed across an estimate
    _extensions: int = 0

    def __post_init__(self):
        self.start = min(max(self.start, self.lo_bound), self.hi_bound)
        self._log_tol = math.log1p(self.tolerance)

    # -- what is known ---------------------------------------------------------------

    def bracket(self) -> tuple[float, float] | None:
        """(largest lr below, smallest lr above) with the first under the second:
        the edge is inf{eta: above}, so the smallest run on the above side bounds it."""
        above = [lr for lr, (side, _) in self.points.items() if side]
        if not above:
            return None
        hi = min(above)
        below = [lr for lr, (side, _) in self.points.items() if not side and lr < hi]
        return (max(below), hi) if below else None

    @property
    def status(self) -> str:
        """resolved, below_bracket (above side at lo_bound), above_bracket (below side
        at hi_bound), or undefined while the search runs."""
        bracket = self.bracket()
        if bracket is not None and math.log(bracket[1] / bracket[0]) <= self._log_tol * (1 + 1e-9):
            return RESOLVED
        if self.lo_bound in self.points and self.points[self.lo_bound][0] and bracket is None:
            return BELOW
        if self.hi_bound in self.points and not self.points[self.hi_bound][0]:
            above = [lr for lr, (side, _) in self.points.items() if side]
            if not above:
                return ABOVE
        return UNDEFINED

    @property
    def done(self) -> bool:
        """The edge is settled (resolved, or outside the bracket) and no run is awaited."""
        return self.status != UNDEFINED and not self._waiting

    def non_monotone(self) -> bool:
        """A run on the below side above the smallest run on the above side."""
        above = [lr for lr, (side, _) in self.points.items() if side]
        if not above:
            return False
        return any(not side and lr > min(above) for lr, (side, _) in self.points.items())

    def observe(self, lr: float, above: bool, value: float) -> None:
        """Take a run at ``lr``: its side and its proxy value (NaN: not finite)."""
        before = self.bracket()
        self.points[lr] = (bool(above), float(value))
        self._waiting.discard(lr)
        self._order.append(lr)
        after = self.bracket()
        if before is not None and after is not None:
            self._retained.append("lo" if after[0] == before[0] else "hi")
            self._widths.append(math.log(after[1] / after[0]))

    # -- what to run next --------------------------------------------------------------

    def propose(self) -> float | None:
        """The next learning rate to run, once; None when done or waiting on a run."""
        if self._waiting or self.status != UNDEFINED:
            return None
        lr = self._next()
        if lr is not None:
            # Six significant digits: a proposal then does not depend on the last bits
            # of the proxies (summation order across thread counts or machines), so
            # executors and resumed sweeps propose the same runs.
            lr = min(max(float(f"{lr:.6g}"), self.lo_bound), self.hi_bound)
        if lr is None or lr in self.points:
            return None
        self._waiting.add(lr)
        return lr

    def _value(self, lr: float) -> float:
        return self.points[lr][1]

    def _next(self) -> float | None:
        if not self.points:
            return self.start
        bracket = self.bracket()
        if bracket is None:
            self._extensions += 1
            return self._extend()
        self._extensions = 0
        return self._inside(*bracket)

    def _extend(self) -> float | None:
        """No sign change yet: extrapolate past the outermost run."""
        above = [lr for lr, (side, _) in self.points.items() if side]
        if above:   # everything seen is above: look lower
            edge = min(above)
            if edge <= self.lo_bound:
                return None
            return max(self.lo_bound, edge * self._factor(edge, towards=-1))
        edge = max(self.points)
        if edge >= self.hi_bound:
            return None
        if self.top_first:
            return self.hi_bound
        return min(self.hi_bound, edge * self._factor(edge, towards=+1))

    def _factor(self, lr: float, towards: int) -> float:
        """How far to step from ``lr``: the linear law's root from the anchor, pushed a
        tolerance past it (so that an exact law brackets at once), within
        [expansion**-1 ... max_step] of the step, else a geometric step."""
        value = self._value(lr)
        if self.anchor is not None and math.isfinite(value) and value != self.anchor:
            root = -self.anchor / (value - self.anchor)   # eta*/lr under f = m0 + c eta
            if root > 0:
                factor = root * (1 + self.tolerance) ** towards
                # a law that undershot before steps at least twice as far now
                floor = 1.2 * 2.0 ** max(self._extensions - 2, 0)
                low, high = (floor, self.max_step) if towards > 0 else (1 / self.max_step, 1 / floor)
                return min(max(factor, low), high)
        return self.expansion ** towards

    def _inside(self, lo: float, hi: float) -> float:
        """A safeguarded Illinois step inside the bracket, in log eta."""
        a, b = math.log(lo), math.log(hi)
        width = b - a
        if width <= 2 * self._log_tol:
            return math.exp(0.5 * (a + b))   # both halves then lie within the tolerance
        # Safeguard: a bracket that did not halve over the last three runs, or kept
        # one end three times, is bisected (regula falsi can creep from one side).
        stalled = (len(self._widths) >= 3 and self._widths[-1] > 0.5 * self._widths[-3]) or (
            len(self._retained) >= 3 and len(set(self._retained[-3:])) == 1)
        last = self._order[-1]
        same_side = len(self._retained) >= 2 and self._retained[-1] == self._retained[-2]
        if not stalled and last in (lo, hi) and last not in self._straddle and (
                width < 4 * self._log_tol or same_side):
            # The last run sat on an estimate of the root and fell on one side of it.
            # When the bracket is already narrow, or the estimates have been closing
            # in from one side, the root lies just across: look there first, as far
            # as the estimates last moved.
            recent = self._order[-3:]
            moves = [abs(math.log(y / x)) for x, y in zip(recent, recent[1:], strict=False)]
            # the error left after a step shrinks like the steps do
            expected = moves[-1] * min(1.0, moves[-1] / moves[-2]) if len(moves) == 2 else 0.0
            step = max(0.9 * self._log_tol, min(expected, 0.5 * width))
            x = math.log(last) + (step if last == lo else -step)
            if a < x < b:
                lr = math.exp(x)
                self._straddle.add(lr)
                return lr
        va, vb = self._value(lo), self._value(hi)
        if not (math.isfinite(va) and math.isfinite(vb)) or va > 0 or vb < 0 or va == vb or stalled:
            x = 0.5 * (a + b)
        elif self.anchor is not None and va > self.anchor:
            # The margin's growth from its start, va - m0 = c lo^p and vb - m0 = c hi^p,
            # is a power of eta (linear at small eta, p = 1): its root in one step.
            p = math.log((vb - self.anchor) / (va - self.anchor)) / width
            x = a + math.log(-self.anchor / (va - self.anchor)) / p
        else:
            # Illinois: an end kept twice in a row has its value halved, so the
            # estimate moves off it instead of creeping towards the root from one side.
            if self._retained[-2:] == ["lo", "lo"]:
                va = va / 2
            elif self._retained[-2:] == ["hi", "hi"]:
                vb = vb / 2
            x = (a * vb - b * va) / (vb - va)
        margin = 0.5 * self._log_tol
        return math.exp(min(max(x, a + margin), b - margin))


@dataclass
class RootSearch:
    """eta_c and eta_max of one group by root-finding (``method = "root"``).

    eta_c is the root of f = max_t m_t, seeded at ``seed_lr`` (an at-init prediction;
    the bracket's geometric middle when None) and extrapolated through the run's own
    m0. Once a run has flipped, eta_max is searched between the lowest flip and the
    top of the bracket (run first) with g = m_T, the end margin (THEORY.md section 6). The two edges propose runs
    side by side, one each at a time, so a batch keeps its slots full across groups.
    """

    options: SearchOptions
    seed_lr: float | None = None
    observations: dict[float, Observation] = field(default_factory=dict)
    critical: EdgeSearch | None = None
    maximum: EdgeSearch | None = None

    def __post_init__(self):
        o = self.options
        start = self.seed_lr if self.seed_lr and math.isfinite(self.seed_lr) and \
            self.seed_lr > 0 else math.sqrt(o.lo * o.hi)
        self.critical = EdgeSearch(o.lo, o.hi, o.tolerance, start, expansion=o.expansion)

    def pending(self) -> list[float]:
        """The learning rates to run now (each is returned once)."""
        self._start_maximum()
        proposals = [edge.propose() for edge in (self.critical, self.maximum) if edge is not None]
        return [lr for lr in dict.fromkeys(proposals) if lr is not None
                and lr not in self.observations]

    @property
    def done(self) -> bool:
        """Both edges settled and no run awaited."""
        self._start_maximum()
        if not self.critical.done:
            return False
        if self.maximum is None:
            return not self._wants_maximum()
        return self.maximum.done

    def _wants_maximum(self) -> bool:
        return self.options.find_max and any(o.flipped for o in self.observations.values())

    def _start_maximum(self) -> None:
        """Begin eta_max at the lowest flip, feeding it every run above it so far."""
        if self.maximum is not None or not self._wants_maximum():
            return
        o = self.options
        lowest = min(lr for lr, obs in self.observations.items() if obs.flipped)
        # The top of the bracket first: a success there settles eta_max as above the
        # bracket in one run; a run past the edge bounds the search from above.
        self.maximum = EdgeSearch(lowest, o.hi, o.edge_tolerance, o.hi, expansion=o.expansion,
                                  top_first=True)
        for lr, obs in sorted(self.observations.items()):
            if lr >= lowest:
                self._observe_maximum(obs)

    def _observe_maximum(self, observation: Observation) -> None:
        end = observation.margin_end
        self.maximum.observe(observation.lr, observation.past_edge,
                             -end if math.isfinite(end) else math.nan)

    def observe(self, observation: Observation) -> None:
        """Take a finished run into both edges' evidence."""
        self.observations[observation.lr] = observation
        if self.critical.anchor is None and math.isfinite(observation.margin_start):
            self.critical.anchor = observation.margin_start
        self.critical.observe(observation.lr, observation.flipped, observation.margin_max)
        if self.maximum is not None and observation.lr >= self.maximum.lo_bound:
            self._observe_maximum(observation)

    def non_monotone(self) -> bool:
        """Evaluated runs contradict a bracket: a run that did not flip although a
        smaller lr flipped, below the stability edge and not itself unstable (as the
        bisect method counts it), or a success above a run past the edge."""
        flips = [lr for lr, o in self.observations.items() if o.flipped]
        if not flips:
            return False
        edge = math.inf
        if self.maximum is not None and self.maximum.status == RESOLVED:
            edge = self.maximum.bracket()[0]
        late = any(not o.flipped and not o.unstable and min(flips) < lr < edge
                   for lr, o in self.observations.items())
        return late or (self.maximum is not None and self.maximum.non_monotone())

    def summary(self) -> dict:
        """eta_c and eta_max with their brackets and statuses, and the run counts."""
        def edge(search):
            if search is None:
                return math.nan, math.nan, math.nan, UNDEFINED
            status = search.status
            bracket = search.bracket() or (math.nan, math.nan)
            value = math.sqrt(bracket[0] * bracket[1]) if status == RESOLVED else math.nan
            return value, *bracket, status

        outcomes = [o.outcome for o in self.observations.values()]
        eta_c, lo_c, hi_c, status_c = edge(self.critical)
        eta_max, lo_m, hi_m, status_m = edge(self.maximum)
        return {"eta_c": eta_c, "eta_c_lo": lo_c, "eta_c_hi": hi_c, "eta_c_status": status_c,
                "eta_max": eta_max, "eta_max_lo": lo_m, "eta_max_hi": hi_m,
                "eta_max_status": status_m, "non_monotone": self.non_monotone(),
                "n_runs": len(self.observations), "n_diverged": outcomes.count("diverged"),
                "n_unstable": outcomes.count("unstable")}
