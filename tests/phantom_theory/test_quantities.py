"""The pure quantities of an embedding matrix and the reduced learning rate,
against known answers."""

import numpy as np
import pytest

from phantom_theory import quantities as q


def test_bulk_anisotropy_is_one_for_isotropic_rows_and_large_for_a_shared_direction():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(4000, 32))
    shared = isotropic / np.linalg.norm(isotropic, axis=1, keepdims=True) + 2.0 * np.eye(32)[0]
    assert q.bulk_anisotropy(isotropic, 0, 1)[0] == pytest.approx(1.0, abs=0.1)
    assert q.bulk_anisotropy(shared, 0, 1)[0] > 10


def test_leak_fraction_counts_bulk_rows_past_the_correct_row():
    U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -0.2], [0.0, -1.0], [-1.0, 0.0]])
    # w = (1, -1)/sqrt 2: c projects to 0.707; rows 2 (0.849) and 3 (0.707) tie or pass.
    assert q.leak_fraction(U, 0, 1) == pytest.approx(1 / 3)


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
