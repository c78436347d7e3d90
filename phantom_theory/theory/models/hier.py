"""M_hier: partial pooling of the architectures (THEORY.md section 8).

    log Q[a, j] ~ Normal(alpha_a + gamma_j, sigma),   alpha_a ~ Normal(mu, tau)

"Consistent across architectures" means tau is small. The levels alpha_a are
integrated out in the model and drawn afterwards (``additive``).
"""

from __future__ import annotations

import numpy as np

from .additive import (
    ADDITIVE_PRIORS,
    AdditiveTheory,
    draw_levels,
    gamma_draws,
    integrated_levels,
)
from .base import exchangeable_logpdf
from .priors import HalfNormal


class Hierarchical(AdditiveTheory):
    """M_hier: log Q[a, j] ~ Normal(alpha_a + gamma_j, sigma), alpha_a ~ Normal(mu, tau),
    the levels integrated out in the model."""

    name = "hier"
    priors = {**ADDITIVE_PRIORS, "tau": HalfNormal(1.0)}
    has_levels = True
    color = "#2166ac"

    def model(self, data, coords):
        """The pm.Model of M_hier: each architecture's rows Normal(mu + gamma_j,
        sigma^2 I + tau^2 11'), alpha_a integrated out."""
        import pymc as pm

        with pm.Model(coords=self.model_coords(coords)) as model:
            d, mu, gamma, sigma = self.additive_terms(data)
            tau = self.rv("tau")
            residual = (d["y_obs"] - (mu + gamma[d["context_index"]]))[:, None]
            pm.Potential("rows", integrated_levels(d, residual, sigma, tau).sum())
        return model

    def effects(self, post, data, rng):
        """(samples, models) levels alpha_a from their conditionals under
        Normal(mu, tau) (a population draw without rows), and (samples, contexts) gamma."""
        loc = np.repeat(post["mu"][:, None], data.n_models, axis=1)
        return draw_levels(post, data, loc, rng), gamma_draws(post, data)

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals with alpha_a integrated out:
        Normal(mu, sigma^2 I + tau^2 11')."""
        return exchangeable_logpdf(residual - post["mu"][:, None], post["sigma"], post["tau"])

    def simulate_levels(self, params, log_b, rng):
        """(alpha, classes, log_b, lora_success) with alpha_a = tau z_alpha[a], no
        classes (-1), the measured log b kept and no LoRA rows (NaN)."""
        alpha = params["tau"] * np.asarray(params["z_alpha"])
        return alpha, np.full(len(alpha), -1), log_b, np.full(log_b.shape, np.nan)
