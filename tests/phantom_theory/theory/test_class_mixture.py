"""M_class: the class layer reads the architecture-level class statistic (one row per
architecture, a held-out one included) and predicts the continuous LoRA cost; its
exact class evidence is the integral it claims to be, it recovers planted classes,
and NUTS agrees with it."""

import dataclasses

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import FitOptions, TheoryFitter
from phantom_theory.theory.models import THEORIES, FitData, fit_data
from phantom_theory.theory.simulate import simulate_table
from tests.phantom_theory.theory.conftest import FAST, known_params, within_hdi

# Two classes far apart in the class statistic and in the LoRA cost.
SEPARATED = {"delta": 1.0, "weight": 0.5, "s_mean": np.array([0.05, 0.6]), "s_sigma": 0.03,
             "cost_mean": np.array([-1.0, 1.5]), "cost_sigma": 0.3}


def separated_table(theory="class", seed=5, **changes):
    params = known_params(6, 8, seed=4, **{**SEPARATED, **changes})
    if theory == "class_binary":
        params = {k: v for k, v in params.items() if not k.startswith("cost")}
        params["lora_logit"] = np.array([-3.0, 3.0])
    return simulate_table(theory, 6, 8, seed=seed, params=params)


@pytest.fixture(scope="module")
def separated_fits():
    """M_class on a 6 x 8 table with two well-separated classes, fitted exactly: on
    every architecture, and without arch00."""
    table, truth = separated_table()
    fitter = TheoryFitter("class", table, FAST)
    return table, truth, fitter.fit(), fitter.fit(held_out="arch00")


# -- the rows -----------------------------------------------------------------------------


def test_fit_data_has_every_class_statistic_and_the_fitted_lora_costs():
    table, _ = separated_table()
    data = fit_data(table, held_out="arch02")
    np.testing.assert_array_equal(data.class_arch, np.arange(6))
    np.testing.assert_array_equal(data.class_value, table.class_stat.values)
    assert 2 not in data.cost_arch and len(data.cost_y) == 5 * 8
    rows = table.lora_cost.values[data.cost_arch, data.cost_context]
    np.testing.assert_array_equal(data.cost_y, rows)


def test_a_table_without_class_statistics_gives_no_class_or_cost_rows():
    table, _ = separated_table()
    data = fit_data(table.drop_vars(["class_stat", "lora_cost"]))
    assert len(data.class_arch) == len(data.class_value) == 0
    assert len(data.cost_arch) == len(data.cost_context) == len(data.cost_y) == 0
    assert len(data.b_value) == 6 * 8     # log b stays, a covariate


def test_the_simulation_draws_the_class_statistic_and_cost_from_the_classes():
    table, truth = separated_table(seed=9)
    z = truth["classes"]
    assert set(z) == {0, 1}
    s = table.class_stat.values
    np.testing.assert_allclose(s, SEPARATED["s_mean"][z], atol=5 * SEPARATED["s_sigma"])
    cost = table.lora_cost.values
    np.testing.assert_allclose(cost.mean(axis=1), SEPARATED["cost_mean"][z],
                               atol=5 * SEPARATED["cost_sigma"] / np.sqrt(8))
    assert np.isnan(table.lora_success.values).all()
    binary, truth = separated_table("class_binary", seed=9)
    assert np.isnan(binary.lora_cost.values).all()
    assert set(np.unique(binary.lora_success.values)) <= {0.0, 1.0}


# -- the exact class evidence ---------------------------------------------------------------


def two_architectures() -> FitData:
    """Two architectures with a class statistic each and three LoRA cost rows, no
    outcome rows: the class layer alone."""
    none = np.zeros(0, int)
    return FitData(none, none, np.zeros(0), none, np.zeros(0), none, np.zeros(0), 2, 3,
                   np.zeros(2), class_arch=np.array([0, 1]), class_value=np.array([0.1, 0.5]),
                   cost_arch=np.array([0, 0, 1]), cost_context=np.array([0, 1, 0]),
                   cost_y=np.array([0.4, 0.9, 2.0]))


U, W = np.polynomial.legendre.leggauss(160)
SPAN = 12.0      # the means are integrated over +-SPAN sds of their conditional normal


def _class_integrand(m, rows, prior, sigma):
    """The prior density of one class mean at nodes m times its rows' density."""
    log = stats.norm.logpdf(m, prior.mu, prior.sigma)
    for y in rows:
        log = log + stats.norm.logpdf(y, m, sigma)
    return np.exp(log)


