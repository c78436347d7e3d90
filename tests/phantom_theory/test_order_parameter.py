"""The order parameter on small arrays with known answers (THEORY.md sections 3, 5)."""

import numpy as np
import pytest
import torch

from phantom_theory import order_parameter as op


@pytest.fixture
def toy():
    """A 5-token vocabulary in 3 dimensions; c = 0, k = 1."""
    U = np.array([[1.0, 0.0, 0.0],
                  [0.9, np.sqrt(1 - 0.81), 0.0],
                  [0.0, 1.0, 0.0],
                  [0.0, 0.0, 2.0],
                  [1.0, 1.0, 1.0]])
    p = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    return U, p


def test_overlaps_are_cosines_of_the_rows(toy):
    U, _ = toy
    s_c, s_k = op.pair_overlaps(U, 0, 1)
    unit = U / np.linalg.norm(U, axis=1, keepdims=True)
    np.testing.assert_allclose(s_c, unit @ unit[0])
    np.testing.assert_allclose(s_k, unit @ unit[1])


def test_phi_is_the_population_difference_of_rho(toy):
    U, p = toy
    unit = U / np.linalg.norm(U, axis=1, keepdims=True)
    rho = sum(p_i * np.outer(u, u) for p_i, u in zip(p, unit, strict=True))
    expected = unit[0] @ rho @ unit[0] - unit[1] @ rho @ unit[1]
    phi = op.order_parameter(p, op.population_weights(*op.pair_overlaps(U, 0, 1)))
    assert phi == pytest.approx(expected, rel=1e-12)


def test_signal_plus_drag_is_phi(toy):
    U, p = toy
    s_c, s_k = op.pair_overlaps(U, 0, 1)
    w = op.population_weights(s_c, s_k)
    phi = op.order_parameter(p, w)
    bulk = [2, 3, 4]
    explicit_drag = sum(p[i] * (s_c[i] ** 2 - s_k[i] ** 2) for i in bulk)
    assert op.drag(p, w, 0, 1) == pytest.approx(explicit_drag, rel=1e-12)
    assert op.signal(p, s_c[1], 0, 1) == pytest.approx((0.1 - 0.3) * (1 - 0.81), rel=1e-12)
    assert op.signal(p, s_c[1], 0, 1) + op.drag(p, w, 0, 1) == pytest.approx(phi, rel=1e-12)


def test_signal_is_positive_exactly_when_c_leads(toy):
    U, p = toy
    s_ck = op.pair_overlaps(U, 0, 1)[0][1]
    assert op.signal(p, s_ck, 0, 1) < 0
    assert op.signal(p[[1, 0, 2, 3, 4]], s_ck, 0, 1) > 0


def test_attribution_parts_add_up_to_the_change(toy):
    U, p = toy
    U2 = U + 0.1 * np.arange(15).reshape(5, 3) / 15
    p2 = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    w1 = op.population_weights(*op.pair_overlaps(U, 0, 1))
    w2 = op.population_weights(*op.pair_overlaps(U2, 0, 1))
    phi1, phi2 = op.order_parameter(p, w1), op.order_parameter(p2, w2)
    readout, geometry = op.attribution(p2, w1, phi1, phi2)
    assert readout == pytest.approx(op.order_parameter(p2, w1) - phi1, abs=1e-15)
    assert readout + geometry == pytest.approx(phi2 - phi1, abs=1e-15)
    assert geometry != 0


def test_frozen_geometry_has_an_exactly_zero_geometry_part(toy):
    U, p = toy
    w = op.population_weights(*op.pair_overlaps(U, 0, 1))
    p2 = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    _, geometry = op.attribution(p2, w, op.order_parameter(p, w), op.order_parameter(p2, w))
    assert geometry == 0.0


def test_drag_attribution_parts_add_up_to_the_change_in_the_drag(toy):
    U, p = toy
    U2 = U + 0.1 * np.arange(15).reshape(5, 3) / 15
    p2 = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    w1 = op.population_weights(*op.pair_overlaps(U, 0, 1))
    w2 = op.population_weights(*op.pair_overlaps(U2, 0, 1))
    d1, d2 = op.drag(p, w1, 0, 1), op.drag(p2, w2, 0, 1)
    readout, geometry = op.drag_attribution(p2, w1, d1, d2, 0, 1)
    bulk = [2, 3, 4]
    assert readout == pytest.approx(p2[bulk] @ w1[bulk] - p[bulk] @ w1[bulk], abs=1e-15)
    assert geometry == pytest.approx(p2[bulk] @ (w2[bulk] - w1[bulk]), abs=1e-15)
    assert readout + geometry == pytest.approx(d2 - d1, abs=1e-15)
    assert geometry != 0


def test_a_frozen_geometry_has_an_exactly_zero_drag_geometry_part(toy):
    U, p = toy
    w = op.population_weights(*op.pair_overlaps(U, 0, 1))
    p2 = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    readout, geometry = op.drag_attribution(p2, w, op.drag(p, w, 0, 1), op.drag(p2, w, 0, 1),
                                            0, 1)
    assert geometry == 0.0 and readout != 0


def test_weights_from_rows_equal_weights_from_overlaps(toy):
    U, _ = toy
    expected = op.population_weights(*op.pair_overlaps(U, 0, 1))
    weights, s_ck = op.pair_weights(U, 0, 1)
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-15)
    assert s_ck == pytest.approx(0.9, rel=1e-12)


def test_exact_pair_weights_make_the_pair_terms_equal_the_signal(toy):
    U, p = toy
    U32 = U.astype(np.float32)
    weights = op.bulk_weights(U32, U32[[0, 1]]).astype(np.float64)
    s_ck = op.pair_overlap(U[[0, 1]])
    op.exact_pair_weights(weights, s_ck, 0, 1)
    phi, sigma, delta = op.decompose(p, weights, s_ck, 0, 1)
    assert sigma + delta == pytest.approx(phi, rel=1e-15)


def test_torch_and_batched_inputs_give_the_same_numbers(toy):
    U, p = toy
    batch_U = torch.tensor(np.stack([U, 2 * U]))        # scaling rows leaves overlaps alone
    s_c, s_k = op.pair_overlaps(batch_U, 0, 1)
    expected = op.pair_overlaps(U, 0, 1)
    for i in range(2):
        np.testing.assert_allclose(s_c[i].numpy(), expected[0])
        np.testing.assert_allclose(s_k[i].numpy(), expected[1])
