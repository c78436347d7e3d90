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


def _comparison(lpd: dict):
    import xarray as xr

    theories = list(lpd)
    folds = np.array([lpd[t] for t in theories])
    return xr.Dataset({"elpd_loao": ("theory", folds.sum(axis=1)),
                       "elpd_loao_se": ("theory", folds.std(axis=1, ddof=1) * np.sqrt(3)),
                       "lpd_loao": (("theory", "held_out"), folds),
                       "fits_passed": ("theory", [True] * len(theories))},
                      coords={"theory": theories, "held_out": ["a", "b", "c"]})


def test_side_by_side_puts_each_theory_beside_linear0_in_elpd_and_blind_error():
    from phantom_theory.theory.compare import side_by_side, side_by_side_table

    comparison = _comparison({"linear0": [-1.0, -2.0, -3.0], "hier": [-0.5, -2.5, -2.0]})
    scores = [{"theory": t, "held_out": h, "relative_error": e, "covered": c,
               "anchor_relative_error": 40.0 + i}
              for t, errors in (("linear0", (0.1, 0.2, 0.3)), ("hier", (0.05, 0.4, 0.25)))
              for i, (h, e, c) in enumerate(zip("abc", errors, (True, False, True),
                                                strict=True))]
    rows = {r["theory"]: r for r in side_by_side(comparison, scores)}
    hier = rows["hier"]
    # differences per fold: +0.5, -0.5, +1.0 -> sum 1.0, se sqrt(3) * sd
    assert hier["delta_elpd"] == pytest.approx(1.0)
    assert hier["delta_se"] == pytest.approx(np.sqrt(3) * np.std([0.5, -0.5, 1.0], ddof=1))
    assert hier["blind_median_error"] == pytest.approx(0.25)
    assert (hier["blind_covered"], hier["blind_n"]) == (2, 3)
    assert rows["linear0"]["delta_elpd"] == 0.0
    assert rows["2/lambda0"]["blind_median_error"] == pytest.approx(41.0)
    text = side_by_side_table(comparison, scores)
    assert text.splitlines()[1].startswith("hier")   # best LOAO ELPD first
    assert text.endswith("beats linear0 in both LOAO ELPD and blind median error: none")
    better = [dict(s, relative_error=s["relative_error"] / 10) if s["theory"] == "hier" else s
              for s in scores]
    assert side_by_side_table(comparison, better).endswith("blind median error: hier")
