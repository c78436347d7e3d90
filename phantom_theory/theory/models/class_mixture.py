"""M_class: architecture classes (THEORY.md section 8).

    log Q[a, j] ~ Normal(alpha_a + gamma_j, sigma),  alpha_a ~ Normal(mu + delta z_a, tau)
    z_a ~ Bernoulli(weight)
    log b[a, .] ~ Normal(b_mean[z_a], b_sigma)       (b_mean ordered: no label switching)
    LoRA success[a, .] ~ Bernoulli(sigmoid(lora_logit[z_a]))

The class is summed over per architecture in closed form (two terms each), the
level integrated out within each (``additive``). The class also predicts LoRA
sufficiency.

For exact inference (``exact``) the class layer is summed over every assignment z
of the architectures to the classes (``class_evidence``): given z, weight has a
Beta posterior, the log b rows a normal one in b_mean (the ordering a factor
P(b_mean[0] < b_mean[1])) for each b_sigma, integrated on a fine grid, and the
LoRA rows one logit per class, integrated on a fine grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import betaln, expit, log_expit, log_ndtr, logsumexp

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
# The one-dimensional grids the class layer is integrated on: log b_sigma over
# SCALE_DECADES decades below the spread of log b to 10x above it, the LoRA logit
# over +-LOGIT_SDS prior sds. Both are far finer than the posteriors they integrate.
SCALE_POINTS, SCALE_DECADES = 1024, 4
LOGIT_POINTS, LOGIT_SDS = 2401, 12.0


def _sums(arch, value, included) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum, sum of squares) of the rows of each included architecture."""
    position = {a: i for i, a in enumerate(included)}
    out = np.zeros((3, len(included)))
    for a, v in zip(arch, value, strict=True):
        out[:, position[a]] += (1.0, v, v * v)
    return out[0], out[1], out[2]


@dataclass
class ClassEvidence:
    """M_class's class layer summed over exactly: every assignment ``z`` (K, included)
    of the architectures with rows to the classes, its log evidence ``log_weight``
    (K,) = log p(z) + log p(log b rows | z) + log p(LoRA rows | z), with weight,
    b_mean, b_sigma and the LoRA logits integrated out, and their draws given z."""

    included: np.ndarray        # architectures enumerated (any outcome, log b or LoRA row)
    z: np.ndarray               # (K, len(included)) 0/1
    log_weight: np.ndarray      # (K,)
    weight_prior: tuple[float, float]
    b_terms: dict               # per class (n, sum, sum of squares) (K,) and the prior
    b_grid: np.ndarray          # log b_sigma grid
    b_log_density: np.ndarray   # (K, SCALE_POINTS) log p(b_sigma, b rows | z) on it
    logit_grid: np.ndarray
    logit_log_density: np.ndarray   # (pairs, LOGIT_POINTS), normalised per pair
    logit_pair: np.ndarray      # (K, 2) the (successes, trials) pair of each class
    edge: float                 # largest density at a grid end, relative to the peak

    def draw(self, index: np.ndarray, rng) -> dict:
        """Draws of weight, b_sigma, b_mean (ordered) and lora_logit given the
        assignments z[index], one per entry of ``index``."""
        z = self.z[index]
        n1 = z.sum(axis=1)
        a, b = self.weight_prior
        out = {"weight": rng.beta(a + n1, b + len(self.included) - n1)}
        out["b_sigma"] = np.exp(_grid_draws(self.b_grid, self.b_log_density, index, rng))
        out["b_mean"] = self._b_mean(index, out["b_sigma"], rng)
        out["lora_logit"] = np.stack(
            [_grid_draws(self.logit_grid, self.logit_log_density, self.logit_pair[index, k], rng)
             for k in (0, 1)], axis=-1)
        return out

    def _b_mean(self, index, b_sigma, rng) -> np.ndarray:
        """(S, 2) class means of log b given z and b_sigma: independent normal
        posteriors, conditioned on b_mean[0] < b_mean[1] when the prior is ordered
        (their difference from a truncated normal, then the first given it)."""
        t = self.b_terms
        means, variances = [], []
        for k in (0, 1):
            n, total = t["n"][k][index], t["sum"][k][index]
            precision = 1 / t["prior_sd"] ** 2 + n / b_sigma**2
            means.append((t["prior_mean"] / t["prior_sd"] ** 2 + total / b_sigma**2) / precision)
            variances.append(1 / precision)
        (a0, a1), (v0, v1) = means, variances
        if not t["ordered"]:
            return np.stack([a0 + np.sqrt(v0) * rng.standard_normal(len(a0)),
                             a1 + np.sqrt(v1) * rng.standard_normal(len(a1))], axis=-1)
        centre, sd = a1 - a0, np.sqrt(v0 + v1)
        difference = stats.truncnorm.rvs(-centre / sd, np.inf, loc=centre, scale=sd,
                                         random_state=rng)
        first = (a0 - v0 / (v0 + v1) * (difference - centre)
                 + np.sqrt(v0 * v1 / (v0 + v1)) * rng.standard_normal(len(a0)))
        return np.stack([first, first + difference], axis=-1)


