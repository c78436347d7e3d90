"""M_class: architecture classes (THEORY.md sections 7 and 8).

    log Q[a, j] ~ Normal(alpha_a + gamma_j, sigma),  alpha_a ~ Normal(mu + delta z_a, tau)
    z_a ~ Bernoulli(weight)
    s_a ~ Normal(s_mean[z_a], s_sigma)      one row per architecture (s_mean ordered:
                                            no label switching)
    LoRA, by the theory's ``lora_form``:
      cost     cost[a, j] ~ Normal(cost_mean[z_a], cost_sigma)         (``class``)
      success  success[a, j] ~ Bernoulli(sigmoid(lora_logit[z_a]))     (``class_binary``)

s_a is the architecture's class statistic, the table's ``class_stat`` (mean pairwise
cosine, top-PC share or effective rank / d of the readout rows: TableOptions.
class_statistic). It is measured at init, so every architecture has it, a held-out
one too, whose class is then predicted from its own s. s is modelled on its own
scale, not standardised within the fit, so that the simulator and the fit see the
same numbers; the priors are stated for statistics of order 0.01-1 (``with_priors``
for another scale). The pair-level log b stays in the rows (``FitData.b_value``) as
a covariate; the class does not read it: b varies as much between the contexts of
one model as between models (section 7).

The class predicts LoRA sufficiency. Its primary form is continuous: the LoRA cost
log(eta_c^LoRA / eta_c^full) of each (a, j), same optimizer (``class``). The binary
form (``class_binary``) models LoRA success below the budget LORA_BUDGET; it is
informative only when some rows fail.

The class is summed over per architecture in closed form (two terms each), the
level integrated out within each (``additive``).

For exact inference (``exact``) the class layer is summed over every assignment z
of the architectures to the classes (``class_evidence``): given z, weight has a
Beta posterior; each block of normal rows (the class statistics, the LoRA costs) is
normal-conjugate in its two class means with one scale, the means integrated in
closed form (an ordered prior adds the factor 2 P(mean_0 < mean_1 | rows)) and the
scale on a fine grid (``NormalClassRows``); binary LoRA rows have one logit per
class, integrated on a fine grid (``LogitClassRows``).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import betaln, expit, log_expit, log_ndtr, logsumexp

from ...errors import PhantomError
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

CLASSES = ("class_0", "class_1")   # ordered by their mean class statistic
LORA_FORMS = ("cost", "success")
LORA_BUDGET = ("LoRA reaches the flip below its own searched stability edge eta_max; an "
               "unsearched edge counts as no edge (table.lora_success)")
# The class layer's priors. The class statistics are of order 0.01-1; the LoRA cost
# is a log ratio of learning rates, of order 1.
CLASS_STATISTIC_PRIORS = {"s_mean": Normal(0.3, 0.5, dims=("class",), ordered=True),
                          "s_sigma": HalfNormal(0.2)}
LORA_COST_PRIORS = {"cost_mean": Normal(0.0, 3.0, dims=("class",)),
                    "cost_sigma": HalfNormal(1.0)}
LORA_SUCCESS_PRIORS = {"lora_logit": Normal(0.0, 2.0, dims=("class",))}
# The one-dimensional grids the class layer is integrated on: log scale from
# SCALE_DECADES decades below the spread of the rows to 10x the spread plus
# SCALE_PRIOR_SDS prior sds above it (the tails beyond hold under 1e-12 of the mass),
# the LoRA logit over +-LOGIT_SDS prior sds. Both are far finer than the posteriors
# they integrate.
SCALE_POINTS, SCALE_DECADES, SCALE_PRIOR_SDS = 2048, 12, 8.0
LOGIT_POINTS, LOGIT_SDS = 2401, 12.0


def _sums(arch, value, included) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum, sum of squares) of the rows of each included architecture."""
    position = {a: i for i, a in enumerate(included)}
    out = np.zeros((3, len(included)))
    for a, v in zip(arch, value, strict=True):
        out[:, position[a]] += (1.0, v, v * v)
    return out[0], out[1], out[2]


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


