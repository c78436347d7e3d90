"""The interface every theory shares, and the rows a fit sees.

A theory is a small object that declares what it is and builds its model:

    name          its key in the registry (``THEORIES``), the ``theory`` of a fit
    target        the table column it models (log Q, or log c_sharp)
    offset        the column with log eta_c = target - offset (its measured-at-init shift)
    priors        parameter name -> prior (``priors.py``): data that the PyMC model and
                  the simulator both read
    param_dims    parameter name -> its dims, for the InferenceData
    coords        coords of its own dims (the classes), beyond model and context
    parameters    every sampled parameter: what the diagnostics gate checks
    sampled       False: exact posterior draws (``exact_posterior``), no MCMC
    exact_inference  True: linear-Gaussian given a few scales, so ``exact`` can
                  integrate it by quadrature instead of sampling it (FitOptions.inference)
    has_levels    it has an architecture level alpha_a (``effects`` returns it)
    has_classes   it has classes (``class_probability``, ``lora_by_class``)
    color         its colour in the figures

and what it computes:

    model(data, coords)         the pm.Model over ``FitData`` (sampled theories)
    exact_posterior(...)        exact draws (theories that are not sampled)
    effects(post, data, rng)    per posterior sample, the architecture levels and
                                the context effects
    pointwise_loglik            (samples, rows) log-likelihood, for PSIS-LOO
    level_marginal              (samples,) density of one architecture's residuals
                                with its level integrated out
    heldout_logdensity          (samples,) density of a held-out architecture's rows
    predict                     (samples, contexts) posterior predictive draws
    prior_draw / simulate       parameters from ``priors``, and outcomes from them
    with_priors(**changes)      the same theory under other priors

Every theory models y = level_a + gamma_j + e with e ~ Normal(0, sigma), so the
row likelihood, the held-out density and the prediction are written once here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .priors import Prior, draw_priors

LOG_2PI = np.log(2 * np.pi)


@dataclass
class FitData:
    """The rows a fit sees (held-out rows removed), as index arrays."""

    arch: np.ndarray          # architecture of each observed row
    context: np.ndarray
    y: np.ndarray             # the theory's target (log Q, or log c_sharp)
    b_arch: np.ndarray        # every architecture's log b rows (measured at init): a
    b_value: np.ndarray       # pair-level covariate
    lora_arch: np.ndarray     # LoRA success rows of the fitted architectures
    lora_y: np.ndarray
    n_models: int
    n_contexts: int
    fitted: np.ndarray        # 1.0 for architectures with outcome rows, 0.0 otherwise
    centred_contexts: bool = True   # the sampler's geometry (see choose_parameterization)
    # The architecture-level class statistic of every architecture that has one
    # (measured at init, so a held-out architecture's too), one row each.
    class_arch: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    class_value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # The LoRA cost log(eta_c^LoRA / eta_c^full) rows of the fitted architectures.
    cost_arch: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    cost_context: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    cost_y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def fitted_index(self) -> np.ndarray:
        """Indices of the architectures with outcome rows (fitted > 0)."""
        return np.flatnonzero(self.fitted > 0)

    @property
    def nested(self) -> bool:
        """Whether no context of the rows is seen on two architectures: a nested
        layout, where the context scale and the noise cannot be told apart."""
        return rows_nested(self.arch, self.context)


def rows_nested(arch: np.ndarray, context: np.ndarray) -> bool:
    """True when no context appears with two different architectures among the rows."""
    if len(arch) == 0:
        return False
    pairs = np.unique(np.stack([np.asarray(context), np.asarray(arch)]), axis=1)
    return bool(np.bincount(pairs[0]).max() <= 1)


def fit_data(table, held_out: str | None = None, target: str = "log_q") -> FitData:
    """Index arrays of ``table``'s rows. ``held_out``'s outcomes (its LoRA success and
    cost among them) are masked out of the table before any row is read, so a blind
    fit cannot see them; its class statistic, measured at init, stays. The LoRA rows
    of held-out contexts are left out, as their outcome rows are. A table without
    ``class_stat`` or ``lora_cost`` (an older one) gives no rows of them."""
    from ..table import mask_outcomes

    if held_out is not None:
        table = mask_outcomes(table, held_out)
    models = list(table.model.values)
    observed = table.observed.values & np.isfinite(table[target].values)
    arch, context = np.nonzero(observed)
    seen = (~table.held_out_context.values if "held_out_context" in table
            else np.ones(len(table.context), bool))[None, :]
    b_arch, b_context = np.nonzero(np.isfinite(table.log_b.values))
    lora_arch, lora_context = np.nonzero(np.isfinite(table.lora_success.values) & seen)
    fitted = np.zeros(len(models))
    fitted[np.unique(arch)] = 1.0
    extra = {}
    if "class_stat" in table:
        statistic = table.class_stat.values
        extra["class_arch"] = np.flatnonzero(np.isfinite(statistic))
        extra["class_value"] = statistic[extra["class_arch"]].astype(float)
    if "lora_cost" in table:
        cost = table.lora_cost.values
        extra["cost_arch"], extra["cost_context"] = np.nonzero(np.isfinite(cost) & seen)
        extra["cost_y"] = cost[extra["cost_arch"], extra["cost_context"]].astype(float)
    return FitData(arch, context, table[target].values[arch, context], b_arch,
                   table.log_b.values[b_arch, b_context], lora_arch,
                   table.lora_success.values[lora_arch, lora_context].astype(float),
                   len(models), len(table.context), fitted, **extra)


@dataclass
class Outcomes:
    """What a theory's generative process gives for an (architectures x contexts)
    layout: the target and the effects behind it (the truth of a simulation)."""

    y: np.ndarray             # (models, contexts) the theory's target
    alpha: np.ndarray         # (models,) architecture levels, relative to the grand mean
    gamma: np.ndarray         # (contexts,) context effects
    classes: np.ndarray       # (models,) class index, -1 without classes
    log_b: np.ndarray         # (models, contexts) the pair-level log b (a covariate)
    lora_success: np.ndarray  # (models, contexts) 1/0, NaN where not simulated
    class_stat: np.ndarray | None = None   # (models,) the class statistic; None: not simulated
    lora_cost: np.ndarray | None = None    # (models, contexts) LoRA cost; None: not simulated


def normal_logpdf(y, mean, sigma):
    """Normal log density, -((y - mean) / sigma)^2 / 2 - log sigma - log(2 pi) / 2,
    elementwise."""
    return -0.5 * ((y - mean) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI


def onehot(index, n):
    """(n, len(index)) indicator of each row's group."""
    out = np.zeros((n, len(index)))
    out[index, np.arange(len(index))] = 1.0
    return out