def _grid_draws(grid, log_density, which, rng) -> np.ndarray:
    """One draw from row ``which[i]`` of ``log_density`` (rows, points) on the uniform
    ``grid`` for each i: a point by its weight (inverse CDF), then uniform within its
    cell."""
    out = np.empty(len(which))
    u, jitter = rng.random(len(which)), rng.random(len(which)) - 0.5
    for row in np.unique(which):
        take = which == row
        cdf = np.cumsum(np.exp(log_density[row] - log_density[row].max()))
        point = np.minimum(np.searchsorted(cdf, u[take] * cdf[-1]), len(grid) - 1)
        out[take] = grid[point]
    return out + jitter * (grid[1] - grid[0])


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
            gamma = context_effects(self, data, d, tau_gamma)
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
        residual = data.y[None, :] - gamma_draws(post, data)[:, data.context]
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
        return draw_levels(post, data, loc, rng), gamma_draws(post, data)

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, class and level integrated out:
        log sum_k P(class k | log b, LoRA rows) Normal(mu + delta k, sigma^2 I + tau^2 11')."""
        per_arch = self._per_arch(post, data, with_rows=False)[:, arch, :]
        log_class = per_arch - logsumexp(per_arch, axis=-1, keepdims=True)
        terms = [log_class[:, k] + exchangeable_logpdf(
            residual - self._loc(post)[:, [k]], post["sigma"], post["tau"]) for k in (0, 1)]
        return np.logaddexp(*terms)

    def class_evidence(self, data, max_models: int = 10) -> ClassEvidence:
        """The class layer of ``data`` summed over every assignment of the
        architectures with rows (at most ``max_models`` of them: 2^max_models terms)."""
        included = np.union1d(np.union1d(data.arch, data.b_arch), data.lora_arch).astype(int)
        if len(included) > max_models:
            raise ValueError(f"{len(included)} architectures with rows: more than the "
                             f"{max_models} whose class assignments are summed exactly")
        z = np.array(list(itertools.product((0.0, 1.0), repeat=len(included)))).reshape(
            -1, len(included))
        a, b = self.priors["weight"].alpha, self.priors["weight"].beta
        n1 = z.sum(axis=1)
        log_weight = betaln(a + n1, b + len(included) - n1) - betaln(a, b)
        b_terms, b_grid, b_density, b_edge = self._b_evidence(data, included, z)
        pairs, logit_grid, logit_density, logit_edge, lora = self._lora_evidence(
            data, included, z)
        log_weight = log_weight + logsumexp(b_density, axis=1) + np.log(b_grid[1] - b_grid[0])
        log_weight = log_weight + lora
        return ClassEvidence(included, z, log_weight, (a, b), b_terms, b_grid, b_density,
                             logit_grid, logit_density, pairs, max(b_edge, logit_edge))

    def _b_evidence(self, data, included, z):
        """Per assignment, log p(b_sigma, log b rows | z) on a grid of log b_sigma (b_mean
        integrated: a normal marginal per class, and with an ordered prior
        log 2 + log P(b_mean[0] < b_mean[1] | rows))."""
        prior, scale_prior = self.priors["b_mean"], self.priors["b_sigma"]
        n_a, s_a, ss_a = _sums(data.b_arch, data.b_value, included)
        spread = float(np.std(data.b_value)) if len(data.b_value) > 1 else 0.0
        spread = spread if spread > 0 else 1.0
        grid = np.linspace(np.log(spread) - SCALE_DECADES * np.log(10),
                           np.log(10 * spread + 5 * scale_prior.sigma), SCALE_POINTS)
        var = np.exp(2 * grid)[None, :]
        m, sd2 = prior.mu, prior.sigma**2
        terms = {"n": [], "sum": [], "prior_mean": m, "prior_sd": prior.sigma,
                 "ordered": prior.ordered}
        log_density = (np.log(2) + stats.norm.logpdf(np.exp(grid), 0, scale_prior.sigma)
                       + grid)[None, :].repeat(len(z), 0)
        means, variances = [], []
        for k in (0, 1):
            member = z if k == 1 else 1 - z
            n, total, squares = member @ n_a, member @ s_a, member @ ss_a
            terms["n"].append(n)
            terms["sum"].append(total)
            n_, total_, squares_ = n[:, None], total[:, None], squares[:, None]
            safe = np.maximum(n_, 1)
            within = squares_ - total_**2 / safe
            log_density += (-0.5 * n_ * np.log(2 * np.pi * var) - 0.5 * np.log1p(n_ * sd2 / var)
                            - 0.5 * (within / var + (total_ - n_ * m) ** 2 / safe
                                     / (var + n_ * sd2)))
            precision = 1 / sd2 + n_ / var
            means.append((m / sd2 + total_ / var) / precision)
            variances.append(1 / precision)
        if prior.ordered:
            log_density += np.log(2) + log_ndtr((means[1] - means[0])
                                                / np.sqrt(variances[0] + variances[1]))
        peak = log_density.max(axis=1, keepdims=True)
        edge = float(np.exp(log_density[:, [0, -1]] - peak).max())
        return terms, grid, log_density, edge

    def _lora_evidence(self, data, included, z):
        """Per assignment and class, log p(LoRA rows | z) with the class's logit
        integrated on a grid, and the normalised posterior of the logit on it."""
        prior = self.priors["lora_logit"]
        n_a, s_a, _ = _sums(data.lora_arch, data.lora_y, included)
        grid = prior.mu + prior.sigma * np.linspace(-LOGIT_SDS, LOGIT_SDS, LOGIT_POINTS)
        step = grid[1] - grid[0]
        counts = np.stack([np.stack([(1 - z) @ s_a, (1 - z) @ n_a], -1),
                           np.stack([z @ s_a, z @ n_a], -1)], axis=1)     # (K, 2, 2)
        unique, pair = np.unique(counts.reshape(-1, 2), axis=0, return_inverse=True)
        successes, trials = unique[:, :1], unique[:, 1:]
        log_joint = (stats.norm.logpdf(grid, prior.mu, prior.sigma)[None, :]
                     + successes * log_expit(grid)[None, :]
                     + (trials - successes) * log_expit(-grid)[None, :])
        log_evidence = logsumexp(log_joint, axis=1) + np.log(step)
        density = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
        edge = float(np.exp(density[:, [0, -1]] - density.max(axis=1, keepdims=True)).max())
        pair = pair.reshape(len(z), 2)
        return pair, grid, density, edge, log_evidence[pair].sum(axis=1)

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