def _nodes(centre, sd):
    """Gauss-Legendre nodes and weights over centre +- SPAN sd."""
    return centre + SPAN * sd * U, SPAN * sd * W


def brute_block(rows_by_class, prior, scale_prior) -> float:
    """p(rows | z) by numerical integration over the two class means (Gauss-Legendre,
    on m0 < m1 when the prior is ordered) and the scale (adaptive, on log scale),
    from the raw densities of the prior and the rows. The conditional normal of each
    mean only centres its nodes."""
    def given_scale(sigma):
        centre, sd = [], []
        for rows in rows_by_class:
            precision = 1 / prior.sigma**2 + len(rows) / sigma**2
            centre.append((prior.mu / prior.sigma**2 + sum(rows) / sigma**2) / precision)
            sd.append(1 / np.sqrt(precision))
        m0, w0 = _nodes(centre[0], sd[0])
        f0 = _class_integrand(m0, rows_by_class[0], prior, sigma)
        if not prior.ordered:
            m1, w1 = _nodes(centre[1], sd[1])
            return (w0 @ f0) * (w1 @ _class_integrand(m1, rows_by_class[1], prior, sigma))
        a = np.maximum(m0, centre[1] - SPAN * sd[1])
        b = np.maximum(a, centre[1] + SPAN * sd[1])
        m1 = (a + b)[:, None] / 2 + (b - a)[:, None] / 2 * U[None, :]
        inner = (_class_integrand(m1, rows_by_class[1], prior, sigma) @ W) * (b - a) / 2
        return 2 * (w0 @ (f0 * inner))

    def integrand(x):
        sigma = np.exp(x)
        return 2 * stats.norm.pdf(sigma, 0, scale_prior.sigma) * sigma * given_scale(sigma)

    top = np.log(12 * scale_prior.sigma)
    value, _ = integrate.quad(integrand, -25.0, top, epsabs=0, epsrel=1e-11, limit=400,
                              points=[np.log(scale_prior.sigma)])
    return value


def test_the_class_evidence_is_the_brute_force_integral_on_two_architectures():
    theory = THEORIES["class"]
    data = two_architectures()
    evidence = theory.class_evidence(data)
    p = theory.priors
    stat = dict(zip(data.class_arch, data.class_value, strict=True))
    brute = []
    for z in evidence.z:
        members = [[a for i, a in enumerate(evidence.included) if z[i] == k] for k in (0, 1)]
        s_rows = [[stat[a] for a in m] for m in members]
        cost_rows = [[y for a, y in zip(data.cost_arch, data.cost_y, strict=True) if a in m]
                     for m in members]
        n1 = int(z.sum())
        prior_z, _ = integrate.quad(lambda w, n1=n1: w**n1 * (1 - w) ** (2 - n1)
                                    * stats.beta.pdf(w, p["weight"].alpha, p["weight"].beta),
                                    0, 1, epsabs=0, epsrel=1e-12)
        brute.append(np.log(prior_z) + np.log(brute_block(s_rows, p["s_mean"], p["s_sigma"]))
                     + np.log(brute_block(cost_rows, p["cost_mean"], p["cost_sigma"])))
    np.testing.assert_allclose(np.exp(evidence.log_weight - np.array(brute)), 1.0, rtol=1e-6)
    posterior = np.exp(evidence.log_weight - logsumexp(evidence.log_weight))
    assert posterior.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(posterior, np.exp(np.array(brute) - logsumexp(brute)), rtol=1e-6)


def test_the_class_evidence_grids_hold_the_whole_posterior():
    evidence = THEORIES["class"].class_evidence(fit_data(separated_table()[0]))
    assert len(evidence.z) == 2**6 and evidence.edge < 1e-8


# -- recovery of planted classes ----------------------------------------------------------


def test_well_separated_classes_are_recovered_with_their_lora_costs(separated_fits):
    table, truth, fit, _ = separated_fits
    assert fit.inference == "exact" and fit.passed, fit.describe()
    post = fit.flat()
    probability = THEORIES["class"].class_probability(post, fit.data).mean(axis=0)
    true_class = np.where(truth["classes"] == 1, probability, 1 - probability)
    assert (true_class > 0.9).all(), probability
    for k in (0, 1):
        assert within_hdi(post["cost_mean"][:, k], SEPARATED["cost_mean"][k])
        assert within_hdi(post["s_mean"][:, k], SEPARATED["s_mean"][k])


