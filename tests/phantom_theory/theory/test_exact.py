"""Exact inference for the linear-Gaussian theories: the marginal likelihood is the
multivariate normal it claims to be, the grid is converged, the zero-sum runs over
the observed contexts, the held-out density is exact, NUTS agrees within its Monte
Carlo error, and a blind prediction cannot see the outcomes it predicts."""

import dataclasses

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from phantom_theory.theory.exact import ExactPosterior, exact_heldout_lpd
from phantom_theory.theory.fit import (
    FitOptions,
    TheoryFitter,
    choose_parameterization,
)
from phantom_theory.theory.models import THEORIES, fit_data
from phantom_theory.theory.models.additive import context_effects, observed_context_weight
from phantom_theory.theory.predict import predict_architecture, write_prediction
from phantom_theory.theory.simulate import simulate_table
from tests.phantom_theory.theory.test_fit import nuts_table

NUTS = FitOptions(inference="nuts", draws=1000, tune=1000, chains=4, seed=3)


def direct_loglik(posterior: ExactPosterior, x: np.ndarray) -> np.ndarray:
    """log p(y | theta) at coordinates x from the n x n covariance X V X' + sigma^2 I
    (for M_class, summed over the class assignments with delta's column R z)."""
    layout, priors = posterior.layout, posterior.priors
    scales = posterior.coords.scales(x)
    out = []
    for i in range(len(x)):
        one = {k: v[i:i + 1] for k, v in scales.items()}
        v = layout.variances(one, priors)[0]
        cov = layout.X @ np.diag(v) @ layout.X.T + one["sigma"][0] ** 2 * np.eye(len(layout.y))
        if posterior.classes is None:
            out.append(stats.multivariate_normal(np.zeros(len(layout.y)), cov).logpdf(layout.y))
            continue
        c = posterior.classes
        R = (layout.arch[:, None] == c.included[None, :]).astype(float)
        terms = [c.log_weight[k] + stats.multivariate_normal(
            priors.delta_mean * (R @ z), cov + priors.delta_var * np.outer(R @ z, R @ z)
        ).logpdf(layout.y) for k, z in enumerate(c.z)]
        out.append(logsumexp(terms))
    return np.array(out)


@pytest.mark.parametrize("design", ["crossed", "nested"])
@pytest.mark.parametrize("name", ["universal", "hier", "class"])
def test_the_marginal_likelihood_is_the_n_by_n_normal(name, design):
    table, _ = simulate_table(name, 3, 6, seed=4, design=design)
    posterior = ExactPosterior(THEORIES[name], fit_data(table, "arch01"), points=8)
    x = posterior.cells[np.random.default_rng(0).choice(len(posterior.cells), 4)]
    scales = posterior.coords.scales(x)
    mine = (posterior.evaluate(x)["log_density"] - posterior.priors.log_prior(scales)
            - posterior.coords.log_jacobian(x))
    np.testing.assert_allclose(mine, direct_loglik(posterior, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "design", "shape"), [
    ("hier", "crossed", (4, 4)), ("hier", "nested", (4, 8)),
    pytest.param("hier", "crossed", (6, 10), marks=pytest.mark.slow),
    pytest.param("class", "crossed", (4, 4), marks=pytest.mark.slow),
    pytest.param("class", "nested", (4, 8), marks=pytest.mark.slow)])
def test_doubling_the_grid_moves_the_mean_and_sd_of_mu_and_tau_by_under_one_percent(
        name, design, shape):
    table, _ = simulate_table(name, *shape, seed=7, design=design)
    posterior = ExactPosterior(THEORIES[name], fit_data(table, "arch00"))
    fine, default = posterior.moments(2 * posterior.points), posterior.moments()
    for parameter in ("mu", "tau"):
        (mean, sd), (mean2, sd2) = default[parameter], fine[parameter]
        assert abs(mean - mean2) / sd2 < 0.01 and abs(sd - sd2) / sd2 < 0.01, (parameter,
                                                                             default, fine)