def _grid_edge(log_density) -> float:
    """The largest density at either end of a grid, relative to its row's peak."""
    peak = log_density.max(axis=1, keepdims=True)
    return float(np.exp(log_density[:, [0, -1]] - peak).max()) if log_density.size else 0.0


@dataclass
class NormalClassRows:
    """Rows value ~ Normal(mean[z_a], scale) of the included architectures under every
    assignment z (K, E): the class means from their normal prior (ordered or not),
    the scale half-normal. Given z and the scale the means are normal-conjugate and
    integrated in closed form; the scale is integrated on a uniform grid of log scale."""

    name: str                   # the parameters are {name}_mean (class,) and {name}_sigma
    n: np.ndarray               # (2, K) rows in each class under each assignment
    total: np.ndarray           # (2, K) their sum
    prior: Normal               # of the class means
    grid: np.ndarray            # log scale
    log_density: np.ndarray     # (K, SCALE_POINTS) log p(scale, rows | z) per unit log scale

    @classmethod
    def build(cls, name, arch, value, included, z, prior: Normal,
              scale_prior: HalfNormal) -> NormalClassRows:
        """The block of rows (``arch``, ``value``) for the assignments z. Per class, with
        n rows of sum t and within-class sum of squares w, v = scale^2 and the means'
        prior Normal(m, sd), the means integrated: -n/2 log(2 pi v) - log(1 + n sd^2 / v)/2
        - w / (2 v) - (t - n m)^2 / (2 n (v + n sd^2)); an ordered prior adds
        log 2 + log P(mean_0 < mean_1 | rows, scale)."""
        value = np.asarray(value, float)
        n_a, s_a, ss_a = _sums(arch, value, included)
        spread = float(np.std(value)) if len(value) > 1 else 0.0
        spread = spread if spread > 0 else 1.0
        grid = np.linspace(np.log(spread) - SCALE_DECADES * np.log(10),
                           np.log(10 * spread + SCALE_PRIOR_SDS * scale_prior.sigma),
                           SCALE_POINTS)
        var = np.exp(2 * grid)[None, :]
        m, sd2 = prior.mu, prior.sigma**2
        log_density = (np.log(2) + stats.norm.logpdf(np.exp(grid), 0, scale_prior.sigma)
                       + grid)[None, :].repeat(len(z), 0)
        counts, totals, means, variances = [], [], [], []
        for k in (0, 1):
            member = z if k == 1 else 1 - z
            n, total, squares = member @ n_a, member @ s_a, member @ ss_a
            counts.append(n)
            totals.append(total)
            n_, total_, squares_ = n[:, None], total[:, None], squares[:, None]
            safe = np.maximum(n_, 1)
            within = np.maximum(squares_ - total_**2 / safe, 0.0)
            log_density += (-0.5 * n_ * np.log(2 * np.pi * var) - 0.5 * np.log1p(n_ * sd2 / var)
                            - 0.5 * (within / var + (total_ - n_ * m) ** 2 / safe
                                     / (var + n_ * sd2)))
            precision = 1 / sd2 + n_ / var
            means.append((m / sd2 + total_ / var) / precision)
            variances.append(1 / precision)
        if prior.ordered:
            log_density += np.log(2) + log_ndtr((means[1] - means[0])
                                                / np.sqrt(variances[0] + variances[1]))
        return cls(name, np.stack(counts), np.stack(totals), prior, grid, log_density)

    @property
    def log_evidence(self) -> np.ndarray:
        """(K,) log p(rows | z): the scale integrated over the grid."""
        return logsumexp(self.log_density, axis=1) + np.log(self.grid[1] - self.grid[0])

    @property
    def edge(self) -> float:
        """The largest density at an end of the scale grid, relative to the peak."""
        return _grid_edge(self.log_density)

    def draw(self, index: np.ndarray, rng) -> dict:
        """Draws of {name}_sigma and {name}_mean (S, 2) given the assignments z[index]."""
        scale = np.exp(_grid_draws(self.grid, self.log_density, index, rng))
        return {f"{self.name}_sigma": scale, f"{self.name}_mean": self._means(index, scale, rng)}

    def _means(self, index, scale, rng) -> np.ndarray:
        """(S, 2) class means given z and the scale: independent normal posteriors,
        conditioned on mean_0 < mean_1 when the prior is ordered (their difference
        from a truncated normal, then the first given it)."""
        p = self.prior
        means, variances = [], []
        for k in (0, 1):
            n, total = self.n[k][index], self.total[k][index]
            precision = 1 / p.sigma**2 + n / scale**2
            means.append((p.mu / p.sigma**2 + total / scale**2) / precision)
            variances.append(1 / precision)
        (a0, a1), (v0, v1) = means, variances
        if not p.ordered:
            return np.stack([a0 + np.sqrt(v0) * rng.standard_normal(len(a0)),
                             a1 + np.sqrt(v1) * rng.standard_normal(len(a1))], axis=-1)
        centre, sd = a1 - a0, np.sqrt(v0 + v1)
        difference = stats.truncnorm.rvs(-centre / sd, np.inf, loc=centre, scale=sd,
                                         random_state=rng)
        first = (a0 - v0 / (v0 + v1) * (difference - centre)
                 + np.sqrt(v0 * v1 / (v0 + v1)) * rng.standard_normal(len(a0)))
        return np.stack([first, first + difference], axis=-1)


