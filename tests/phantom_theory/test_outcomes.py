"""Outcome classification on synthetic trajectories (THEORY.md section 4)."""

import numpy as np
import pytest

from phantom_theory.outcomes import NO_STEP, OutcomeOptions, classify

T = 50
STEPS = np.arange(T + 1)


def trajectory(p_c, p_k, loss=None, drag=None):
    p_c, p_k = np.asarray(p_c, float), np.asarray(p_k, float)
    loss = -np.log(p_c) if loss is None else np.asarray(loss, float)
    drag = np.zeros(T + 1) if drag is None else np.asarray(drag, float)
    rank = np.where(p_c > p_k, 1, 2)
    return loss, p_c, p_k, rank, drag


def test_a_flip_is_a_success_at_its_first_step():
    p_c = np.linspace(0.1, 0.6, T + 1)
    result = classify(*trajectory(p_c, np.full(T + 1, 0.3)))
    assert result.outcome == "success"
    assert result.flip_step == int(np.argmax(p_c > 0.3))


def test_a_flip_that_falls_back_is_transient():
    p_c = np.full(T + 1, 0.1)
    p_c[10:20] = 0.5
    result = classify(*trajectory(p_c, np.full(T + 1, 0.3)))
    assert (result.outcome, result.transient, result.ahead_at_end) == ("success", True, False)


def test_falling_loss_without_flip_and_steady_drag_is_kinematic():
    p_c = np.linspace(0.1, 0.25, T + 1)
    result = classify(*trajectory(p_c, np.full(T + 1, 0.3), drag=np.full(T + 1, -0.01)))
    assert result.outcome == "kinematic_failure"


def test_falling_loss_with_a_worsening_drag_is_structural():
    p_c = np.linspace(0.1, 0.25, T + 1)
    drag = -0.01 - 0.05 * STEPS / T
    result = classify(*trajectory(p_c, np.full(T + 1, 0.3), drag=drag))
    assert result.outcome == "structural_failure"
    assert result.drag_change == pytest.approx(-0.05)


def test_a_drag_drop_without_a_trend_stays_kinematic():
    """The end points fall by more than eps_delta, but the series is noise."""
    rng = np.random.default_rng(0)
    drag = rng.normal(0, 0.01, T + 1)
    drag[0], drag[-1] = 0.01, -0.01
    p_c = np.linspace(0.1, 0.25, T + 1)
    with_test = classify(*trajectory(p_c, np.full(T + 1, 0.3), drag=drag))
    without = classify(*trajectory(p_c, np.full(T + 1, 0.3), drag=drag),
                       OutcomeOptions(trend_test="none"))
    assert (with_test.outcome, without.outcome) == ("kinematic_failure", "structural_failure")


def test_rising_loss_without_flip_is_unstable():
    p_c = np.linspace(0.1, 0.05, T + 1)
    assert classify(*trajectory(p_c, np.full(T + 1, 0.3))).outcome == "unstable"


def test_a_non_finite_value_is_diverged_at_its_step():
    p_c = np.linspace(0.1, 0.2, T + 1)
    loss = -np.log(p_c)
    loss[7:] = np.nan
    result = classify(*trajectory(p_c, np.full(T + 1, 0.3), loss=loss))
    assert (result.outcome, result.diverged_step, result.flip_step) == ("diverged", 7, NO_STEP)
