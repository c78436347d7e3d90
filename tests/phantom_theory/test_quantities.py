"""The pure quantities of an embedding matrix, the leak, the class statistics and the
at-init predictors of eta_c, against known answers."""

import numpy as np
import pytest

from phantom_theory import quantities as q


def test_bulk_anisotropy_is_one_for_isotropic_rows_and_large_for_a_shared_direction():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(4000, 32))
    shared = isotropic / np.linalg.norm(isotropic, axis=1, keepdims=True) + 2.0 * np.eye(32)[0]
    assert q.bulk_anisotropy(isotropic, 0, 1)[0] == pytest.approx(1.0, abs=0.1)
    assert q.bulk_anisotropy(shared, 0, 1)[0] > 10


def test_embedding_statistics_of_known_matrices():
    rng = np.random.default_rng(1)
    a = 0.6
    direction = np.eye(16)[0]
    noise = rng.normal(size=(3000, 16))
    noise -= np.outer(noise @ direction, direction)
    rows = a * direction + np.sqrt(1 - a**2) * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    stats = q.embedding_statistics(rows, sample=1000)
    assert stats["mean_cosine"] == pytest.approx(a**2, abs=0.02)
    rank_one = np.outer(rng.normal(size=500), rng.normal(size=8))
    assert q.embedding_statistics(rank_one)["effective_rank"] == pytest.approx(1.0, abs=0.05)
    assert q.embedding_statistics(rank_one)["top_pc_share"] == pytest.approx(1.0)


def test_reduced_lr_of_the_linear_theory_is_one():
    assert q.reduced_lr(eta=0.01, steps=100, G0=2.0, m0=-2.0) == pytest.approx(1.0)


def test_leak_count_is_an_integer_count():
    U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -0.2], [0.0, -1.0], [-1.0, 0.0]])
    # w = (1, -1)/sqrt 2: c projects to 0.707; row 2 (0.849) passes, row 3 only ties.
    count = q.leak_count(U, 0, 1)
    assert count == 1 and isinstance(count, int)


def test_weighted_leak_is_the_bulk_probability_on_the_competitor_side():
    U = np.array([[1.0, 0.0],       # c
                  [0.8, 0.6],       # k
                  [0.0, 1.0],       # S_c = 0, S_k = 0.6: competitor side
                  [3.0, 0.3],       # S_c = 0.995, S_k = 0.856: correct side, whatever its norm
                  [-0.6, 0.8],      # S_c = -0.6, S_k = 0: correct side (squares, not signs)
                  [0.1, 1.0]])      # S_c = 0.0995, S_k = 0.677: competitor side
    p = np.array([0.3, 0.2, 0.1, 0.2, 0.15, 0.05])
    assert q.weighted_leak(U, p, 0, 1) == pytest.approx((0.1 + 0.05) / 0.5)


def test_second_order_coefficient_of_gd_on_a_quadratic_model():
    """L and m quadratic in theta: exact GD, (m_T - m_0 - eta T G0) / eta^2 -> C."""
    rng = np.random.default_rng(0)
    n, T, eta = 6, 5, 1e-5
    A = rng.normal(size=(n, n))
    A = A @ A.T
    B = rng.normal(size=(n, n))
    B = B + B.T
    g0, w = rng.normal(size=n), rng.normal(size=n)

    def margin(theta):
        return w @ theta + theta @ B @ theta / 2

    theta = np.zeros(n)
    for _ in range(T):
        theta = theta - eta * (A @ theta + g0)
    G0 = -w @ g0
    a, b = g0 @ B @ g0, w @ A @ g0
    measured = (margin(theta) - eta * T * G0) / eta**2
    assert measured == pytest.approx(q.second_order_coefficient(a, b, T), rel=1e-3)
    assert q.second_order_coefficient(a, b, 1) == pytest.approx(a / 2)