@dataclass
class LogitClassRows:
    """Binary rows y ~ Bernoulli(sigmoid(lora_logit[z_a])) under every assignment z,
    each class's logit from its normal prior, integrated on a grid. Assignments that
    give a class the same (successes, trials) share one grid density."""

    grid: np.ndarray
    log_density: np.ndarray     # (pairs, LOGIT_POINTS), normalised per pair
    pair: np.ndarray            # (K, 2) the (successes, trials) pair of each class
    log_evidence: np.ndarray    # (K,) log p(rows | z)

    @classmethod
    def build(cls, arch, y, included, z, prior: Normal) -> LogitClassRows:
        """The block of binary rows (``arch``, ``y``) for the assignments z."""
        n_a, s_a, _ = _sums(arch, y, included)
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
        pair = pair.reshape(len(z), 2)
        return cls(grid, density, pair, log_evidence[pair].sum(axis=1))

    @property
    def edge(self) -> float:
        """The largest density at an end of the logit grid, relative to the peak."""
        return _grid_edge(self.log_density)

    def draw(self, index: np.ndarray, rng) -> dict:
        """Draws of lora_logit (S, 2) given the assignments z[index]."""
        return {"lora_logit": np.stack(
            [_grid_draws(self.grid, self.log_density, self.pair[index, k], rng)
             for k in (0, 1)], axis=-1)}


@dataclass
class ClassEvidence:
    """M_class's class layer summed over exactly: every assignment ``z`` (K, included)
    of the architectures to the classes, its log evidence ``log_weight`` (K,) =
    log p(z) + the log evidence of each block of class rows given z (the class
    statistics, the LoRA rows), with weight and each block's parameters integrated
    out, and their draws given z."""

    included: np.ndarray        # architectures enumerated (outcome, class statistic or LoRA rows)
    z: np.ndarray               # (K, len(included)) 0/1
    log_weight: np.ndarray      # (K,)
    weight_prior: tuple[float, float]
    blocks: tuple               # NormalClassRows and LogitClassRows

    @property
    def edge(self) -> float:
        """The largest density at an end of any block's grid, relative to its peak."""
        return max((block.edge for block in self.blocks), default=0.0)

    def draw(self, index: np.ndarray, rng) -> dict:
        """Draws of weight and of every block's parameters given the assignments
        z[index], one per entry of ``index``."""
        z = self.z[index]
        n1 = z.sum(axis=1)
        a, b = self.weight_prior
        out = {"weight": rng.beta(a + n1, b + len(self.included) - n1)}
        for block in self.blocks:
            out.update(block.draw(index, rng))
        return out


