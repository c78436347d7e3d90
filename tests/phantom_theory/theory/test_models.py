"""The theory interface and registry: every theory declares what it is, its priors
are the one source that the PyMC model and the simulator both read, and a new
theory goes through fit, compare and predict by registering it alone."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from phantom_theory.errors import PhantomError
from phantom_theory.theory.fit import Fit, FitOptions, TheoryFitter, coords_of, fit_to_dataset
from phantom_theory.theory.models import DEFAULT_THEORIES, THEORIES, Theory, fit_data, get_theory
from phantom_theory.theory.models.base import Outcomes, exchangeable_logpdf
from phantom_theory.theory.models.priors import HalfNormal, Normal, Prior
from phantom_theory.theory.simulate import simulate_table
from phantom_theory.theory.summaries import summary_text

ROOT = Path(__file__).resolve().parents[1]
N_DRAWS = 4000
SAMPLED = [name for name, theory in THEORIES.items() if theory.sampled]


def prior_names(theory):
    return [n for name, prior in theory.priors.items() for n in prior.names(name)]


def simulator_draws(theory, n=N_DRAWS, seed=0) -> dict:
    """n parameter draws of the simulator, stacked: name -> (n, ...)."""
    rng = np.random.default_rng(seed)
    draws = [theory.prior_draw(4, 5, rng) for _ in range(n)]
    return {k: np.array([d[k] for d in draws]) for k in draws[0]}


def model_draws(theory, n=N_DRAWS, seed=1) -> dict:
    """n draws of every parameter as the fit sees its prior: forward draws of the
    PyMC model's random variables, or, for a theory drawn exactly, its posterior
    given no rows (which is the prior)."""
    table, _ = simulate_table(theory, 4, 5, seed=0)
    data = dataclasses.replace(fit_data(table, target=theory.target), centred_contexts=False)
    names = prior_names(theory)
    if not theory.sampled:
        empty = dataclasses.replace(data, y=np.zeros(0))
        return {k: v[0] for k, v in theory.exact_posterior(empty, 1, n, seed).items()}
    import pymc as pm

    model = theory.model(data, coords_of(table))
    values = pm.draw([model[name] for name in names], draws=n, random_seed=seed)
    out = dict(zip(names, values, strict=True))
    for name in names:
        if getattr(theory.priors[name], "ordered", False):
            # Forward draws ignore the ordered transform; its density is the sorted iid one.
            out[name] = np.sort(out[name], axis=-1)
    return out


def ks_pvalue(a, b) -> float:
    """Two-sample KS p-value of the first and last component."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return min(stats.ks_2samp(a[:, k], b[:, k]).pvalue for k in (0, -1))


