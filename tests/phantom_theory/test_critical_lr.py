"""The eta_c / eta_max search on synthetic outcomes with known edges."""

import math

import numpy as np
import pytest

from phantom_theory.critical_lr import (
    ABOVE,
    BELOW,
    RESOLVED,
    BisectSearch,
    EdgeSearch,
    Observation,
    RootSearch,
    SearchOptions,
    geometric_summary,
    make_search,
)
from phantom_theory.errors import PhantomError

METHODS = ["bisect", "root"]


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


def search(flips, unstable=lambda lr: False, method="bisect", seed_lr=None, **options):
    """Drive a search with outcome functions of lr; return it and every lr it ran.
    The proxies are steps (+-1): the root-finder must then work like bisection."""
    options = SearchOptions(**{"lo": 1e-6, "hi": 100.0, **options, "method": method})
    group = make_search(options, seed_lr)
    evaluated = []
    while not group.done:
        pending = group.pending()
        assert pending, "a search that is not done must propose work"
        for lr in pending:
            evaluated.append(lr)
            flipped = flips(lr) and not unstable(lr)
            outcome = "diverged" if unstable(lr) else ("success" if flips(lr) else
                                                       "kinematic_failure")
            group.observe(Observation(lr, flipped, outcome, -1.0, 1.0 if flipped else -1.0,
                                      1.0 if flipped else -1.0))
    return group, evaluated


def test_eta_c_is_found_within_the_tolerance(method):
    group, _ = search(lambda lr: lr >= 3.7e-3, method=method)
    summary = group.summary()
    assert summary["eta_c_status"] == RESOLVED
    assert summary["eta_c_lo"] < 3.7e-3 <= summary["eta_c_hi"]
    assert summary["eta_c_hi"] / summary["eta_c_lo"] - 1 <= 0.01
    assert summary["eta_c"] == pytest.approx(3.7e-3, rel=0.01)


def test_eta_max_is_found_above_eta_c(method):
    group, _ = search(lambda lr: lr >= 3.7e-3, unstable=lambda lr: lr >= 2.0, method=method)
    summary = group.summary()
    assert summary["eta_max_status"] == RESOLVED
    assert summary["eta_max_lo"] < 2.0 <= summary["eta_max_hi"]
    assert summary["eta_max"] == pytest.approx(2.0, rel=0.01)


def test_no_learning_rate_is_run_twice(method):
    _, evaluated = search(lambda lr: lr >= 3.7e-3, unstable=lambda lr: lr >= 2.0, method=method)
    assert len(evaluated) == len(set(evaluated))


def test_a_flip_at_the_bottom_of_the_bracket_is_below_bracket(method):
    summary = search(lambda lr: True, method=method)[0].summary()
    assert summary["eta_c_status"] == BELOW and math.isnan(summary["eta_c"])


def test_no_flip_in_the_bracket_is_above_bracket(method):
    summary = search(lambda lr: False, method=method)[0].summary()
    assert summary["eta_c_status"] == ABOVE and math.isnan(summary["eta_c"])


def test_a_stable_window_reaching_the_top_leaves_eta_max_above_bracket(method):
    summary = search(lambda lr: lr >= 1e-3, method=method)[0].summary()
    assert summary["eta_max_status"] == ABOVE


def test_a_gap_in_the_success_window_is_flagged_non_monotone():
    summary = search(lambda lr: lr >= 1e-4 and not 1e-2 <= lr < 1e-1)[0].summary()
    assert summary["non_monotone"]


def test_the_root_search_flags_a_run_that_contradicts_its_bracket():
    group = RootSearch(SearchOptions(lo=1e-6, hi=100.0), seed_lr=1e-3)
    for lr, flipped in ((1e-4, False), (1e-3, True), (3e-3, False), (1e-2, True)):
        group.observe(Observation(lr, flipped, "success" if flipped else "kinematic_failure",
                                  -1.0, 1.0 if flipped else -1.0, 1.0 if flipped else -1.0))
    assert group.non_monotone()
    clean = RootSearch(SearchOptions(lo=1e-6, hi=100.0), seed_lr=1e-3)
    for lr, flipped in ((1e-4, False), (1e-3, True), (1e-2, True)):
        clean.observe(Observation(lr, flipped, "success" if flipped else "kinematic_failure",
                                  -1.0, 1.0 if flipped else -1.0, 1.0 if flipped else -1.0))
    assert not clean.non_monotone()


def test_a_clean_window_is_not_non_monotone(method):
    summary = search(lambda lr: lr >= 1e-4, unstable=lambda lr: lr >= 5.0, method=method)[0].summary()
    assert not summary["non_monotone"]


