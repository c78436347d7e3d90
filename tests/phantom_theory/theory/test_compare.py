"""Comparing theories: stacking weights and leave-one-architecture-out."""

import numpy as np
import pytest

from phantom_theory.theory.compare import evaluate, stacking_weights
from phantom_theory.theory.simulate import simulate_table
from tests.phantom_theory.theory.conftest import FAST, known_params


def test_stacking_puts_the_weight_on_the_better_model():
    rng = np.random.default_rng(0)
    good, bad = rng.normal(-1, 0.1, 40), rng.normal(-3, 0.1, 40)
    weights = stacking_weights(np.stack([bad, good]))
    assert weights.sum() == pytest.approx(1.0) and weights[1] > 0.95


def test_loao_prefers_the_hierarchical_model_when_architectures_differ():
    params = known_params(5, 8, seed=8)
    params["tau"] = 1.0
    table, _ = simulate_table("hier", 5, 8, seed=9, params=params)
    evaluation = evaluate(table, ("universal", "hier"), FAST, workers=1)
    comparison = evaluation.comparison()
    assert float(comparison.elpd_loao.sel(theory="hier")) > float(
        comparison.elpd_loao.sel(theory="universal"))
    assert float(comparison.elpd_loo.sel(theory="hier")) > float(
        comparison.elpd_loo.sel(theory="universal"))
