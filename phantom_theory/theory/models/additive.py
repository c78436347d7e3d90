"""The additive layout the log-Q theories share.

    y[a, j] = mu + alpha_a + gamma_j + e,   e ~ Normal(0, sigma),

with y = log Q, context effects gamma zero-sum normal with scale tau_gamma (so mu
is the grand mean and does not trade off against their common shift), and the
architecture levels alpha_a (none in M_universal) Normal(loc_a, tau).

The levels enter linearly with a Gaussian prior, so the sampler sees them
integrated out in closed form: given everything else, an architecture's rows are
exchangeable normal with covariance sigma^2 I + tau^2 11' (O(rows), no matrix to
factor). That leaves no level-versus-tau funnel whatever the data's scale. The
levels are drawn afterwards from their exact Gaussian conditionals; an
architecture with no outcome rows (held out) gets its level from the population,
one draw per posterior sample shared by all its contexts. The context effects
are sampled, centred or not (``fit.choose_parameterization``).

The zero-sum constraint runs over the contexts the fit observes: gamma is the
sampled zero-sum vector less its mean over the observed contexts. A context
without rows in the fit (a held-out architecture's own, in a nested table) then
gets gamma_k = tau_gamma (w_k - mean_O w), w iid Normal(0, 1): a new context of the
population, measured against the observed contexts' mean, which is what mu is.

Given the scales (tau_gamma, sigma, tau) the layout is linear-Gaussian in mu, the
levels and the context effects; ``exact`` integrates those out analytically and
the scales by quadrature (``exact_inference``).
"""

from __future__ import annotations

import numpy as np

from .base import LOG_2PI, FitData, Outcomes, Theory, onehot
from .priors import HalfNormal, Normal, ZeroSumNormal

# The priors every additive theory starts from; z_gamma is the standardised
# context effect, gamma = tau_gamma * z_gamma.
ADDITIVE_PRIORS = {"mu": Normal(0.0, 5.0), "tau_gamma": HalfNormal(1.0),
                   "z_gamma": ZeroSumNormal(1.0, dims=("context",)), "sigma": HalfNormal(1.0)}


def normal_logp(x, mean, sigma):
    """Normal log density as a pytensor expression."""
    import pytensor.tensor as pt

    return -0.5 * ((x - mean) / sigma) ** 2 - pt.log(sigma) - 0.5 * LOG_2PI


def observed_context_weight(data: FitData) -> np.ndarray:
    """(contexts,) 1 / J_o on each of the J_o contexts with rows in the fit, 0 elsewhere:
    gamma less its weighted sum is zero-sum over the observed contexts."""
    weight = np.zeros(data.n_contexts)
    observed = np.unique(data.context)
    weight[observed] = 1.0 / max(len(observed), 1)
    return weight


def context_effects(theory: Theory, data: FitData, d, tau_gamma):
    """Context effects gamma = tau_gamma * (z_gamma - mean_O z_gamma), z_gamma from the
    theory's prior, zero-sum over the observed contexts O (the pm.Data
    ``context_weight``): sampled as tau_gamma * z_gamma itself (centred, named gamma)
    or as z_gamma (non-centred)."""
    prior = theory.priors["z_gamma"]
    if data.centred_contexts:
        raw = prior.rv("gamma", scale=tau_gamma)
    else:
        raw = tau_gamma * prior.rv("z_gamma")
    return raw - (d["context_weight"] * raw).sum()


def gamma_draws(post, data: FitData) -> np.ndarray:
    """(samples, contexts) context effects, whichever parameterisation was sampled,
    zero-sum over the contexts the fit observes (as in the model)."""
    raw = post["gamma"] if "gamma" in post else post["tau_gamma"][:, None] * post["z_gamma"]
    return raw - (raw @ observed_context_weight(data))[:, None]


