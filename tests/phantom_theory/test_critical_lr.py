"""The eta_c / eta_max search on synthetic outcomes with known edges."""

import math

import numpy as np
import pytest

from phantom_theory.critical_lr import (
    ABOVE,
    BELOW,
    RESOLVED,
    GroupSearch,
    Observation,
    SearchOptions,
    geometric_summary,
)
from phantom_theory.errors import PhantomError


def search(flips, unstable=lambda lr: False, options=SearchOptions(lo=1e-6, hi=100.0)):
    """Drive a search with outcome functions of lr; return it and every lr it ran."""
    group = GroupSearch(options)
    evaluated = []
    while not group.done:
        pending = group.pending()
        assert pending, "a search that is not done must propose work"
        for lr in pending:
            evaluated.append(lr)
            outcome = "diverged" if unstable(lr) else ("success" if flips(lr) else
                                                       "kinematic_failure")
            group.observe(Observation(lr, flips(lr) and not unstable(lr), outcome))
    return group, evaluated


def test_eta_c_is_found_within_the_tolerance():
    group, _ = search(lambda lr: lr >= 3.7e-3)
    summary = group.summary()
    assert summary["eta_c_status"] == RESOLVED
    assert summary["eta_c_lo"] < 3.7e-3 <= summary["eta_c_hi"]
    assert summary["eta_c_hi"] / summary["eta_c_lo"] - 1 <= 0.01
    assert summary["eta_c"] == pytest.approx(3.7e-3, rel=0.01)


def test_eta_max_is_found_above_eta_c():
    group, _ = search(lambda lr: lr >= 3.7e-3, unstable=lambda lr: lr >= 2.0)
    summary = group.summary()
    assert summary["eta_max_status"] == RESOLVED
    assert summary["eta_max_lo"] < 2.0 <= summary["eta_max_hi"]
    assert summary["eta_max"] == pytest.approx(2.0, rel=0.01)


def test_no_learning_rate_is_run_twice():
    _, evaluated = search(lambda lr: lr >= 3.7e-3, unstable=lambda lr: lr >= 2.0)
    assert len(evaluated) == len(set(evaluated))


def test_a_flip_at_the_bottom_of_the_bracket_is_below_bracket():
    summary = search(lambda lr: True)[0].summary()
    assert summary["eta_c_status"] == BELOW and math.isnan(summary["eta_c"])


def test_no_flip_in_the_bracket_is_above_bracket():
    summary = search(lambda lr: False)[0].summary()
    assert summary["eta_c_status"] == ABOVE and math.isnan(summary["eta_c"])


def test_a_stable_window_reaching_the_top_leaves_eta_max_above_bracket():
    summary = search(lambda lr: lr >= 1e-3)[0].summary()
    assert summary["eta_max_status"] == ABOVE


def test_a_gap_in_the_success_window_is_flagged_non_monotone():
    summary = search(lambda lr: lr >= 1e-4 and not 1e-2 <= lr < 1e-1)[0].summary()
    assert summary["non_monotone"]


def test_a_clean_window_is_not_non_monotone():
    summary = search(lambda lr: lr >= 1e-4, unstable=lambda lr: lr >= 5.0)[0].summary()
    assert not summary["non_monotone"]


@pytest.mark.parametrize("kwargs", [dict(lo=0.0), dict(lo=1.0, hi=0.5), dict(tolerance=0.0),
                                    dict(grid_points=1)])
def test_a_bad_bracket_is_refused(kwargs):
    with pytest.raises(PhantomError):
        SearchOptions(**kwargs)


def test_geometric_summary_ignores_unresolved_values():
    summary = geometric_summary([1e-3, 1e-1, np.nan])
    assert summary["mean"] == pytest.approx(1e-2) and summary["n"] == 2