class ClassMixture(AdditiveTheory):
    """M_class: alpha_a ~ Normal(mu + delta z_a, tau), with a two-class mixture z_a on
    the architecture-level class statistic s_a that also predicts the LoRA cost
    log(eta_c^LoRA / eta_c^full), cost[a, j] ~ Normal(cost_mean[z_a], cost_sigma)."""

    name = "class"
    lora_form = "cost"          # LORA_FORMS: the continuous cost, or binary success
    lora_budget = ""            # what LoRA success means (the binary form's budget)
    priors = {**ADDITIVE_PRIORS, "tau": HalfNormal(1.0), "delta": Normal(0.0, 2.0),
              "weight": Beta(2.0, 2.0), **CLASS_STATISTIC_PRIORS, **LORA_COST_PRIORS}
    coords = {"class": CLASSES}
    has_levels = True
    has_classes = True
    color = "#762a83"

    # -- the rows of the class layer ----------------------------------------------------

    @property
    def class_families(self) -> dict:
        """The prior family of each class-layer parameter that exact inference
        integrates (``exact.supports``)."""
        lora = ({"cost_mean": Normal, "cost_sigma": HalfNormal} if self.lora_form == "cost"
                else {"lora_logit": Normal})
        return {"delta": Normal, "weight": Beta, "s_mean": Normal, "s_sigma": HalfNormal,
                **lora}

    def lora_rows(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(architecture, value) of the LoRA rows of the theory's form: the costs, or
        the 1/0 successes."""
        if self.lora_form == "cost":
            return data.cost_arch, data.cost_y
        return data.lora_arch, data.lora_y

    def class_architectures(self, data) -> np.ndarray:
        """The architectures the class layer assigns: those with outcome rows, a class
        statistic or LoRA rows (a held-out one has its class statistic)."""
        arch, _ = self.lora_rows(data)
        return np.union1d(np.union1d(data.arch, data.class_arch), arch).astype(int)

    def data_arrays(self, data):
        """The additive arrays, the class statistics and the LoRA rows, each with its
        (models, rows) indicator."""
        arch, y = self.lora_rows(data)
        return {**super().data_arrays(data), "s_value": data.class_value,
                "s_onehot": onehot(data.class_arch, data.n_models), "lora_y": y,
                "lora_onehot": onehot(arch, data.n_models)}

    # -- the model ----------------------------------------------------------------------

    def model(self, data, coords):
        """The pm.Model of M_class: per architecture, logsumexp over the two classes of
        log P(class) + its outcome rows (level integrated out) + its class statistic +
        its LoRA rows."""
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
            s_mean = self.rv("s_mean")
            s_sigma = self.rv("s_sigma")
            loc = pt.stack([mu, mu + delta])
            residual = (d["y_obs"] - gamma[d["context_index"]])[:, None] - loc[None, :]
            s_terms = normal_logp(d["s_value"][:, None], s_mean[None, :], s_sigma)
            components = (pt.log(pt.stack([1 - weight, weight]))[None, :]
                          + integrated_levels(d, residual, sigma, tau)
                          + d["s_onehot"] @ s_terms + d["lora_onehot"] @ self._lora_terms(d))
            pm.Potential("mixture", pt.logsumexp(components, axis=1).sum())
        return model

    def _lora_terms(self, d):
        """(rows, 2) pytensor log density of each LoRA row under each class (its
        parameters created here, after the class statistic's)."""
        import pytensor.tensor as pt

        y = d["lora_y"][:, None]
        if self.lora_form == "cost":
            return normal_logp(y, self.rv("cost_mean")[None, :], self.rv("cost_sigma"))
        logit = self.rv("lora_logit")[None, :]
        return y * -pt.softplus(-logit) + (1 - y) * -pt.softplus(logit)

    # -- what the numpy side computes from the draws --------------------------------------

    @staticmethod
    def _loc(post):
        return post["mu"][:, None] + post["delta"][:, None] * np.array([0.0, 1.0])  # (S, 2)

    def _lora_logpdf(self, post, y) -> np.ndarray:
        """(samples, rows, 2) log density of LoRA rows ``y`` under each class."""
        if self.lora_form == "cost":
            return normal_logpdf(y[None, :, None], post["cost_mean"][:, None, :],
                                 post["cost_sigma"][:, None, None])
        logit, y = post["lora_logit"][:, None, :], y[None, :, None]
        return y * log_expit(logit) + (1 - y) * log_expit(-logit)

    def _per_arch(self, post, data, with_rows: bool = True) -> np.ndarray:
        """(samples, models, 2) log P(class) + the class statistic + LoRA rows, and with
        ``with_rows`` each class's density of the architecture's outcome rows."""
        s = normal_logpdf(data.class_value[None, :, None], post["s_mean"][:, None, :],
                          post["s_sigma"][:, None, None])
        arch, y = self.lora_rows(data)
        out = (np.log(np.stack([1 - post["weight"], post["weight"]], -1))[:, None, :]
               + np.einsum("ar,srk->sak", onehot(data.class_arch, data.n_models), s)
               + np.einsum("ar,srk->sak", onehot(arch, data.n_models),
                           self._lora_logpdf(post, y)))
        if not with_rows:
            return out
        residual = data.y[None, :] - gamma_draws(post, data)[:, data.context]
        for a in data.fitted_index:
            rows = residual[:, data.arch == a]
            for k in (0, 1):
                out[:, a, k] += exchangeable_logpdf(
                    rows - self._loc(post)[:, [k]], post["sigma"], post["tau"])
        return out

    def class_probability(self, post, data) -> np.ndarray:
        """(samples, models) posterior P(class_1) of each architecture given its class
        statistic, its LoRA rows and its outcome rows (a held-out architecture: its
        class statistic alone)."""
        per_arch = self._per_arch(post, data)
        return np.exp(per_arch[..., 1] - logsumexp(per_arch, axis=-1))

    def lora_by_class(self, post) -> dict[str, np.ndarray]:
        """The LoRA sufficiency of each class, name -> (samples, classes): the mean LoRA
        cost ``lora_cost_mean`` (cost form) or P(LoRA success) ``lora_success``
        (binary form)."""
        if self.lora_form == "cost":
            return {"lora_cost_mean": post["cost_mean"]}
        return {"lora_success": expit(post["lora_logit"])}

    def lora_success_probability(self, post) -> np.ndarray:
        """(samples, classes) P(LoRA success) of each class: the binary form only."""
        if self.lora_form != "success":
            raise PhantomError(f"{self.name} models the continuous LoRA cost, not LoRA "
                               "success; fit class_binary for P(LoRA success)")
        return expit(post["lora_logit"])

    def lora_cost_draws(self, post, data, arch: int, n_contexts: int, rng) -> np.ndarray:
        """(samples, n_contexts) posterior predictive LoRA cost of architecture ``arch``
        on new contexts: its class drawn once per posterior sample from P(class_1)
        (``class_probability``; a held-out architecture's from its class statistic),
        shared by its contexts, then cost ~ Normal(cost_mean[class], cost_sigma) per
        context. The cost form only."""
        if self.lora_form != "cost":
            raise PhantomError(f"{self.name} models LoRA success, not the LoRA cost; fit "
                               "class for a cost prediction")
        probability = self.class_probability(post, data)[:, arch]
        classes = (rng.random(len(probability)) < probability).astype(int)
        mean = np.take_along_axis(post["cost_mean"], classes[:, None], axis=1)
        noise = rng.standard_normal((len(probability), n_contexts))
        return mean + post["cost_sigma"][:, None] * noise

    def effects(self, post, data, rng):
        """(samples, models) levels from their conditionals under Normal(mu + delta z_a,
        tau), z_a drawn from P(class_1) per sample, and (samples, contexts) gamma."""
        probability = self.class_probability(post, data)
        classes = (rng.random(probability.shape) < probability).astype(float)
        loc = post["mu"][:, None] + post["delta"][:, None] * classes
        return draw_levels(post, data, loc, rng), gamma_draws(post, data)

    def level_marginal(self, post, data, arch, residual):
        """(samples,) log density of the residuals, class and level integrated out:
        log sum_k P(class k | class statistic, LoRA rows)
        Normal(mu + delta k, sigma^2 I + tau^2 11')."""
        per_arch = self._per_arch(post, data, with_rows=False)[:, arch, :]
        log_class = per_arch - logsumexp(per_arch, axis=-1, keepdims=True)
        terms = [log_class[:, k] + exchangeable_logpdf(
            residual - self._loc(post)[:, [k]], post["sigma"], post["tau"]) for k in (0, 1)]
        return np.logaddexp(*terms)

    # -- exact inference of the class layer ------------------------------------------------

    def class_evidence(self, data, max_models: int = 10) -> ClassEvidence:
        """The class layer of ``data`` summed over every assignment of the architectures
        it assigns (``class_architectures``; at most ``max_models`` of them:
        2^max_models terms)."""
        included = self.class_architectures(data)
        if len(included) > max_models:
            raise ValueError(f"{len(included)} architectures with rows: more than the "
                             f"{max_models} whose class assignments are summed exactly")
        z = np.array(list(itertools.product((0.0, 1.0), repeat=len(included)))).reshape(
            -1, len(included))
        a, b = self.priors["weight"].alpha, self.priors["weight"].beta
        n1 = z.sum(axis=1)
        log_weight = betaln(a + n1, b + len(included) - n1) - betaln(a, b)
        p = self.priors
        blocks = [NormalClassRows.build("s", data.class_arch, data.class_value, included, z,
                                        p["s_mean"], p["s_sigma"])]
        arch, y = self.lora_rows(data)
        if self.lora_form == "cost":
            blocks.append(NormalClassRows.build("cost", arch, y, included, z, p["cost_mean"],
                                                p["cost_sigma"]))
        else:
            blocks.append(LogitClassRows.build(arch, y, included, z, p["lora_logit"]))
        for block in blocks:
            log_weight = log_weight + block.log_evidence
        return ClassEvidence(included, z, log_weight, (a, b), tuple(blocks))

    # -- the generative process ---------------------------------------------------------

    def simulate_levels(self, params, log_b, rng):
        """(alpha, classes, log_b, lora_success): z_a ~ Bernoulli(weight), alpha_a =
        tau z_alpha[a] + delta z_a, the measured log b kept (a covariate the class
        does not read); the LoRA rows come with the class statistic (``simulate``)."""
        A = log_b.shape[0]
        classes = (rng.random(A) < params["weight"]).astype(int)
        alpha = params["tau"] * np.asarray(params["z_alpha"]) + params["delta"] * classes
        return alpha, classes, log_b, np.full(log_b.shape, np.nan)

    def simulate(self, params, log_b, rng):
        """The additive outcomes (levels from ``simulate_levels``), then each
        architecture's class statistic s_a ~ Normal(s_mean[z_a], s_sigma) and each
        (a, j)'s LoRA row: cost ~ Normal(cost_mean[z_a], cost_sigma), or success ~
        Bernoulli(sigmoid(lora_logit[z_a])) in the binary form."""
        outcomes = super().simulate(params, log_b, rng)
        z, (A, J) = outcomes.classes, log_b.shape
        s = np.asarray(params["s_mean"])[z] + params["s_sigma"] * rng.normal(0, 1, A)
        missing = np.full((A, J), np.nan)
        if self.lora_form == "cost":
            cost = (np.asarray(params["cost_mean"])[z][:, None]
                    + params["cost_sigma"] * rng.normal(0, 1, (A, J)))
            return dataclasses.replace(outcomes, class_stat=s, lora_cost=cost,
                                       lora_success=missing)
        success = expit(np.asarray(params["lora_logit"]))[z]
        lora = (rng.random((A, J)) < success[:, None]).astype(float)
        return dataclasses.replace(outcomes, class_stat=s, lora_cost=missing, lora_success=lora)


class ClassMixtureBinary(ClassMixture):
    """M_class with the binary LoRA form: success[a, j] ~ Bernoulli(sigmoid(lora_logit[z_a])),
    success meaning that LoRA reaches the flip below its own searched stability edge
    eta_max (an unsearched edge counts as no edge: ``table.lora_success``). Informative
    only when some rows fail."""

    name = "class_binary"
    lora_form = "success"
    lora_budget = LORA_BUDGET
    priors = {**{k: v for k, v in ClassMixture.priors.items() if k not in LORA_COST_PRIORS},
              **LORA_SUCCESS_PRIORS}
    color = "#c2a5cf"
