"""The fitted sharpness baseline (THEORY.md section 8): the catapult anchor with
its constant fitted.

    log(eta_c lambda0)[a, j] ~ Normal(log c, sigma)

with the conjugate normal-inverse-gamma prior (log c | sigma^2 ~ N(0, sigma^2 /
0.01), sigma^2 ~ InvGamma(1, 1)), so the posterior is drawn exactly, no sampler.
"""

from __future__ import annotations

import numpy as np

from .base import Outcomes, Theory, exchangeable_logpdf
from .priors import NormalInverseGamma


class Sharpness(Theory):
    """The fitted sharpness baseline: log(eta_c lambda0)[a, j] ~ Normal(log c, sigma),
    drawn exactly from its conjugate posterior."""

    name = "sharpness"
    target = "log_c_sharp"
    offset = "log_lambda0"
    priors = {"log_c": NormalInverseGamma(0.0, 0.01, 1.0, 1.0, scale="sigma")}
    sampled = False
    color = "#bf812d"

    def exact_posterior(self, data, chains, draws, seed):
        """(chains, draws) of log c and sigma from the normal-inverse-gamma posterior
        given the rows."""
        posterior = self.priors["log_c"].updated(data.y)
        return posterior.draw_named("log_c", np.random.default_rng(seed), (chains, draws))

    def effects(self, post, data, rng):
        """(samples, models) levels log c, the same for every architecture, and
        (samples, contexts) zeros: no context effects."""
        S = len(post["log_c"])
        return (np.repeat(post["log_c"][:, None], data.n_models, 1),
                np.zeros((S, data.n_contexts)))

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, iid Normal(log c, sigma)."""
        return exchangeable_logpdf(residual - post["log_c"][:, None], post["sigma"], 0.0)

    def simulate(self, params, log_b, rng):
        """Outcomes with y[a, j] = log c + sigma e, e ~ Normal(0, 1): no levels, context
        effects or classes, the measured log b kept, no LoRA rows (NaN)."""
        A, J = log_b.shape
        y = params["log_c"] + params["sigma"] * rng.normal(0, 1, (A, J))
        return Outcomes(y, np.zeros(A), np.zeros(J), np.full(A, -1), log_b,
                        np.full((A, J), np.nan))
