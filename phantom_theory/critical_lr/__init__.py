"""The critical learning rate eta_c and the stability edge eta_max of a group.

THEORY.md section 6:

    eta_c   = inf { eta : c overtakes k within T steps }
    eta_max = inf { eta > eta_c : not a success (unstable, diverged, or not ahead at T) }

Two searches find them, chosen by ``SearchOptions.method``: ``root`` (the default), a
seeded root-finder on the margin proxies f = max_t m_t and g = m_T, and ``bisect``,
a log-spaced grid then bisection. Both are pure state machines: they propose
learning rates and are told outcomes, so every executor uses the same code and a
resumed sweep replays them exactly. Both certify an edge the same way, by a run on
each side at most a tolerance apart.
"""

from .bisect import Bisection, BisectSearch
from .common import (
    ABOVE,
    BELOW,
    EDGE_STATUSES,
    METHODS,
    RESOLVED,
    UNDEFINED,
    UNSTABLE,
    Observation,
    SearchOptions,
    geometric_summary,
)
from .root import EdgeSearch, RootSearch


def make_search(options: SearchOptions, seed_lr: float | None = None):
    """The search of one group for ``options.method``; ``seed_lr`` (an at-init
    prediction of eta_c) is where the root-finder starts."""
    if options.method == "bisect":
        return BisectSearch(options)
    return RootSearch(options, seed_lr)


__all__ = ["ABOVE", "BELOW", "EDGE_STATUSES", "METHODS", "RESOLVED", "UNDEFINED", "UNSTABLE",
           "BisectSearch", "Bisection", "EdgeSearch", "Observation", "RootSearch",
           "SearchOptions", "geometric_summary", "make_search"]