def integrated_levels(d, residual, sigma, tau):
    """Per architecture, the pytensor log density of its rows' residuals (rows x k)
    with its level integrated out: Normal(0, sigma^2 I + tau^2 11'), in closed form.
    An architecture without rows contributes 0."""
    import pytensor.tensor as pt

    q_onehot = d["q_onehot"]                                  # (models, rows)
    n = q_onehot.sum(axis=1)[:, None]                         # rows per architecture
    s1 = q_onehot @ residual
    s2 = q_onehot @ residual**2
    var_e, var_a = sigma**2, tau**2
    total = var_e + n * var_a
    quad = s2 / var_e - var_a * s1**2 / (var_e * total)
    logdet = (n - 1) * pt.log(var_e) + pt.log(total)
    return -0.5 * (quad + logdet + n * LOG_2PI)


def draw_levels(post, data: FitData, loc, rng) -> np.ndarray:
    """(samples, models) levels from their Gaussian conditionals given the context
    effects, with prior Normal(loc (samples, models), tau): precision
    1/tau^2 + n/sigma^2, mean (loc/tau^2 + sum r/sigma^2) / precision. An
    architecture with no rows gets a population draw."""
    residual = data.y[None, :] - gamma_draws(post, data)[:, data.context]
    rows = onehot(data.arch, data.n_models)
    n = rows.sum(axis=1)[None, :]
    total = np.einsum("ar,sr->sa", rows, residual)
    var_e, var_a = post["sigma"][:, None] ** 2, post["tau"][:, None] ** 2
    precision = 1 / var_a + n / var_e
    mean = (loc / var_a + total / var_e) / precision
    return mean + rng.standard_normal(mean.shape) / np.sqrt(precision)


class AdditiveTheory(Theory):
    """A theory of log Q in the additive layout (the module docstring)."""

    priors = ADDITIVE_PRIORS
    effect_dims = {"gamma": ("context",)}
    exact_inference = True

    def data_arrays(self, data):
        """The base arrays, q_onehot, the (models, rows) indicator of each row's
        architecture, and context_weight, 1 / J_o on the observed contexts."""
        return {**super().data_arrays(data), "q_onehot": onehot(data.arch, data.n_models),
                "context_weight": observed_context_weight(data)}

    def additive_terms(self, data):
        """Inside a pm.Model: the data (as pm.Data), mu, gamma and sigma, created in
        this order (the order fixes the sampler's parameter vector)."""
        import pymc as pm

        d = {name: pm.Data(name, value) for name, value in self.data_arrays(data).items()}
        mu = self.rv("mu")
        gamma = context_effects(self, data, d, self.rv("tau_gamma"))
        return d, mu, gamma, self.rv("sigma")

    def prior_draw(self, n_models, n_contexts, rng):
        """Parameters drawn from ``priors``, and with levels the standardised levels
        z_alpha (models,) ~ Normal(0, 1)."""
        params = super().prior_draw(n_models, n_contexts, rng)
        if self.has_levels:
            # The standardised levels, alpha_a = loc_a + tau z_alpha[a]: the model
            # integrates them out, so they have no prior record of their own.
            params["z_alpha"] = rng.normal(0.0, 1.0, n_models)
        return params

    def simulate_levels(self, params, log_b, rng):
        """(alpha, classes, log_b, lora_success): none without levels."""
        return (np.zeros(log_b.shape[0]), np.full(log_b.shape[0], -1), log_b,
                np.full(log_b.shape, np.nan))

    def simulate(self, params, log_b, rng):
        """Outcomes with y[a, j] = mu + alpha_a + gamma_j + sigma e, e ~ Normal(0, 1),
        gamma = tau_gamma (z_gamma - mean(z_gamma)), and alpha, the classes, log b and
        LoRA success from ``simulate_levels``."""
        z_gamma = np.asarray(params["z_gamma"])
        gamma = params["tau_gamma"] * (z_gamma - z_gamma.mean())   # zero-sum, as in the model
        alpha, classes, log_b, lora = self.simulate_levels(params, log_b, rng)
        y = (params["mu"] + alpha[:, None] + gamma[None, :]
             + params["sigma"] * rng.normal(0, 1, log_b.shape))
        return Outcomes(y, alpha, gamma, classes, log_b, lora)
