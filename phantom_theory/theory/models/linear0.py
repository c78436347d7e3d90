"""The zero-parameter baseline ``linear0`` (THEORY.md section 8).

    log eta_c[a, j] = log eta_hat_linear[a, j] + e,   e ~ Normal(0, s0)

The linear theory at init, Q = eta_c / eta_hat_linear = 1 (nu_c = 1), with nothing
fitted. Its point prediction needs no noise at all; a log predictive density
does. ``s0`` is a stated, fixed noise, not fitted: the default 0.5 (a factor of
e^0.5 = 1.65 at one sd) was chosen before the study's data, as a plain "within a
factor of two most of the time" statement of the linear theory's precision. With
the density fixed in advance, linear0 goes through the same compare / LOAO /
score path as every theory: PSIS-LOO and LOAO ELPD of a model with no
parameters, and blind predictions whose median is the linear eta_hat itself.
A fitted theory earns its parameters only by beating it.

Its target is always the linear predictor's log Q (``log_q_linear``), whatever
predictor the table's other theories pool, so linear0 is the same baseline in
every table.
"""

from __future__ import annotations

import numpy as np

from .base import Outcomes, Theory, exchangeable_logpdf

DEFAULT_NOISE = 0.5


class Linear0(Theory):
    """linear0: log Q_linear[a, j] ~ Normal(0, s0) with s0 fixed (``noise``), nothing
    fitted."""

    name = "linear0"
    target = "log_q_linear"
    offset = "log_scale_linear"
    priors = {}
    sampled = False
    color = "#4d4d4d"

    def __init__(self, noise: float = DEFAULT_NOISE):
        if not (np.isfinite(noise) and noise > 0):
            raise ValueError(f"linear0's noise must be a positive number, not {noise}")
        self.noise = float(noise)

    def exact_posterior(self, data, chains, draws, seed):
        """(chains, draws) copies of the fixed noise: the only 'posterior' a theory with
        no parameters has."""
        return {"sigma": np.full((chains, draws), self.noise)}

    def effects(self, post, data, rng):
        """(samples, models) zero levels and (samples, contexts) zero context effects:
        Q = 1 everywhere."""
        S = len(post["sigma"])
        return np.zeros((S, data.n_models)), np.zeros((S, data.n_contexts))

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, iid Normal(0, s0)."""
        return exchangeable_logpdf(residual, post["sigma"], 0.0)

    def simulate(self, params, log_b, rng):
        """Outcomes with y[a, j] = s0 e, e ~ Normal(0, 1): the linear theory is exact up
        to the stated noise."""
        A, J = log_b.shape
        return Outcomes(self.noise * rng.standard_normal((A, J)), np.zeros(A), np.zeros(J),
                        np.full(A, -1), log_b, np.full((A, J), np.nan))
