"""The theory table: every predictor's log Q from the measured parts, the LoRA cost,
held-out contexts kept out of every fit, and the zero-parameter baseline linear0
read from the linear columns (on the committed first real study)."""

from pathlib import Path

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.quantities import open_quantities
from phantom_theory.sweep import open_sweep
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.predict import predict_architecture
from phantom_theory.theory.table import (
    PREDICTORS,
    TableOptions,
    mask_outcomes,
    measured,
    theory_table,
)

REAL = Path(__file__).resolve().parents[3] / "data" / "real"


@pytest.fixture(scope="module")
def inputs():
    return open_quantities(REAL / "quantities.nc"), open_sweep(REAL / "sweep")


@pytest.fixture(scope="module")
def table(inputs):
    return theory_table(*inputs)


def test_the_linear_columns_are_the_reduced_rate_recomputed_from_g0(inputs, table):
    quantities, sweep = inputs
    steps = float(sweep.attrs["run_steps"])
    G0 = quantities.G0.sel(mode="full", optimizer="sgd")
    expected = np.log(table.eta_c) + np.log(steps * G0 / np.abs(quantities.m0))
    rows = table.observed.values
    assert rows.sum() == 6
    np.testing.assert_allclose(table.log_q_linear.values[rows], expected.values[rows], rtol=1e-12)
    np.testing.assert_array_equal(table.log_q.values, table.log_q_linear.values)
    assert table.attrs["table_predictor"] == "linear"


NEW_PARTS = ("second_order_a", "second_order_b", "ray_length")


def test_predictors_missing_from_old_quantities_are_nan_not_invented(inputs):
    # quantities that predate the second-order and ray measurements (as the first
    # study's did until it was re-measured): their columns are NaN, and no row of
    # those predictors is fitted
    quantities, sweep = inputs
    old = quantities.drop_vars([n for n in NEW_PARTS if n in quantities])
    table = theory_table(old, sweep)
    assert np.isnan(table.log_q_second).all() and np.isnan(table.log_q_ray).all()
    assert not theory_table(old, sweep, TableOptions(predictor="second")).observed.any()


def test_another_predictor_moves_log_q_and_its_scale_together(inputs, table):
    """log Q and log scale move together: log eta_c = log Q - log scale whichever
    predictor, and the second and ray columns are the measured parts' eta_hat."""
    from phantom_theory import quantities as q

    quantities, sweep = inputs
    steps = float(sweep.attrs["run_steps"])
    for predictor in ("second", "ray"):
        other = theory_table(*inputs, TableOptions(predictor=predictor))
        np.testing.assert_array_equal(other.log_q.values, other.log_q_second.values
                                      if predictor == "second" else other.log_q_ray.values)
        rows = other.observed.values
        assert rows.sum() == 6
        np.testing.assert_allclose((other.log_q - other.log_scale).values[rows],
                                   np.log(other.eta_c.values[rows]), rtol=1e-12)
        aligned = quantities.reindex(model=other.model.values, context=other.context.values)
        part = {n: aligned[n].sel(mode="full", optimizer="sgd").values
                for n in ("G0", *NEW_PARTS)}
        eta_hat = q.predictors(part, aligned.m0.values, steps)[f"eta_hat_{predictor}"]
        np.testing.assert_allclose(np.exp(-other.log_scale.values[rows]),
                                   np.asarray(eta_hat)[rows], rtol=1e-10)


def test_the_lora_cost_is_the_log_ratio_of_the_two_modes(inputs, table):
    _, sweep = inputs
    lora, _ = measured(sweep, "lora", "sgd")
    full, _ = measured(sweep, "full", "sgd")
    row = dict(model="smollm2-135m", context="pretty-beautiful")
    expected = np.log(float(lora.sel(**row))) - np.log(float(full.sel(**row)))
    assert float(table.lora_cost.sel(**row)) == pytest.approx(expected, rel=1e-12)
    assert expected > 0   # LoRA needs a larger learning rate


def test_held_out_contexts_keep_their_outcomes_but_no_fit_sees_them(inputs, table):
    held = theory_table(*inputs, held_out_contexts=["odor-smell"])
    column = held.sel(context="odor-smell")
    assert not column.observed.any() and bool(column.held_out_context)
    assert np.isfinite(column.eta_c.sel(model="qwen2.5-coder-0.5b"))
    assert int(held.observed.sum()) == int(table.observed.sum()) - 1
    assert held.attrs["held_out_contexts"] == "odor-smell"
    with pytest.raises(PhantomError, match="nowhere-context"):
        theory_table(*inputs, held_out_contexts=["nowhere-context"])


def test_masking_a_model_hides_every_predictor_and_the_lora_cost(table):
    masked = mask_outcomes(table, "gemma3-270m").sel(model="gemma3-270m")
    for name in ("eta_c", "lora_cost", *(f"log_q_{p}" for p in PREDICTORS)):
        assert np.isnan(masked[name]).all(), name
    assert np.isfinite(masked.log_scale_linear).any()   # its at-init quantities stay


@pytest.mark.parametrize("bad", [dict(predictor="cubic"), dict(mode="half"),
                                 dict(optimizer="lion"), dict(class_statistic="b")])
def test_bad_table_options_name_the_value(bad):
    with pytest.raises(PhantomError, match=str(next(iter(bad.values())))):
        TableOptions(**bad)


def test_linear0_predicts_the_linear_eta_hat_with_nothing_fitted(table):
    """Its median is eta_hat_linear itself (up to the median of its fixed-noise draws),
    and masking the held-out model's outcomes cannot move it."""
    fit = TheoryFitter("linear0", table, FitOptions(draws=4000, chains=1)).fit("smollm2-135m")
    assert fit.passed and fit.data.y.size == 4
    prediction = predict_architecture(fit, table, "smollm2-135m")
    eta_hat = np.exp(-table.log_scale_linear.sel(model="smollm2-135m",
                                                 context=prediction.context.values))
    np.testing.assert_allclose(prediction.eta_c_median.values, eta_hat.values, rtol=0.05)
    spread = np.log(prediction.eta_c_hdi_high / prediction.eta_c_hdi_low).values
    np.testing.assert_allclose(spread, 2 * 1.88 * 0.5, rtol=0.05)   # 94% of N(0, 0.5)


def test_linear0_leave_one_out_is_its_density_exactly(table):
    """With nothing fitted, leaving a row out changes nothing: PSIS-LOO is the sum of
    the rows' Normal(0, s0) log densities, with no Pareto k to report."""
    from scipy import stats

    from phantom_theory.theory.compare import psis_loo

    fit = TheoryFitter("linear0", table, FitOptions(draws=400, chains=2)).fit()
    loo = psis_loo(fit)
    expected = stats.norm(0, 0.5).logpdf(fit.data.y)
    np.testing.assert_allclose(loo["pointwise"], expected, rtol=1e-12)
    assert loo["elpd"] == pytest.approx(expected.sum(), rel=1e-12)
    assert loo["p"] == 0.0 and np.isnan(loo["pareto_k_max"]) and loo["n_pareto_k_high"] == 0
