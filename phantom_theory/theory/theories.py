"""The theory models (THEORY.md section 8): builders from the tidy table to PyMC
models, and the numpy functions that turn posterior draws into pointwise
log-likelihoods, held-out densities, architecture levels and predictions.

With y[a, j] = log Q of architecture a on context j:

- M_universal:  y = mu + gamma_j + e
- M_hier:       y = alpha_a + gamma_j + e,            alpha_a ~ Normal(mu, tau)
- M_class:      y = alpha_a + gamma_j + e,            alpha_a ~ Normal(mu + delta z_a, tau)
                z_a ~ Bernoulli(weight); log b[a, .] ~ Normal(b_mean[z_a], b_sigma) with
                ordered b_mean (no label switching); LoRA success ~ Bernoulli(
                sigmoid(lora_logit[z_a])).
- sharpness:    log(eta_c lambda0)[a, j] = log c + e: the catapult baseline with c
                fitted (conjugate normal-inverse-gamma: exact draws, no sampler).

e ~ Normal(0, sigma); the context effects gamma are zero-sum normal with scale
tau_gamma (so mu is the grand mean and does not trade off against their common
shift).

The architecture levels enter linearly with a Gaussian prior, so the sampler
sees them integrated out in closed form: given everything else, an
architecture's rows are exchangeable normal with covariance sigma^2 I + tau^2 11'
(O(rows), no matrix to factor). That leaves no level-versus-tau funnel whatever
the data's scale. The levels are drawn afterwards from their exact Gaussian
conditionals; an architecture with no outcome rows (held out) gets its level
from the population, one draw per posterior sample shared by all its contexts.
M_class sums over each architecture's class in closed form (two terms each).
The context effects are sampled, centred or not (``choose_parameterization``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, logsumexp

CLASSES = ("class_0", "class_1")   # ordered by their mean log b
LOG_2PI = np.log(2 * np.pi)


@dataclass
class FitData:
    """The rows a fit sees (held-out rows removed), as index arrays."""

    arch: np.ndarray          # architecture of each observed row
    context: np.ndarray
    y: np.ndarray             # log Q (or log c_sharp for the sharpness baseline)
    b_arch: np.ndarray        # every architecture's log b rows (measured at init)
    b_value: np.ndarray
    lora_arch: np.ndarray     # LoRA success rows of the fitted architectures
    lora_y: np.ndarray
    n_models: int
    n_contexts: int
    fitted: np.ndarray        # 1.0 for architectures with outcome rows, 0.0 otherwise
    centred_contexts: bool = True   # the sampler's geometry (see choose_parameterization)

    @property
    def fitted_index(self) -> np.ndarray:
        return np.flatnonzero(self.fitted > 0)


def fit_data(table, held_out: str | None = None, target: str = "log_q") -> FitData:
    """Index arrays of ``table``'s rows. ``held_out``'s outcomes are masked out of
    the table before any row is read, so a blind fit cannot see them."""
    from .table import mask_outcomes

    if held_out is not None:
        table = mask_outcomes(table, held_out)
    models = list(table.model.values)
    observed = table.observed.values & np.isfinite(table[target].values)
    arch, context = np.nonzero(observed)
    b_arch, b_context = np.nonzero(np.isfinite(table.log_b.values))
    lora_arch, lora_context = np.nonzero(np.isfinite(table.lora_success.values))
    fitted = np.zeros(len(models))
    fitted[np.unique(arch)] = 1.0
    return FitData(arch, context, table[target].values[arch, context], b_arch,
                   table.log_b.values[b_arch, b_context], lora_arch,
                   table.lora_success.values[lora_arch, lora_context].astype(float),
                   len(models), len(table.context), fitted)


def choose_parameterization(table, target: str = "log_q", levels: bool = True) -> bool:
    """Whether to centre the context effects.

    The model is the same either way; only the sampler's geometry changes. The
    effects are centred when the data pin them down: their estimated variance
    exceeds the sampling variance of one effect's estimate (reliability above one
    half), from a method-of-moments fit of the model's own layout (the additive
    two-way layout, or contexts alone when ``levels`` is False: there the
    architectures' differences are noise). Where the effects are small against
    the noise the centred form has a funnel and the non-centred one does not;
    where they are large, the reverse.
    """
    y = np.where(table.observed.values, table[target].values, np.nan)
    rows = np.isfinite(y)
    if rows.sum() < 3:
        return True
    grand = np.nanmean(y)
    a = np.zeros(y.shape[0])
    g = np.zeros(y.shape[1])
    for _ in range(50):   # alternating means: least squares with missing cells
        if levels:
            a = np.nan_to_num(np.nanmean(y - grand - g[None, :], axis=1))
        g = np.nan_to_num(np.nanmean(y - grand - a[:, None], axis=0))
    residual = (y - grand - a[:, None] - g[None, :])[rows]
    n_arch, n_ctx = rows.any(1).sum(), rows.any(0).sum()
    dof = max(rows.sum() - (n_arch if levels else 1) - n_ctx + 1, 1)
    s2 = max(float((residual**2).sum() / dof), 1e-12)
    per_ctx = rows.sum(0)[rows.any(0)].mean()
    tau_gamma2 = np.var(g[rows.any(0)], ddof=1) - s2 / per_ctx if n_ctx > 1 else 0.0
    return bool(tau_gamma2 > s2 / per_ctx)


def _normal_logpdf(y, mean, sigma):
    return -0.5 * ((y - mean) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI


def _onehot(index, n):
    out = np.zeros((n, len(index)))
    out[index, np.arange(len(index))] = 1.0
    return out


def _exchangeable_logpdf(residual, sigma, tau):
    """(samples,) log density of residual (samples, n) under Normal(0, sigma^2 I + tau^2 11')."""
    n = residual.shape[-1]
    s2, t2 = sigma**2, tau**2
    total = s2 + n * t2
    quad = (residual**2).sum(-1) / s2 - t2 * residual.sum(-1) ** 2 / (s2 * total)
    logdet = (n - 1) * np.log(s2) + np.log(total)
    return -0.5 * (quad + logdet + n * LOG_2PI)


class Theory:
    """The interface every theory shares."""

    name = ""
    target = "log_q"                 # the table column it models
    offset = "log_scale"             # log eta_c = target - offset
    diagnosed: tuple[str, ...] = ()  # parameters the diagnostics gate checks
    sampled = True                   # False: exact posterior draws, no MCMC
    has_levels = False

    def data_arrays(self, data: FitData) -> dict[str, np.ndarray]:
        return {"arch_index": data.arch, "context_index": data.context, "y_obs": data.y,
                "fitted": data.fitted}

    def model(self, data: FitData, coords: dict):
        raise NotImplementedError

    # -- what the numpy side computes from the draws ---------------------------------

    def effects(self, post: dict, data: FitData, rng) -> tuple[np.ndarray, np.ndarray]:
        """(levels (samples, models), gamma (samples, contexts)) per posterior
        sample; the level of an architecture without rows is a population draw."""
        raise NotImplementedError

    def pointwise_loglik(self, post: dict, data: FitData, rng=None) -> np.ndarray:
        """(samples, rows) log-likelihood of each fitted row given the effects."""
        levels, gamma = self.effects(post, data, rng or np.random.default_rng(0))
        mean = levels[:, data.arch] + gamma[:, data.context]
        return _normal_logpdf(data.y, mean, post["sigma"][:, None])

    def heldout_logdensity(self, post, data, arch: int, context, y, rng=None) -> np.ndarray:
        """(samples,) joint log density of one held-out architecture's rows, its
        level integrated out."""
        _, gamma = self.effects(post, data, rng or np.random.default_rng(0))
        residual = y[None, :] - gamma[:, context]
        return self._level_marginal(post, data, arch, residual)

    def predict(self, post, data, arch: int, context, rng) -> np.ndarray:
        """(samples, contexts) posterior predictive draws of the target."""
        levels, gamma = self.effects(post, data, rng)
        mean = levels[:, [arch]] + gamma[:, context]
        return mean + post["sigma"][:, None] * rng.standard_normal(mean.shape)


def _normal_logp(x, mean, sigma):
    """Normal log density as a pytensor expression."""
    import pytensor.tensor as pt

    return -0.5 * ((x - mean) / sigma) ** 2 - pt.log(sigma) - 0.5 * LOG_2PI


def _contexts(data: FitData, tau_gamma):
    """gamma: zero-sum normal with scale tau_gamma, centred or not."""
    import pymc as pm

    if data.centred_contexts:
        return pm.ZeroSumNormal("gamma", tau_gamma, dims="context")
    return tau_gamma * pm.ZeroSumNormal("z_gamma", 1.0, dims="context")


def _gamma(post) -> np.ndarray:
    if "gamma" in post:
        return post["gamma"]
    return post["tau_gamma"][:, None] * post["z_gamma"]


def _integrated_levels(pt, d, residual, sigma, tau):
    """Per architecture, log density of its rows' residuals (rows x k) with its
    level integrated out: Normal(0, sigma^2 I + tau^2 11'), in closed form. An
    architecture without rows contributes 0."""
    onehot = d["q_onehot"]                                    # (models, rows)
    n = onehot.sum(axis=1)[:, None]                           # rows per architecture
    s1 = onehot @ residual
    s2 = onehot @ residual**2
    var_e, var_a = sigma**2, tau**2
    total = var_e + n * var_a
    quad = s2 / var_e - var_a * s1**2 / (var_e * total)
    logdet = (n - 1) * pt.log(var_e) + pt.log(total)
    return -0.5 * (quad + logdet + n * LOG_2PI)


def _draw_levels(post, data, loc, rng):
    """(samples, models) levels from their Gaussian conditionals given the context
    effects, with prior Normal(loc (samples, models), tau); an architecture with no
    rows gets a population draw."""
    residual = data.y[None, :] - _gamma(post)[:, data.context]
    onehot = _onehot(data.arch, data.n_models)
    n = onehot.sum(axis=1)[None, :]
    total = np.einsum("ar,sr->sa", onehot, residual)
    var_e, var_a = post["sigma"][:, None] ** 2, post["tau"][:, None] ** 2
    precision = 1 / var_a + n / var_e
    mean = (loc / var_a + total / var_e) / precision
    return mean + rng.standard_normal(mean.shape) / np.sqrt(precision)


class Universal(Theory):
    name = "universal"
    diagnosed = ("mu", "tau_gamma", "gamma", "z_gamma", "sigma")

    def data_arrays(self, data):
        return {**super().data_arrays(data), "q_onehot": _onehot(data.arch, data.n_models)}

    def model(self, data, coords):
        import pymc as pm

        with pm.Model(coords=coords) as model:
            d = {name: pm.Data(name, value) for name, value in self.data_arrays(data).items()}
            mu = pm.Normal("mu", 0.0, 5.0)
            tau_gamma = pm.HalfNormal("tau_gamma", 1.0)
            gamma = _contexts(data, tau_gamma)
            sigma = pm.HalfNormal("sigma", 1.0)
            self._likelihood(d, mu + gamma[d["context_index"]], sigma)
        return model

    def _likelihood(self, d, mean, sigma):
        import pymc as pm

        pm.Normal("y", mean, sigma, observed=d["y_obs"], shape=d["arch_index"].shape)

    def effects(self, post, data, rng):
        return np.repeat(post["mu"][:, None], data.n_models, axis=1), _gamma(post)

    def _level_marginal(self, post, data, arch, residual):
        return _exchangeable_logpdf(residual - post["mu"][:, None], post["sigma"], 0.0)


class Hierarchical(Universal):
    name = "hier"
    diagnosed = ("mu", "tau", "tau_gamma", "gamma", "z_gamma", "sigma")
    has_levels = True

    def _likelihood(self, d, mean, sigma):
        import pymc as pm
        import pytensor.tensor as pt

        tau = pm.HalfNormal("tau", 1.0)
        residual = (d["y_obs"] - mean)[:, None]
        pm.Potential("rows", _integrated_levels(pt, d, residual, sigma, tau).sum())

    def effects(self, post, data, rng):
        loc = np.repeat(post["mu"][:, None], data.n_models, axis=1)
        return _draw_levels(post, data, loc, rng), _gamma(post)

    def _level_marginal(self, post, data, arch, residual):
        return _exchangeable_logpdf(residual - post["mu"][:, None], post["sigma"], post["tau"])


class ClassMixture(Theory):
    name = "class"
    diagnosed = ("mu", "delta", "tau", "tau_gamma", "gamma", "z_gamma", "sigma", "weight",
                 "b_mean", "b_sigma", "lora_logit")
    has_levels = True

    def data_arrays(self, data):
        return {**super().data_arrays(data), "b_value": data.b_value,
                "b_onehot": _onehot(data.b_arch, data.n_models), "lora_y": data.lora_y,
                "lora_onehot": _onehot(data.lora_arch, data.n_models),
                "q_onehot": _onehot(data.arch, data.n_models)}

    def model(self, data, coords):
        import pymc as pm
        import pytensor.tensor as pt

        with pm.Model(coords={**coords, "class": list(CLASSES)}) as model:
            d = {name: pm.Data(name, value) for name, value in self.data_arrays(data).items()}
            mu = pm.Normal("mu", 0.0, 5.0)
            delta = pm.Normal("delta", 0.0, 2.0)
            tau = pm.HalfNormal("tau", 1.0)
            tau_gamma = pm.HalfNormal("tau_gamma", 1.0)
            gamma = _contexts(data, tau_gamma)
            sigma = pm.HalfNormal("sigma", 1.0)
            weight = pm.Beta("weight", 2.0, 2.0)
            b_mean = pm.Normal("b_mean", 0.0, 3.0, dims="class", initval=np.array([-1.0, 1.0]),
                               transform=pm.distributions.transforms.ordered)
            b_sigma = pm.HalfNormal("b_sigma", 1.0)
            lora_logit = pm.Normal("lora_logit", 0.0, 2.0, dims="class")
            loc = pt.stack([mu, mu + delta])
            residual = (d["y_obs"] - gamma[d["context_index"]])[:, None] - loc[None, :]
            b_terms = _normal_logp(d["b_value"][:, None], b_mean[None, :], b_sigma)
            lora_terms = (d["lora_y"][:, None] * -pt.softplus(-lora_logit)[None, :]
                          + (1 - d["lora_y"][:, None]) * -pt.softplus(lora_logit)[None, :])
            components = (pt.log(pt.stack([1 - weight, weight]))[None, :]
                          + _integrated_levels(pt, d, residual, sigma, tau)
                          + d["b_onehot"] @ b_terms + d["lora_onehot"] @ lora_terms)
            pm.Potential("mixture", pt.logsumexp(components, axis=1).sum())
        return model

    @staticmethod
    def _loc(post):
        return post["mu"][:, None] + post["delta"][:, None] * np.array([0.0, 1.0])  # (S, 2)

    def _per_arch(self, post, data, with_rows: bool = True) -> np.ndarray:
        """(samples, models, 2) log P(class) + log b rows + LoRA rows, and with
        ``with_rows`` each class's density of the architecture's outcome rows."""
        b = _normal_logpdf(data.b_value[None, :, None], post["b_mean"][:, None, :],
                           post["b_sigma"][:, None, None])
        logit = post["lora_logit"][:, None, :]
        y = data.lora_y[None, :, None]
        lora = y * log_expit(logit) + (1 - y) * log_expit(-logit)
        out = (np.log(np.stack([1 - post["weight"], post["weight"]], -1))[:, None, :]
               + np.einsum("ar,srk->sak", _onehot(data.b_arch, data.n_models), b)
               + np.einsum("ar,srk->sak", _onehot(data.lora_arch, data.n_models), lora))
        if not with_rows:
            return out
        residual = data.y[None, :] - _gamma(post)[:, data.context]
        for arch in data.fitted_index:
            rows = residual[:, data.arch == arch]
            for k in (0, 1):
                out[:, arch, k] += _exchangeable_logpdf(
                    rows - self._loc(post)[:, [k]], post["sigma"], post["tau"])
        return out

    def class_probability(self, post, data) -> np.ndarray:
        """(samples, models) posterior P(class_1) of each architecture."""
        per_arch = self._per_arch(post, data)
        return np.exp(per_arch[..., 1] - logsumexp(per_arch, axis=-1))

    def effects(self, post, data, rng):
        probability = self.class_probability(post, data)
        classes = (rng.random(probability.shape) < probability).astype(float)
        loc = post["mu"][:, None] + post["delta"][:, None] * classes
        return _draw_levels(post, data, loc, rng), _gamma(post)

    def _level_marginal(self, post, data, arch, residual):
        per_arch = self._per_arch(post, data, with_rows=False)[:, arch, :]
        log_class = per_arch - logsumexp(per_arch, axis=-1, keepdims=True)
        terms = [log_class[:, k] + _exchangeable_logpdf(
            residual - self._loc(post)[:, [k]], post["sigma"], post["tau"]) for k in (0, 1)]
        return np.logaddexp(*terms)

    @staticmethod
    def lora_success_probability(post) -> np.ndarray:
        return expit(post["lora_logit"])


class Sharpness(Theory):
    """log c_sharp ~ Normal(log c, sigma), with a normal-inverse-gamma prior
    (log c | sigma^2 ~ N(0, sigma^2 / 0.01), sigma^2 ~ InvGamma(1, 1)): exact draws."""

    name = "sharpness"
    target = "log_c_sharp"
    offset = "log_lambda0"
    diagnosed = ("log_c", "sigma")
    sampled = False
    prior = {"mean": 0.0, "kappa": 0.01, "a": 1.0, "b": 1.0}

    def exact_posterior(self, data: FitData, chains: int, draws: int, seed: int) -> dict:
        p = self.prior
        y = data.y
        n = len(y)
        mean = y.mean() if n else 0.0
        kappa = p["kappa"] + n
        centre = (p["kappa"] * p["mean"] + n * mean) / kappa
        a = p["a"] + n / 2
        b = (p["b"] + 0.5 * ((y - mean) ** 2).sum()
             + p["kappa"] * n * (mean - p["mean"]) ** 2 / (2 * kappa))
        rng = np.random.default_rng(seed)
        variance = b / rng.gamma(a, 1.0, size=(chains, draws))
        return {"log_c": rng.normal(centre, np.sqrt(variance / kappa)), "sigma": np.sqrt(variance)}

    def effects(self, post, data, rng):
        S = len(post["log_c"])
        return (np.repeat(post["log_c"][:, None], data.n_models, 1),
                np.zeros((S, data.n_contexts)))

    def _level_marginal(self, post, data, arch, residual):
        return _exchangeable_logpdf(residual - post["log_c"][:, None], post["sigma"], 0.0)


THEORIES = {t.name: t for t in (Universal(), Hierarchical(), ClassMixture(), Sharpness())}