def inflated(prior: Prior) -> Prior:
    """The same kind of prior with every number moved (v -> 3 v + 1)."""
    numbers = {f.name: getattr(prior, f.name) for f in dataclasses.fields(prior)}
    changes = {k: 3 * v + 1 for k, v in numbers.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    return dataclasses.replace(prior, **changes)


# -- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(THEORIES))
def test_every_registered_theory_declares_the_interface(name):
    theory = THEORIES[name]
    assert isinstance(theory, Theory) and theory.name == name
    assert (theory.target, theory.offset) in (("log_q", "log_scale"),
                                              ("log_c_sharp", "log_lambda0"),
                                              ("log_q_linear", "log_scale_linear"))
    # Only a theory with nothing to fit (the zero-parameter baseline) has no priors.
    assert theory.priors or (not theory.sampled and not theory.parameters)
    assert all(isinstance(p, Prior) for p in theory.priors.values())
    assert set(prior_names(theory)) <= set(theory.parameters)
    assert all(set(dims) <= {"model", "context", *theory.coords}
               for dims in theory.param_dims.values())
    if theory.has_classes:
        assert "class" in theory.coords
        assert callable(theory.class_probability) and callable(theory.lora_by_class)


def test_the_default_theories_are_the_registry():
    assert list(DEFAULT_THEORIES) == list(THEORIES)


def test_an_unknown_theory_is_named_with_the_registered_ones():
    with pytest.raises(PhantomError, match="unknown theory 'm_new'.*universal"):
        get_theory("m_new")


def _theory_names_compared(tree) -> list[str]:
    """String constants that are registered theory names inside a comparison
    (``x == "hier"``, ``x in ("hier", "class")``) or a ``THEORIES["..."]`` lookup."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                collection = isinstance(operand, ast.Tuple | ast.List | ast.Set)
                found += [item.value for item in (operand.elts if collection else [operand])
                          if isinstance(item, ast.Constant) and item.value in THEORIES]
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id == "THEORIES" and isinstance(node.slice, ast.Constant)):
            found.append(node.slice.value)
    return found


def test_no_module_outside_the_registry_dispatches_on_a_theory_name():
    registry = ROOT / "phantom_theory" / "theory" / "models"
    offenders = {}
    for path in [*(ROOT / "phantom_theory").rglob("*.py"), *(ROOT / "runner").rglob("*.py")]:
        if registry in path.parents:
            continue
        names = _theory_names_compared(ast.parse(path.read_text(), str(path)))
        if names:
            offenders[str(path.relative_to(ROOT))] = names
    assert not offenders


# -- priors as data ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLED)
def test_the_model_samples_exactly_the_parameters_the_simulator_draws(name):
    theory = THEORIES[name]
    table, _ = simulate_table(theory, 4, 5, seed=0)
    data = fit_data(table, target=theory.target)
    simulated = set(theory.prior_draw(4, 5, np.random.default_rng(0))) - {"z_alpha"}
    for centred in (False, True):
        model = theory.model(dataclasses.replace(data, centred_contexts=centred),
                             coords_of(table))
        free = {rv.name for rv in model.free_RVs}
        # Centred, the context effects are sampled as gamma = tau_gamma * z_gamma itself.
        expected = simulated - {"z_gamma"} | {"gamma"} if centred else simulated
        assert free == expected == set(theory.parameters) - ({"z_gamma"} if centred else
                                                             {"gamma"})


WITH_PRIORS = [n for n, t in THEORIES.items() if t.priors]


@pytest.mark.parametrize("name", WITH_PRIORS)
def test_the_model_and_the_simulator_draw_each_prior_alike(name):
    theory = THEORIES[name]
    fitted, simulated = model_draws(theory), simulator_draws(theory)
    for parameter in prior_names(theory):
        assert ks_pvalue(fitted[parameter], simulated[parameter]) > 1e-3, parameter


@pytest.mark.parametrize("name", WITH_PRIORS)
def test_a_changed_prior_reaches_both_the_model_and_the_simulator(name):
    """Every prior moved in the one place they are written: the model's draws follow
    the new priors, the simulator's too, and neither follows the old ones."""
    theory = THEORIES[name]
    changed = theory.with_priors(**{k: inflated(p) for k, p in theory.priors.items()})
    fitted, simulated = model_draws(changed), simulator_draws(changed)
    old = simulator_draws(theory, seed=2)
    for parameter in prior_names(theory):
        assert ks_pvalue(fitted[parameter], simulated[parameter]) > 1e-3, parameter
        assert ks_pvalue(fitted[parameter], old[parameter]) < 1e-6, parameter
    assert THEORIES[name].priors is theory.priors   # the registered theory is unchanged


def test_the_sharpness_prior_is_the_stated_normal_inverse_gamma():
    """sigma^2 ~ InvGamma(1, 1) and log c | sigma ~ N(0, sigma^2 / 0.01)."""
    draws = simulator_draws(THEORIES["sharpness"])
    assert stats.kstest(draws["sigma"] ** 2, stats.invgamma(1.0, scale=1.0).cdf).pvalue > 1e-3
    assert stats.kstest(draws["log_c"] / (draws["sigma"] * 10.0), "norm").pvalue > 1e-3


def test_with_priors_refuses_a_parameter_the_theory_lacks():
    with pytest.raises(ValueError, match="no parameter 'rho'"):
        THEORIES["hier"].with_priors(rho=HalfNormal(1.0))


# -- what the numpy side computes, on prior draws --------------------------------------------


def prior_fit(theory, table) -> Fit:
    """A Fit whose 'posterior' is 200 prior draws: enough to check shapes and dims."""
    if theory.priors:
        draws = simulator_draws(theory, n=200)
        posterior = {k: v[None] for k, v in draws.items() if k in theory.parameters}
    else:   # nothing to draw from a prior: its fixed 'posterior'
        posterior = theory.exact_posterior(None, 1, 200, 0)
    return Fit(theory.name, None, posterior,
               {"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0, "passed": True},
               "exact", 0.0, fit_data(table, target=theory.target))


@pytest.mark.parametrize("name", list(THEORIES))
def test_the_numpy_side_of_every_theory_has_the_declared_shapes(name):
    theory = THEORIES[name]
    table, _ = simulate_table(theory, 4, 5, seed=3)
    fit = prior_fit(theory, table)
    post, data, rng = fit.flat(), fit.data, np.random.default_rng(0)
    levels, gamma = theory.effects(post, data, rng)
    assert levels.shape == (200, 4) and gamma.shape == (200, 5)
    assert theory.pointwise_loglik(post, data).shape == (200, len(data.y))
    y = table[theory.target].values[0]
    assert np.isfinite(theory.heldout_logdensity(post, data, 0, np.arange(5), y)).all()
    assert theory.predict(post, data, 0, np.arange(5), rng).shape == (200, 5)
    idata = fit_to_dataset(fit, table, FitOptions(), {})
    for parameter, dims in theory.param_dims.items():
        if parameter in idata.posterior:
            assert idata.posterior[parameter].dims[2:] == dims
    text = summary_text(fit, table)
    assert ("alpha[arch00]" in text) == theory.has_levels
    assert ("P(class_1 | arch00)" in text) == theory.has_classes


def test_the_sharpness_simulation_follows_its_own_model():
    table, truth = simulate_table("sharpness", 6, 40, seed=4, params={"log_c": 0.5, "sigma": 0.1})
    assert table.attrs["simulated_from"] == "sharpness"
    assert float(table.log_c_sharp.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(table.log_c_sharp.std()) == pytest.approx(0.1, rel=0.1)
    assert not truth["gamma"].any()


# -- a fitter on another table ---------------------------------------------------------------


def test_with_table_fits_the_new_table_and_leaves_the_old_fitter_alone():
    first, _ = simulate_table("sharpness", 4, 5, seed=5)
    second, _ = simulate_table("sharpness", 4, 5, seed=6)
    fitter = TheoryFitter("sharpness", first, FitOptions(draws=50, chains=2))
    other = fitter.with_table(second)
    assert other.table is second and fitter.table is first
    np.testing.assert_array_equal(other.fit().data.y, second.log_c_sharp.values.ravel())
    np.testing.assert_array_equal(fitter.fit().data.y, first.log_c_sharp.values.ravel())


def test_with_table_refuses_another_layout():
    first, _ = simulate_table("sharpness", 4, 5, seed=5)
    wider, _ = simulate_table("sharpness", 4, 6, seed=5)
    with pytest.raises(PhantomError, match="same contexts"):
        TheoryFitter("sharpness", first).with_table(wider)


# -- a new theory, registered alone ------------------------------------------------------------


class Pooled(Theory):
    """A toy theory: log Q[a, j] ~ Normal(mu, sigma), nothing else."""

    name = "pooled"
    priors = {"mu": Normal(0.0, 5.0), "sigma": HalfNormal(1.0)}

    def model(self, data, coords):
        import pymc as pm

        with pm.Model(coords=self.model_coords(coords)) as model:
            d = {name: pm.Data(name, value) for name, value in self.data_arrays(data).items()}
            pm.Normal("y", self.rv("mu"), self.rv("sigma"), observed=d["y_obs"],
                      shape=d["arch_index"].shape)
        return model

    def effects(self, post, data, rng):
        S = len(post["mu"])
        return np.repeat(post["mu"][:, None], data.n_models, 1), np.zeros((S, data.n_contexts))

    def level_marginal(self, post, data, arch, residual):
        return exchangeable_logpdf(residual - post["mu"][:, None], post["sigma"], 0.0)

    def simulate(self, params, log_b, rng):
        A, J = log_b.shape
        y = params["mu"] + params["sigma"] * rng.normal(0, 1, (A, J))
        return Outcomes(y, np.zeros(A), np.zeros(J), np.full(A, -1), log_b,
                        np.full((A, J), np.nan))


def test_a_new_theory_goes_through_simulate_fit_compare_and_predict(monkeypatch):
    from phantom_theory.plots import plot_calibration
    from phantom_theory.theory.compare import evaluate
    from phantom_theory.theory.predict import score, scores_dataset

    monkeypatch.setitem(THEORIES, "pooled", Pooled())
    assert "pooled" in DEFAULT_THEORIES
    table, _ = simulate_table("pooled", 3, 4, seed=7)
    evaluation = evaluate(table, ("pooled", "sharpness"),
                          FitOptions(draws=200, tune=200, chains=2), workers=1)
    comparison = evaluation.comparison()
    assert list(comparison.theory.values) == ["pooled", "sharpness"]
    assert np.isfinite(comparison.elpd_loao.values).all()
    scores = [score(p, table.eta_c.sel(model=held_out))
              for (_, held_out), p in evaluation.predictions().items()]
    assert len(scores) == 6
    plot_calibration(scores_dataset(scores))
    assert "mu" in summary_text(evaluation.results["pooled"]["full"], table)
