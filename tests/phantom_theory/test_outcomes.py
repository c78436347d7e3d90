"""Outcome classification on synthetic trajectories (THEORY.md section 4): success as
an end state, transient, the scale-free structural threshold and its sub-label."""

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.outcomes import NO_STEP, OutcomeOptions, classify

T = 50
STEPS = np.arange(T + 1)
BEHIND = np.full(T + 1, 0.3)           # p_k
SILENT = np.linspace(0.1, 0.25, T + 1)  # p_c: the loss falls, c never overtakes k


def trajectory(p_c, p_k=BEHIND, loss=None, drag=None, geometry_share=0.0):
    """(loss, p_c, p_k, rank_c, drag, drag readout part, drag geometry part); each
    increment of the drag is carried by the geometry part in ``geometry_share``
    (a number or one per increment)."""
    p_c, p_k = np.asarray(p_c, float), np.asarray(p_k, float)
    loss = -np.log(p_c) if loss is None else np.asarray(loss, float)
    drag = np.zeros(T + 1) if drag is None else np.asarray(drag, float)
    rank = np.where(p_c > p_k, 1, 2)
    increments = np.diff(drag)
    geometry = np.append(increments * geometry_share, np.nan)
    readout = np.append(increments - geometry[:-1], np.nan)
    return loss, p_c, p_k, rank, drag, readout, geometry


def test_a_flip_still_ahead_at_the_end_is_a_success_at_its_first_step():
    p_c = np.linspace(0.1, 0.6, T + 1)
    result = classify(*trajectory(p_c))
    assert (result.outcome, result.ahead_at_end, result.transient) == ("success", True, False)
    assert result.flip_step == int(np.argmax(p_c > 0.3))


def test_a_flip_that_falls_back_is_transient_not_a_success():
    p_c = np.full(T + 1, 0.1)
    p_c[10:20] = 0.5
    result = classify(*trajectory(p_c))
    assert (result.outcome, result.flipped, result.flip_step) == ("transient", True, 10)
    assert (result.transient, result.ahead_at_end, result.fell_back) == (True, False, True)


def test_a_flip_that_falls_back_and_recovers_is_a_success_that_fell_back():
    """The catapult under LoRA: flip, a spike that puts k ahead, and back by T."""
    p_c = np.full(T + 1, 0.5)
    p_c[0], p_c[14:21] = 0.1, 0.05
    result = classify(*trajectory(p_c))
    assert (result.outcome, result.transient, result.fell_back) == ("success", False, True)


def test_falling_loss_without_flip_and_steady_drag_is_kinematic():
    result = classify(*trajectory(SILENT, drag=np.full(T + 1, -0.01)))
    assert (result.outcome, result.structural_kind) == ("kinematic_failure", "")


def test_a_drag_worsened_by_the_readout_part_is_a_readout_structural_failure():
    drag = -0.01 - 0.05 * STEPS / T
    result = classify(*trajectory(SILENT, drag=drag, geometry_share=0.2))
    assert (result.outcome, result.structural_kind) == ("structural_failure", "readout")
    assert result.drag_change == pytest.approx(-0.05)
    assert result.drag_change_readout + result.drag_change_geometry == \
        pytest.approx(result.drag_change, abs=1e-15)
    assert result.drag_geometry_share == pytest.approx(0.2)


def test_a_drag_worsened_by_the_geometry_part_is_a_geometric_structural_failure():
    drag = -0.01 - 0.05 * STEPS / T
    result = classify(*trajectory(SILENT, drag=drag, geometry_share=0.7))
    assert (result.outcome, result.structural_kind) == ("structural_failure", "geometric")


def test_half_of_the_worsening_in_the_geometry_part_is_geometric():
    drag = -0.01 - 0.05 * STEPS / T
    assert classify(*trajectory(SILENT, drag=drag, geometry_share=0.5)).structural_kind == \
        "geometric"


def test_a_geometry_part_that_moved_the_drag_the_other_way_leaves_it_readout():
    """The readout part worsens the drag by 0.08, the geometry part improves it by 0.03."""
    drag = -0.01 - 0.05 * STEPS / T
    result = classify(*trajectory(SILENT, drag=drag, geometry_share=-0.6))
    assert result.drag_change_geometry == pytest.approx(0.03)
    assert (result.outcome, result.structural_kind) == ("structural_failure", "readout")


def test_a_frozen_geometry_makes_every_structural_failure_readout_driven():
    drag = -0.01 - 0.05 * STEPS / T
    result = classify(*trajectory(SILENT, drag=drag, geometry_share=0.0))
    assert result.drag_change_geometry == 0.0 and result.structural_kind == "readout"


@pytest.mark.parametrize("share", [0.2, 0.7])
@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_the_structural_threshold_is_scale_free(share, scale):
    """The same trajectory with its drag (and its parts) rescaled gets the same label."""
    rng = np.random.default_rng(1)
    drag = -0.01 - 0.05 * STEPS / T + rng.normal(0, 0.004, T + 1)
    shares = share + rng.normal(0, 0.05, T)
    base = classify(*trajectory(SILENT, drag=drag, geometry_share=shares))
    scaled = classify(*trajectory(SILENT, drag=scale * drag, geometry_share=shares))
    assert base.outcome == "structural_failure"
    assert (scaled.outcome, scaled.structural_kind) == (base.outcome, base.structural_kind)
    assert scaled.drag_worsening == pytest.approx(base.drag_worsening, rel=1e-9)


def test_the_threshold_is_relative_to_the_drags_total_variation():
    """A net worsening of 5% of the drag's back-and-forth is under eps_rel = 0.1, and
    over eps_rel = 0.01: the drag's own variation sets the scale, not a Phi unit."""
    drag = 0.01 * (STEPS % 2) - 0.0005 * STEPS    # zig-zag: TV 0.5, net change -0.025
    silent = trajectory(SILENT, drag=drag)
    default = classify(*silent, options=OutcomeOptions(trend_test="none"))
    lenient = classify(*silent, options=OutcomeOptions(eps_rel=0.01, trend_test="none"))
    assert default.drag_worsening == pytest.approx(0.05)
    assert (default.outcome, lenient.outcome) == ("kinematic_failure", "structural_failure")


def test_a_drag_drop_without_a_trend_stays_kinematic():
    """The end points fall by more than eps_rel of the variation, but the series is noise."""
    rng = np.random.default_rng(0)
    drag = rng.normal(0, 0.01, T + 1)
    drag[0], drag[-1] = 0.1, -0.1
    with_test = classify(*trajectory(SILENT, drag=drag))
    without = classify(*trajectory(SILENT, drag=drag), options=OutcomeOptions(trend_test="none"))
    assert with_test.drag_worsening > 0.1
    assert (with_test.outcome, without.outcome) == ("kinematic_failure", "structural_failure")


def test_rising_loss_without_flip_is_unstable():
    p_c = np.linspace(0.1, 0.05, T + 1)
    assert classify(*trajectory(p_c)).outcome == "unstable"


def test_a_non_finite_value_is_diverged_at_its_step():
    p_c = np.linspace(0.1, 0.2, T + 1)
    loss = -np.log(p_c)
    loss[7:] = np.nan
    result = classify(*trajectory(p_c, loss=loss))
    assert (result.outcome, result.diverged_step, result.flip_step) == ("diverged", 7, NO_STEP)


@pytest.mark.parametrize("bad", [dict(eps_rel=1.0), dict(eps_rel=-0.1), dict(trend_test="t"),
                                 dict(trend_alpha=0.0)])
def test_bad_options_are_refused(bad):
    with pytest.raises(PhantomError):
        OutcomeOptions(**bad)