def exchangeable_logpdf(residual, sigma, tau):
    """(samples,) log density of residual (samples, n) under Normal(0, sigma^2 I + tau^2 11'):
    with T = sigma^2 + n tau^2, quad = |r|^2 / sigma^2 - tau^2 (sum r)^2 / (sigma^2 T) and
    log det = (n - 1) log sigma^2 + log T."""
    n = residual.shape[-1]
    s2, t2 = sigma**2, tau**2
    total = s2 + n * t2
    quad = (residual**2).sum(-1) / s2 - t2 * residual.sum(-1) ** 2 / (s2 * total)
    logdet = (n - 1) * np.log(s2) + np.log(total)
    return -0.5 * (quad + logdet + n * LOG_2PI)


class Theory:
    """The interface every theory shares (see the module docstring)."""

    name = ""
    target = "log_q"
    offset = "log_scale"
    priors: dict[str, Prior] = {}
    coords: dict[str, tuple[str, ...]] = {}
    effect_dims: dict[str, tuple[str, ...]] = {}   # sampled quantities without a prior of their own
    sampled = True
    exact_inference = False
    has_levels = False
    has_classes = False
    color = ""

    # -- what the theory declares -------------------------------------------------------

    @property
    def parameters(self) -> tuple[str, ...]:
        """Every parameter the posterior may hold, the diagnostics gate's list."""
        names = [n for name, prior in self.priors.items() for n in prior.names(name)]
        return (*names, *self.effect_dims)

    @property
    def diagnosed(self) -> tuple[str, ...]:
        """The parameters the diagnostics gate checks: all of them."""
        return self.parameters

    @property
    def param_dims(self) -> dict[str, tuple[str, ...]]:
        """Parameter name -> its dims, for the InferenceData: the priors' dims and the
        effect dims (parameters without dims left out)."""
        dims = {n: prior.dims for name, prior in self.priors.items()
                for n in prior.names(name) if prior.dims}
        return {**dims, **self.effect_dims}

    def with_priors(self, **changes: Prior) -> Theory:
        """A copy of the theory under other priors (a sensitivity check)."""
        unknown = sorted(set(changes) - set(self.priors))
        if unknown:
            raise ValueError(f"{self.name} has no parameter {unknown[0]!r}; its priors are "
                             f"{', '.join(self.priors)}")
        other = copy.copy(self)
        other.priors = {**self.priors, **changes}
        return other

    def rv(self, name: str):
        """The PyMC random variable of parameter ``name``, from its prior."""
        return self.priors[name].rv(name)

    # -- the model ----------------------------------------------------------------------

    def data_arrays(self, data: FitData) -> dict[str, np.ndarray]:
        """The arrays the model reads as pm.Data (a fold swaps them in)."""
        return {"arch_index": data.arch, "context_index": data.context, "y_obs": data.y,
                "fitted": data.fitted}

    def model_coords(self, coords: dict) -> dict:
        """The pm.Model's coords: the fit's model and context coords and the theory's
        own (the classes)."""
        return {**coords, **{k: list(v) for k, v in self.coords.items()}}

    def model(self, data: FitData, coords: dict):
        """The pm.Model over ``data`` (sampled theories build one)."""
        raise NotImplementedError(f"{self.name} is not sampled")

    def exact_posterior(self, data: FitData, chains: int, draws: int, seed: int) -> dict:
        """Exact posterior draws, name -> (chains, draws) arrays (theories that are not
        sampled give them)."""
        raise NotImplementedError(f"{self.name} is sampled")

    # -- what the numpy side computes from the draws -------------------------------------

    def effects(self, post: dict, data: FitData, rng) -> tuple[np.ndarray, np.ndarray]:
        """(levels (samples, models), gamma (samples, contexts)) per posterior
        sample; the level of an architecture without rows is a population draw."""
        raise NotImplementedError

    def level_marginal(self, post: dict, data: FitData, arch: int,
                       residual: np.ndarray) -> np.ndarray:
        """(samples,) log density of architecture ``arch``'s residuals after the
        context effects (samples, rows), its level integrated out: one level per
        posterior sample, shared by all the rows."""
        raise NotImplementedError

    def pointwise_loglik(self, post: dict, data: FitData, rng=None) -> np.ndarray:
        """(samples, rows) log-likelihood of each fitted row given the effects."""
        levels, gamma = self.effects(post, data, rng or np.random.default_rng(0))
        mean = levels[:, data.arch] + gamma[:, data.context]
        return normal_logpdf(data.y, mean, post["sigma"][:, None])

    def heldout_logdensity(self, post, data, arch: int, context, y, rng=None) -> np.ndarray:
        """(samples,) joint log density of one held-out architecture's rows, its
        level integrated out."""
        _, gamma = self.effects(post, data, rng or np.random.default_rng(0))
        residual = y[None, :] - gamma[:, context]
        return self.level_marginal(post, data, arch, residual)

    def predict(self, post, data, arch: int, context, rng) -> np.ndarray:
        """(samples, contexts) posterior predictive draws of the target."""
        levels, gamma = self.effects(post, data, rng)
        mean = levels[:, [arch]] + gamma[:, context]
        return mean + post["sigma"][:, None] * rng.standard_normal(mean.shape)

    # -- the generative process ---------------------------------------------------------

    def sizes(self, n_models: int, n_contexts: int) -> dict[str, int]:
        """The length of every dim a prior may use: model, context and the theory's own
        coords."""
        return {"model": n_models, "context": n_contexts,
                **{k: len(v) for k, v in self.coords.items()}}

    def prior_draw(self, n_models: int, n_contexts: int, rng) -> dict:
        """Parameters drawn from ``priors``, the objects the model reads."""
        return draw_priors(self.priors, self.sizes(n_models, n_contexts), rng)

    def simulate(self, params: dict, log_b: np.ndarray, rng) -> Outcomes:
        """The outcomes of a (models, contexts) layout under ``params``. ``log_b`` is
        the pair-level covariate measured at init; a theory with classes draws its
        own class statistic and LoRA rows (``Outcomes.class_stat``, ``lora_cost``)."""
        raise NotImplementedError
