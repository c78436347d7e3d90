"""Jump detection, the phantom verdict and the kinds of jump event (onset, catapult,
jump) on synthetic trajectories (THEORY.md section 5)."""

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.jumps import JumpOptions, find_jumps, jump_mask, local_median, loss_spike

T = 100
FALLING = np.linspace(3.0, 1.0, T + 1)   # a loss without spikes


def smooth_run(jump_at=None, jump_size=0.3, geometry_share=0.0, loss=FALLING):
    phi = np.linspace(-0.1, 0.1, T + 1) + 0.001 * np.sin(np.arange(T + 1))
    if jump_at is not None:
        phi[jump_at + 1:] += jump_size
    dphi = np.diff(phi)
    readout = np.append(dphi * (1 - geometry_share), np.nan)
    geometry = np.append(dphi * geometry_share, np.nan)
    flat = np.zeros(T + 1)
    return phi, readout, geometry, flat, flat, loss


def spiking_loss(at, height=5.0, back_to=0.5, floor=0.4):
    """A loss that falls to ``floor``, spikes to ``height`` at state ``at`` and then
    settles at ``back_to``."""
    loss = np.full(T + 1, floor)
    loss[:10] = np.linspace(3.0, floor, 10)
    loss[at] = height
    loss[at + 1:] = back_to
    return loss


def test_local_median_excludes_the_step_itself():
    values = np.array([1.0, 100.0, 1.0, 1.0])
    assert local_median(values, 1)[1] == 1.0


def test_a_single_step_jump_is_found_with_its_size():
    jumps = find_jumps(*smooth_run(jump_at=40))
    assert [(j.start, j.end) for j in jumps] == [(40, 40)]
    assert abs(jumps[0].size - 0.3) < 0.01


def test_a_smooth_run_has_no_jumps():
    assert find_jumps(*smooth_run()) == []


def test_a_smooth_sigmoid_flip_is_not_a_jump():
    """A flip spread over several steps is smooth against its neighbourhood."""
    t = np.arange(T + 1)
    phi = 0.3 / (1 + np.exp(-(t - 50) / 2.0))
    assert not jump_mask(np.diff(phi)).any()


def test_adjacent_jump_steps_merge_into_one_event():
    phi, *_ = smooth_run()
    phi[41:] += 0.2
    phi[42:] += 0.2
    dphi = np.diff(phi)
    jumps = find_jumps(phi, np.append(dphi, np.nan), np.zeros(T + 1), np.zeros(T + 1),
                       np.zeros(T + 1), FALLING)
    assert [(j.start, j.end) for j in jumps] == [(40, 41)]


def test_a_readout_only_jump_is_a_phantom():
    (jump,) = find_jumps(*smooth_run(jump_at=40))
    assert jump.readout_share == 1.0 and jump.phantom


def test_a_jump_carried_by_the_geometry_is_not_a_phantom():
    (jump,) = find_jumps(*smooth_run(jump_at=40, geometry_share=0.5))
    assert abs(jump.readout_share - 0.5) < 1e-9 and not jump.phantom


def test_the_geometry_motion_ratio_measures_the_jump_against_typical_steps():
    phi, readout, geometry, _, _, loss = smooth_run(jump_at=40)
    overlap = 0.9 + 0.0001 * np.arange(T + 1)
    overlap[41:] += 0.01                      # the pair moves 100x its typical step
    (jump,) = find_jumps(phi, readout, geometry, overlap, np.zeros(T + 1), loss)
    assert abs(jump.overlap_ratio - 101) < 1e-6
    assert jump.distance_ratio == 0.0


def test_thresholds_are_options():
    phi, *rest = smooth_run(jump_at=40, jump_size=0.3)
    assert find_jumps(phi, *rest, options=JumpOptions(a_star=0.9)) == []


def test_a_jump_mid_run_without_a_loss_spike_is_a_plain_jump():
    (jump,) = find_jumps(*smooth_run(jump_at=40))
    assert jump.kind == "jump" and jump.loss_spike < 1.01


@pytest.mark.parametrize(("start", "kind"), [(0, "onset"), (1, "onset"), (2, "jump")])
def test_an_event_starting_at_the_first_or_second_increment_is_an_onset(start, kind):
    (jump,) = find_jumps(*smooth_run(jump_at=start))
    assert (jump.start, jump.kind) == (start, kind)


def test_the_onset_window_is_an_option():
    (jump,) = find_jumps(*smooth_run(jump_at=2), options=JumpOptions(onset_increments=3))
    assert jump.kind == "onset"


@pytest.mark.parametrize("after", [1, 10])
def test_a_loss_spike_and_recovery_within_the_window_is_a_catapult(after):
    """The loss rises to 12.5 times its running minimum and falls back below 2x it."""
    (jump,) = find_jumps(*smooth_run(jump_at=40, loss=spiking_loss(41 + after)))
    assert jump.kind == "catapult"
    assert jump.loss_spike == pytest.approx(5.0 / 0.4)


def test_a_loss_spike_past_the_window_is_not_a_catapult():
    (jump,) = find_jumps(*smooth_run(jump_at=40, loss=spiking_loss(41 + 11)))
    assert jump.kind == "jump"


def test_a_spike_that_never_recovers_is_not_a_catapult():
    """Rising to 12.5x the minimum and staying at 2.5x it is no recovery."""
    (jump,) = find_jumps(*smooth_run(jump_at=40, loss=spiking_loss(45, back_to=1.0)))
    assert jump.kind == "jump"


def test_the_spike_ratio_is_an_option():
    """A spike to 1.5x the running minimum is a catapult only below spike_ratio 1.5."""
    loss = spiking_loss(45, height=0.6, back_to=0.41)
    run = smooth_run(jump_at=40, loss=loss)
    (default,) = find_jumps(*run)
    (low,) = find_jumps(*run, options=JumpOptions(spike_ratio=1.4))
    assert (default.kind, low.kind) == ("jump", "catapult")


def test_an_onset_takes_precedence_over_a_catapult():
    (jump,) = find_jumps(*smooth_run(jump_at=0, loss=spiking_loss(5)))
    assert jump.kind == "onset" and jump.loss_spike > 2


def test_the_loss_is_read_up_to_its_last_finite_state():
    loss = spiking_loss(45)
    loss[46:] = np.nan            # the run diverged after the spike: no recovery seen
    assert loss_spike(loss, 40, 40, 10, 2.0) == (pytest.approx(12.5), False)
    assert loss_spike(spiking_loss(45), 40, 40, 10, 2.0)[1]


@pytest.mark.parametrize("bad", [dict(spike_ratio=1.0), dict(window=0),
                                 dict(onset_increments=-1)])
def test_bad_jump_options_are_refused(bad):
    with pytest.raises(PhantomError):
        JumpOptions(**bad)
