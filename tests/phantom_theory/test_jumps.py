"""Jump detection and the phantom verdict on synthetic trajectories (THEORY.md section 5)."""

import numpy as np

from phantom_theory.jumps import JumpOptions, find_jumps, jump_mask, local_median

T = 100


def smooth_run(jump_at=None, jump_size=0.3, geometry_share=0.0):
    phi = np.linspace(-0.1, 0.1, T + 1) + 0.001 * np.sin(np.arange(T + 1))
    if jump_at is not None:
        phi[jump_at + 1:] += jump_size
    dphi = np.diff(phi)
    readout = np.append(dphi * (1 - geometry_share), np.nan)
    geometry = np.append(dphi * geometry_share, np.nan)
    flat = np.zeros(T + 1)
    return phi, readout, geometry, flat, flat


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
                       np.zeros(T + 1))
    assert [(j.start, j.end) for j in jumps] == [(40, 41)]


def test_a_readout_only_jump_is_a_phantom():
    (jump,) = find_jumps(*smooth_run(jump_at=40))
    assert jump.readout_share == 1.0 and jump.phantom


def test_a_jump_carried_by_the_geometry_is_not_a_phantom():
    (jump,) = find_jumps(*smooth_run(jump_at=40, geometry_share=0.5))
    assert abs(jump.readout_share - 0.5) < 1e-9 and not jump.phantom


def test_the_geometry_motion_ratio_measures_the_jump_against_typical_steps():
    phi, readout, geometry, _, _ = smooth_run(jump_at=40)
    overlap = 0.9 + 0.0001 * np.arange(T + 1)
    overlap[41:] += 0.01                      # the pair moves 100x its typical step
    (jump,) = find_jumps(phi, readout, geometry, overlap, np.zeros(T + 1))
    assert abs(jump.overlap_ratio - 101) < 1e-6
    assert jump.distance_ratio == 0.0


def test_thresholds_are_options():
    phi, *rest = smooth_run(jump_at=40, jump_size=0.3)
    assert find_jumps(phi, *rest, options=JumpOptions(a_star=0.9)) == []