def test_a_held_out_architecture_is_classified_by_its_own_class_statistic(separated_fits):
    """arch00's outcomes and LoRA costs are masked; its class statistic alone places it,
    and its predicted LoRA cost is its class's."""
    table, truth, _, blind = separated_fits
    theory = THEORIES["class"]
    assert 0 not in blind.data.cost_arch and 0 in blind.data.class_arch
    post = blind.flat()
    probability = theory.class_probability(post, blind.data).mean(axis=0)[0]
    true = truth["classes"][0]
    assert (probability if true == 1 else 1 - probability) > 0.9
    cost = theory.lora_cost_draws(post, blind.data, 0, 4, np.random.default_rng(1))
    assert cost.shape == (len(post["mu"]), 4)
    assert within_hdi(cost[:, 0], SEPARATED["cost_mean"][true])
    # The draws' spread is the class's row scale with the class mean's uncertainty.
    assert np.std(cost) == pytest.approx(np.sqrt(np.mean(post["cost_sigma"] ** 2)
                                                 + np.var(post["cost_mean"][:, true])), rel=0.1)


def test_the_binary_form_recovers_lora_success_per_class():
    table, truth = separated_table("class_binary")
    theory = THEORIES["class_binary"]
    assert "lora_logit" in theory.priors and "cost_mean" not in theory.priors
    assert "stability edge" in theory.lora_budget
    fit = TheoryFitter("class_binary", table, FAST).fit()
    assert fit.inference == "exact" and fit.passed, fit.describe()
    probability = theory.class_probability(fit.flat(), fit.data).mean(axis=0)
    assert np.all((probability > 0.9) == (truth["classes"] == 1)), probability
    success = theory.lora_success_probability(fit.flat()).mean(axis=0)
    assert success[0] < 0.3 < 0.7 < success[1]
    with pytest.raises(PhantomError, match="class for a cost prediction"):
        theory.lora_cost_draws(fit.flat(), fit.data, 0, 2, np.random.default_rng(0))


def test_the_cost_form_refuses_a_success_probability(separated_fits):
    _, _, fit, _ = separated_fits
    with pytest.raises(PhantomError, match="fit class_binary"):
        THEORIES["class"].lora_success_probability(fit.flat())
    assert set(THEORIES["class"].lora_by_class(fit.flat())) == {"lora_cost_mean"}


# -- NUTS against exact -------------------------------------------------------------------


@pytest.mark.slow
def test_nuts_agrees_with_the_exact_class_posterior():
    """M_class on a crossed 4 x 4 table with separated classes, by NUTS (4 x 2000
    draws) and exactly: posterior means within 4 Monte Carlo standard errors, sds
    within 4 standard errors and 2%. The class statistics sit 1.2 apart: the
    assignment with the labels swapped (a wide s_sigma makes it compatible with the
    ordered s_mean) then holds 4e-5 of the posterior. NUTS cannot cross to that mode;
    the exact sum includes it (0.2% of the mass at SEPARATED's 0.55 apart, enough
    to widen the sd of a class's cost mean by 15%)."""
    from tests.phantom_theory.theory.test_exact import mcse

    params = known_params(4, 4, seed=4, **{**SEPARATED, "s_mean": np.array([0.0, 1.2])})
    table, _ = simulate_table("class", 4, 4, seed=3, params=params)
    options = FitOptions(inference="nuts", draws=2000, tune=1000, chains=4, seed=3)
    nuts = TheoryFitter("class", table, options).fit()
    exact = TheoryFitter("class", table, dataclasses.replace(options, inference="exact")).fit()
    assert nuts.inference == "nuts" and nuts.passed, nuts.describe()
    for name, k in (("mu", None), ("tau", None), ("delta", None), ("s_mean", 0), ("s_mean", 1),
                    ("cost_mean", 0), ("cost_mean", 1), ("cost_sigma", None)):
        draws = nuts.posterior[name] if k is None else nuts.posterior[name][..., k]
        other = exact.flat()[name] if k is None else exact.flat()[name][:, k]
        error = mcse(draws, "mean") + other.std() / np.sqrt(len(other))
        assert abs(draws.mean() - other.mean()) < 4 * error, (name, k, draws.mean(),
                                                                other.mean())
        assert abs(draws.std() - other.std()) < 4 * mcse(draws, "sd") + 0.02 * other.std(), (
            name, k, draws.std(), other.std())