def test_the_zero_sum_runs_over_the_observed_contexts_in_an_exact_fit():
    """A nested fold sees 6 of 8 contexts: gamma sums to zero over those 6, and the two
    held-out contexts are new ones measured against their mean, gamma_k / tau_gamma =
    w_k - c with w_k ~ N(0, 1) and c ~ N(0, 1/6): variance 1 + 1/6, correlation 1/7."""
    table, _ = simulate_table("hier", 4, 8, seed=3, design="nested")
    fit = TheoryFitter("hier", table, FitOptions(draws=10000, chains=2)).fit(held_out="arch00")
    gamma = fit.flat()["gamma"]
    observed = np.unique(fit.data.context)
    assert list(observed) == [2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(gamma[:, observed].sum(axis=1), 0.0, atol=1e-9)
    new = gamma[:, :2] / fit.flat()["tau_gamma"][:, None]
    se_var = np.sqrt(2 / len(new)) * (1 + 1 / 6)
    assert abs(new.var(axis=0) - (1 + 1 / 6)).max() < 4 * se_var
    assert abs(np.corrcoef(new.T)[0, 1] - 1 / 7) < 4 / np.sqrt(len(new))


@pytest.mark.parametrize("centred", [True, False])
def test_the_zero_sum_runs_over_the_observed_contexts_in_the_nuts_model(centred):
    import pymc as pm

    table, _ = simulate_table("hier", 4, 8, seed=3, design="nested")
    data = dataclasses.replace(fit_data(table, "arch00"), centred_contexts=centred)
    with pm.Model(coords={"context": [str(c) for c in table.context.values]}):
        d = {"context_weight": pm.Data("context_weight", observed_context_weight(data))}
        gamma = context_effects(THEORIES["hier"], data, d, 1.0)
        draws = pm.draw(gamma, draws=8000, random_seed=1)
    np.testing.assert_allclose(draws[:, 2:].sum(axis=1), 0.0, atol=1e-9)
    assert abs(draws[:, :2].var(axis=0) - (1 + 1 / 6)).max() < 4 * np.sqrt(2 / 8000) * 7 / 6


@pytest.mark.parametrize("name", ["universal", "hier", "class"])
def test_exact_fits_of_3x2_tables_have_no_divergences_and_pass_the_gate(name):
    table, _ = simulate_table(name, 3, 2, seed=11)
    fitter = TheoryFitter(name, table, FitOptions(draws=500, chains=2))
    for held_out in (None, "arch02"):
        fit = fitter.fit(held_out=held_out)
        assert fit.inference == "exact" and fit.diagnostics["divergences"] == 0
        assert fit.passed, fit.describe()


@pytest.mark.parametrize(("name", "design"), [("hier", "crossed"), ("hier", "nested"),
                                              ("class", "nested")])
def test_the_exact_heldout_density_is_the_posterior_mean_of_the_rows_density(name, design):
    """log p(y_h | rows) from the ratio of evidences equals log E_post p(y_h | theta), the
    expectation taken over 10000 iid draws, within their Monte Carlo error."""
    table, _ = simulate_table(name, 4, 8, seed=5, design=design)
    fit = TheoryFitter(name, table, FitOptions(draws=5000, chains=2)).fit(held_out="arch01")
    exact = exact_heldout_lpd(fit, table, "arch01")
    row = table.sel(model="arch01")
    observed = np.flatnonzero(row.observed.values)
    density = THEORIES[name].heldout_logdensity(fit.flat(), fit.data, 1, observed,
                                                row.log_q.values[observed])
    weights = np.exp(density - density.max())
    se = weights.std() / weights.mean() / np.sqrt(len(weights))
    assert abs(exact - (logsumexp(density) - np.log(len(density)))) < 4 * se + 1e-3


def test_the_sharpness_heldout_density_is_its_closed_form():
    table, _ = simulate_table("sharpness", 4, 5, seed=2)
    fit = TheoryFitter("sharpness", table, FitOptions(draws=20000, chains=1)).fit(
        held_out="arch00")
    exact = exact_heldout_lpd(fit, table, "arch00")
    density = THEORIES["sharpness"].heldout_logdensity(
        fit.flat(), fit.data, 0, np.arange(5), table.log_c_sharp.values[0])
    weights = np.exp(density - density.max())
    se = weights.std() / weights.mean() / np.sqrt(len(weights))
    assert abs(exact - (logsumexp(density) - np.log(len(density)))) < 4 * se + 1e-3


# -- NUTS against exact -------------------------------------------------------------------


@pytest.fixture(scope="module")
def nuts_and_exact():
    """M_hier on a crossed 5 x 6 table: full fits and fits without arch00, by NUTS
    (4 x 1000 draws) and exactly."""
    table, _ = nuts_table()
    out = {}
    for inference in ("nuts", "exact"):
        fitter = TheoryFitter("hier", table, dataclasses.replace(NUTS, inference=inference))
        out[inference] = (fitter.fit(), fitter.fit(held_out="arch00"))
    return table, out


def mcse(draws, kind):
    """Monte Carlo standard error of the mean or the sd of (chains, draws) draws, from
    the effective sample size of the draws (mean) or of their squared deviations (sd:
    se(s^2) / 2s). ArviZ's own sd method fails under numpy 2.4."""
    import arviz as az

    draws = np.atleast_2d(draws)
    if kind == "sd":
        squares = (draws - draws.mean()) ** 2
        return mcse(squares, "mean") / (2 * draws.std())
    ess = float(az.ess(az.convert_to_dataset({"x": draws}), method="mean")["x"])
    return float(draws.std() / np.sqrt(ess))


@pytest.mark.parametrize("name", ["mu", "tau"])
def test_nuts_agrees_with_the_exact_posterior_mean_and_sd(nuts_and_exact, name):
    _, fits = nuts_and_exact
    nuts, exact = fits["nuts"][0], fits["exact"][0]
    assert nuts.passed and nuts.inference == "nuts", nuts.describe()
    mean, sd = exact.exact.moments()[name]
    draws = nuts.posterior[name]
    assert abs(draws.mean() - mean) < 4 * mcse(draws, "mean"), (draws.mean(), mean)
    assert abs(draws.std() - sd) < 4 * mcse(draws, "sd") + 0.01 * sd, (draws.std(), sd)


def test_nuts_agrees_with_the_exact_heldout_predictive(nuts_and_exact):
    from phantom_theory.theory.compare import _heldout_lpd

    table, fits = nuts_and_exact
    nuts, exact = fits["nuts"][1], fits["exact"][1]
    draws = {k: np.log(predict_architecture(f, table, "arch00", seed=1).eta_c_arch_draws.values)
             for k, f in (("nuts", nuts), ("exact", exact))}
    chains = nuts.posterior["mu"].shape[0]
    for stat, kind in ((np.mean, "mean"), (np.std, "sd")):
        error = mcse(draws["nuts"].reshape(chains, -1), kind) + mcse(
            draws["exact"].reshape(chains, -1), kind)
        assert abs(stat(draws["nuts"]) - stat(draws["exact"])) < 4 * error
    row = table.sel(model="arch00")
    density = THEORIES["hier"].heldout_logdensity(nuts.flat(), nuts.data, 0, np.arange(6),
                                                  row.log_q.values)
    weights = np.exp(density - density.max()).reshape(chains, -1)
    se = mcse(weights, "mean") / weights.mean()
    assert abs(_heldout_lpd(nuts, table, "arch00") - exact_heldout_lpd(exact, table, "arch00")
               ) < 4 * se + 1e-3


# -- a blind prediction cannot see the held-out outcomes ----------------------------------


@pytest.mark.parametrize("inference", ["exact", "nuts"])
def test_a_blind_prediction_is_byte_identical_whatever_the_held_out_outcomes(inference,
                                                                          tmp_path):
    """Perturbing arch00's measured outcomes (eta_c, log Q) leaves the files written for
    its blind prediction identical, byte for byte. The perturbation flips the NUTS
    parameterisation that the whole table would choose: a fit that chose it before
    masking would sample another geometry."""
    table, _ = nuts_table()
    perturbed = table.copy(deep=True)
    noise = 40.0 * np.random.default_rng(0).normal(size=6)
    perturbed["log_q"].loc[dict(model="arch00")] = noise
    perturbed["eta_c"].loc[dict(model="arch00")] = np.exp(
        noise - table.log_scale.sel(model="arch00").values)
    assert choose_parameterization(fit_data(table)) != choose_parameterization(
        fit_data(perturbed))
    options = FitOptions(inference=inference, draws=200, tune=300, chains=2, seed=3)
    files = []
    for i, t in enumerate((table, perturbed)):
        fit = TheoryFitter("hier", t, options).fit(held_out="arch00")
        assert fit.inference == inference
        prediction = predict_architecture(fit, t, "arch00", seed=5)
        files.append(write_prediction(prediction, tmp_path / f"p{i}.nc"))
    assert files[0].read_bytes() == files[1].read_bytes()
