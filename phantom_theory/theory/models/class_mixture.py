"""M_class: architecture classes (THEORY.md section 8).

    log Q[a, j] ~ Normal(alpha_a + gamma_j, sigma),  alpha_a ~ Normal(mu + delta z_a, tau)
    z_a ~ Bernoulli(weight)
    log b[a, .] ~ Normal(b_mean[z_a], b_sigma)       (b_mean ordered: no label switching)
    LoRA success[a, .] ~ Bernoulli(sigmoid(lora_logit[z_a]))

The class is summed over per architecture in closed form (two terms each), the
level integrated out within each (``additive``). The class also predicts LoRA
sufficiency.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, logsumexp

from .additive import (
    ADDITIVE_PRIORS,
    AdditiveTheory,
    context_effects,
    draw_levels,
    gamma_draws,
    integrated_levels,
    normal_logp,
)
from .base import exchangeable_logpdf, normal_logpdf, onehot
from .priors import Beta, HalfNormal, Normal

CLASSES = ("class_0", "class_1")   # ordered by their mean log b


class ClassMixture(AdditiveTheory):
    """M_class: alpha_a ~ Normal(mu + delta z_a, tau), with a two-class mixture z_a on
    log b that also predicts LoRA success."""

    name = "class"
    priors = {**ADDITIVE_PRIORS, "tau": HalfNormal(1.0), "delta": Normal(0.0, 2.0),
              "weight": Beta(2.0, 2.0),
              "b_mean": Normal(0.0, 3.0, dims=("class",), ordered=True),
              "b_sigma": HalfNormal(1.0), "lora_logit": Normal(0.0, 2.0, dims=("class",))}
    coords = {"class": CLASSES}
    has_levels = True
    has_classes = True
    color = "#762a83"

    def data_arrays(self, data):
        """The additive arrays, the log b rows and the LoRA success rows, each with its
        (models, rows) indicator."""
        return {**super().data_arrays(data), "b_value": data.b_value,
                "b_onehot": onehot(data.b_arch, data.n_models), "lora_y": data.lora_y,
                "lora_onehot": onehot(data.lora_arch, data.n_models)}

    def model(self, data, coords):
        """The pm.Model of M_class: per architecture, logsumexp over the two classes of
        log P(class) + its outcome rows (level integrated out) + its log b rows + its
        LoRA rows."""
        import pymc as pm
        import pytensor.tensor as pt

        with pm.Model(coords=self.model_coords(coords)) as model:
            d = {name: pm.Data(name, value) for name, value in self.data_arrays(data).items()}
            mu = self.rv("mu")
            delta = self.rv("delta")
            tau = self.rv("tau")
            tau_gamma = self.rv("tau_gamma")
            gamma = context_effects(self, data, tau_gamma)
            sigma = self.rv("sigma")
            weight = self.rv("weight")
            b_mean = self.rv("b_mean")
            b_sigma = self.rv("b_sigma")
            lora_logit = self.rv("lora_logit")
            loc = pt.stack([mu, mu + delta])
            residual = (d["y_obs"] - gamma[d["context_index"]])[:, None] - loc[None, :]
            b_terms = normal_logp(d["b_value"][:, None], b_mean[None, :], b_sigma)
            lora_terms = (d["lora_y"][:, None] * -pt.softplus(-lora_logit)[None, :]
                          + (1 - d["lora_y"][:, None]) * -pt.softplus(lora_logit)[None, :])
            components = (pt.log(pt.stack([1 - weight, weight]))[None, :]
                          + integrated_levels(d, residual, sigma, tau)
                          + d["b_onehot"] @ b_terms + d["lora_onehot"] @ lora_terms)
            pm.Potential("mixture", pt.logsumexp(components, axis=1).sum())
        return model

    @staticmethod
    def _loc(post):
        return post["mu"][:, None] + post["delta"][:, None] * np.array([0.0, 1.0])  # (S, 2)

    def _per_arch(self, post, data, with_rows: bool = True) -> np.ndarray:
        """(samples, models, 2) log P(class) + log b rows + LoRA rows, and with
        ``with_rows`` each class's density of the architecture's outcome rows."""
        b = normal_logpdf(data.b_value[None, :, None], post["b_mean"][:, None, :],
                          post["b_sigma"][:, None, None])
        logit = post["lora_logit"][:, None, :]
        y = data.lora_y[None, :, None]
        lora = y * log_expit(logit) + (1 - y) * log_expit(-logit)
        out = (np.log(np.stack([1 - post["weight"], post["weight"]], -1))[:, None, :]
               + np.einsum("ar,srk->sak", onehot(data.b_arch, data.n_models), b)
               + np.einsum("ar,srk->sak", onehot(data.lora_arch, data.n_models), lora))
        if not with_rows:
            return out
        residual = data.y[None, :] - gamma_draws(post)[:, data.context]
        for arch in data.fitted_index:
            rows = residual[:, data.arch == arch]
            for k in (0, 1):
                out[:, arch, k] += exchangeable_logpdf(
                    rows - self._loc(post)[:, [k]], post["sigma"], post["tau"])
        return out

    def class_probability(self, post, data) -> np.ndarray:
        """(samples, models) posterior P(class_1) of each architecture."""
        per_arch = self._per_arch(post, data)
        return np.exp(per_arch[..., 1] - logsumexp(per_arch, axis=-1))

    @staticmethod
    def lora_success_probability(post) -> np.ndarray:
        """(samples, classes) P(LoRA success) of each class."""
        return expit(post["lora_logit"])

    def effects(self, post, data, rng):
        """(samples, models) levels from their conditionals under Normal(mu + delta z_a,
        tau), z_a drawn from P(class_1) per sample, and (samples, contexts) gamma."""
        probability = self.class_probability(post, data)
        classes = (rng.random(probability.shape) < probability).astype(float)
        loc = post["mu"][:, None] + post["delta"][:, None] * classes
        return draw_levels(post, data, loc, rng), gamma_draws(post)

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, class and level integrated out:
        log sum_k P(class k | log b, LoRA rows) Normal(mu + delta k, sigma^2 I + tau^2 11')."""
        per_arch = self._per_arch(post, data, with_rows=False)[:, arch, :]
        log_class = per_arch - logsumexp(per_arch, axis=-1, keepdims=True)
        terms = [log_class[:, k] + exchangeable_logpdf(
            residual - self._loc(post)[:, [k]], post["sigma"], post["tau"]) for k in (0, 1)]
        return np.logaddexp(*terms)

    def simulate_levels(self, params, log_b, rng):
        """(alpha, classes, log_b, lora_success): z_a ~ Bernoulli(weight), alpha_a =
        tau z_alpha[a] + delta z_a, log b[a, j] ~ Normal(b_mean[z_a], b_sigma) in place of
        the measured one, LoRA success ~ Bernoulli(sigmoid(lora_logit[z_a]))."""
        A, J = log_b.shape
        classes = (rng.random(A) < params["weight"]).astype(int)
        alpha = params["tau"] * np.asarray(params["z_alpha"]) + params["delta"] * classes
        log_b = (np.asarray(params["b_mean"])[classes][:, None]
                 + params["b_sigma"] * rng.normal(0, 1, (A, J)))
        success = 1 / (1 + np.exp(-np.asarray(params["lora_logit"])[classes]))
        lora = (rng.random((A, J)) < success[:, None]).astype(float)
        return alpha, classes, log_b, lora