@pytest.mark.parametrize("kwargs", [dict(lo=0.0), dict(lo=1.0, hi=0.5), dict(tolerance=0.0),
                                    dict(grid_points=1)])
def test_a_bad_bracket_is_refused(kwargs):
    with pytest.raises(PhantomError):
        SearchOptions(**kwargs)


def test_geometric_summary_ignores_unresolved_values():
    summary = geometric_summary([1e-3, 1e-1, np.nan])
    assert summary["mean"] == pytest.approx(1e-2) and summary["n"] == 2


# -- the root-finder on continuous proxies with known roots ----------------------------

def drive_edge(f, start, anchor, lo=1e-8, hi=10.0, tolerance=0.01, side=None):
    """Run an EdgeSearch on the proxy f (negative below the root; the side is the
    proxy's sign unless ``side`` says); return it and the number of evaluations."""
    edge, runs = EdgeSearch(lo, hi, tolerance, start, anchor), 0
    while not edge.done:
        lr = edge.propose()
        assert lr is not None, "an unfinished edge must propose a run"
        assert lr not in edge.points
        value = f(lr)
        edge.observe(lr, side(lr) if side else value > 0, value)
        runs += 1
        assert runs < 60
    return edge, runs


def power_law(m0, root, p):
    return lambda eta: m0 * (1 - (eta / root) ** p)


CASES = [(-2.0, 3e-4, 1.0), (-0.4, 2e-6, 1.6), (-5.5, 0.02, 0.8), (-1.2, 7e-3, 2.4)]


@pytest.mark.parametrize("m0,root,p", CASES)
@pytest.mark.parametrize("seed_ratio", [0.6, 1.0, 1.7])
def test_the_root_is_bracketed_to_the_tolerance_from_a_seed(m0, root, p, seed_ratio):
    edge, runs = drive_edge(power_law(m0, root, p), root * seed_ratio, m0)
    lo, hi = edge.bracket()
    assert lo <= root <= hi and hi / lo - 1 <= 0.01 * (1 + 1e-9)
    assert edge.points[lo][0] is False and edge.points[hi][0] is True   # certified
    assert runs <= 8


@pytest.mark.parametrize("m0,root,p", CASES)
def test_a_blind_start_still_brackets_within_a_dozen_runs(m0, root, p):
    edge, runs = drive_edge(power_law(m0, root, p), math.sqrt(1e-8 * 10.0), m0)
    lo, hi = edge.bracket()
    assert lo <= root <= hi and hi / lo - 1 <= 0.01 * (1 + 1e-9)
    assert runs <= 12


def test_a_non_finite_proxy_falls_back_to_bisection_and_still_brackets():
    def f(eta):   # flips at 1e-3, and diverges (NaN) well above it
        return math.nan if eta > 1e-2 else -1.0 + eta / 1e-3
    edge, _ = drive_edge(f, 1e-1, -1.0, side=lambda eta: eta >= 1e-3)
    lo, hi = edge.bracket()
    assert lo <= 1e-3 <= hi


def test_an_edge_outside_the_bracket_is_reported_not_invented():
    edge, runs = drive_edge(lambda eta: -1.0 + eta, 1e-3, -1.0, hi=0.1)
    assert edge.status == ABOVE and edge.bracket() is None and runs <= 4
    edge, _ = drive_edge(lambda eta: 1.0, 1e-3, -1.0)
    assert edge.status == BELOW


def test_the_root_search_finds_eta_max_from_the_end_margin():
    def observe(group, lr):
        flipped = lr >= 3e-4
        unstable = lr >= 0.5
        end = (1.0 - lr / 0.5) if flipped else -1.0   # m_T falls through 0 at the edge
        outcome = "unstable" if unstable else ("success" if flipped else "kinematic_failure")
        group.observe(Observation(lr, flipped and not unstable, outcome, -1.0,
                                  -1.0 + lr / 3e-4, end, flipped and not unstable))

    group = RootSearch(SearchOptions(lo=1e-8, hi=10.0, max_tolerance=0.05), seed_lr=2e-4)
    while not group.done:
        for lr in group.pending():
            observe(group, lr)
    summary = group.summary()
    assert summary["eta_c_status"] == RESOLVED and summary["eta_max_status"] == RESOLVED
    assert summary["eta_c_lo"] <= 3e-4 <= summary["eta_c_hi"]
    assert summary["eta_max_lo"] <= 0.5 <= summary["eta_max_hi"] <= summary["eta_max_lo"] * 1.05
    assert summary["n_runs"] <= 16


def test_make_search_follows_the_method():
    assert isinstance(make_search(SearchOptions(method="bisect")), BisectSearch)
    assert isinstance(make_search(SearchOptions(), 1e-3), RootSearch)
    with pytest.raises(PhantomError, match="method"):
        SearchOptions(method="grid")
