"""M_universal: one constant for all architectures (THEORY.md section 8).

    log Q[a, j] ~ Normal(mu + gamma_j, sigma)

with the additive theories' priors (``additive.ADDITIVE_PRIORS``).
"""

from __future__ import annotations

import numpy as np

from .additive import ADDITIVE_PRIORS, AdditiveTheory, gamma_draws
from .base import exchangeable_logpdf


class Universal(AdditiveTheory):
    """M_universal: log Q[a, j] ~ Normal(mu + gamma_j, sigma), one constant mu for all
    architectures."""

    name = "universal"
    priors = ADDITIVE_PRIORS
    color = "#8c510a"

    def model(self, data, coords):
        """The pm.Model of M_universal: every row Normal(mu + gamma_j, sigma)."""
        import pymc as pm

        with pm.Model(coords=self.model_coords(coords)) as model:
            d, mu, gamma, sigma = self.additive_terms(data)
            pm.Normal("y", mu + gamma[d["context_index"]], sigma, observed=d["y_obs"],
                      shape=d["arch_index"].shape)
        return model

    def effects(self, post, data, rng):
        """(samples, models) levels mu, the same for every architecture, and
        (samples, contexts) gamma."""
        return np.repeat(post["mu"][:, None], data.n_models, axis=1), gamma_draws(post, data)

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, iid Normal(mu, sigma): no level to
        integrate out (tau = 0)."""
        return exchangeable_logpdf(residual - post["mu"][:, None], post["sigma"], 0.0)