def test_nu_hat2_is_one_at_kappa_zero_and_solves_the_quadratic():
    nu, no_root = q.nu_hat_second(np.array([0.0, 1e-12, 2.0, -0.25, -0.3, np.nan]))
    assert nu[0] == 1.0 and nu[1] == pytest.approx(1 - 1e-12, abs=1e-15)
    assert nu[2] == pytest.approx(0.5)          # 0.5 + 2 * 0.25 = 1
    assert nu[3] == pytest.approx(2.0)          # the double root of -nu^2/4 + nu = 1
    assert np.isnan(nu[4]) and no_root.tolist() == [False, False, False, False, True, False]


def test_eta_hat_second_agrees_with_nu_hat2_and_extends_past_g0_zero():
    m0, T = -2.0, 10
    for G0, C in ((0.5, 3.0), (0.5, -0.2)):
        kappa = q.second_order_kappa(C, m0, G0, T)
        eta, no_root = q.eta_hat_second(m0, G0, C, T)
        assert eta == pytest.approx(q.nu_hat_second(kappa)[0] * abs(m0) / (T * G0))
        assert eta * T * G0 + eta**2 * C == pytest.approx(abs(m0)) and not no_root
    eta, no_root = q.eta_hat_second(m0, -0.1, 4.0, T)       # only the curvature turns m
    assert eta > 0 and eta * T * -0.1 + eta**2 * 4.0 == pytest.approx(abs(m0))
    eta, no_root = q.eta_hat_second(m0, 0.1, -1.0, T)       # 1 + 4 kappa < 0
    assert np.isnan(eta) and no_root
    assert np.isnan(q.eta_hat_linear(m0, -0.1, T)) and q.eta_hat_linear(m0, 0.1, T) == 2.0


@pytest.mark.parametrize("growth, target, exact", [
    (lambda s: 1 + s, 4.0, 2.0),                             # S + S^2/2 = 4
    (lambda s: 1 + 1e4 * s**2, 1.0, 0.0654497),              # LoRA-like: the root far below |m0| / G0
    (lambda s: np.exp(-s), 0.9, -np.log(0.1)),               # a slowing margin
    (lambda s: 1 / (1 - s) ** 2 if s < 1 else np.inf, 3.0, 0.75),   # G blows up past s = 1
])
def test_ray_root_finds_s_star_in_a_few_evaluations(growth, target, exact):
    root = q.ray_root(growth, target, scale=target / growth(0.0), g0=growth(0.0))
    assert root.converged and not root.no_root
    assert root.length == pytest.approx(exact, rel=2e-3)
    assert root.evaluations <= 10


def test_ray_root_flags_a_margin_that_never_arrives():
    root = q.ray_root(lambda s: np.exp(-s), 2.0, scale=2.0, g0=1.0, bound=100.0)
    assert root.no_root and np.isnan(root.length)
    assert max(root.nodes) == pytest.approx(200.0)    # searched up to the bound, no further


def test_class_statistics_is_a_per_model_table():
    import xarray as xr

    from phantom_theory.errors import PhantomError

    ds = xr.Dataset(
        {"mean_cosine": (("model", "geometry"), [[0.3, 0.1], [0.05, 0.02]]),
         "top_pc_share": (("model", "geometry"), [[0.4, 0.2], [0.03, 0.02]]),
         "effective_rank": (("model", "geometry"), [[32.0, 48.0], [60.0, 61.0]]),
         "embedding_dim": ("model", [64, 96]),
         "b_c": (("model", "context"), [[5.0, 9.0], [1.0, 1.2]])},
        coords={"model": ["a", "b"], "geometry": ["readout", "input"], "context": ["x", "y"]})
    table = q.class_statistics(ds)
    assert dict(table.sizes) == {"model": 2}
    np.testing.assert_allclose(table.effective_rank_ratio, [0.5, 60 / 96])
    np.testing.assert_allclose(q.class_statistics(ds, "input").mean_cosine, [0.1, 0.02])
    assert table.effective_rank_ratio.attrs["long_name"]
    with pytest.raises(PhantomError, match="embedding_dim"):
        q.class_statistics(ds.drop_vars("embedding_dim"))
