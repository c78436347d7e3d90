"""Priors as data.

Each theory states its priors once, as small frozen records in its ``priors``
mapping (parameter name -> prior). The same record builds the PyMC random
variable the sampler sees (``rv``) and draws with numpy for the simulator
(``draw``), so a table simulated with parameters from the prior is a draw from
the model's own prior predictive: simulation-based calibration then tests the
model, not a second copy of it.

The numpy draws use the generator calls that the simulator has always made
(``abs(normal)`` for a half-normal, say), so tables simulated with a given seed
do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def shape_of(dims: tuple[str, ...], sizes: dict[str, int]) -> tuple[int, ...] | None:
    """The numpy shape of a parameter with ``dims`` (None for a scalar, so that the
    generator returns a float, as the PyMC scalar does)."""
    return tuple(sizes[d] for d in dims) or None


@dataclass(frozen=True)
class Prior:
    """One parameter's prior. ``dims`` names its axes (coords of the model)."""

    dims: tuple[str, ...] = field(default=(), kw_only=True)

    def names(self, name: str) -> tuple[str, ...]:
        """The parameters this prior covers (more than one for a joint prior)."""
        return (name,)

    def rv(self, name: str):
        """The PyMC random variable, inside a ``pm.Model`` context."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, shape=None):
        """Numpy draws of the parameter, of ``shape`` (None: a scalar)."""
        raise NotImplementedError

    def draw_named(self, name: str, rng: np.random.Generator, shape=None) -> dict:
        """The draws of every parameter the prior covers, by name."""
        return {name: self.draw(rng, shape)}

    def _dims(self):
        return self.dims or None


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma). ``ordered``: the draws along the last axis sorted (PyMC's
    ordered transform: the iid normal restricted to increasing values), which
    stops the label switching of mixture components."""

    mu: float
    sigma: float
    ordered: bool = False

    def rv(self, name):
        """The PyMC Normal(mu, sigma) over ``dims``, ordered along the last dim when
        ``ordered``."""
        import pymc as pm

        if not self.ordered:
            return pm.Normal(name, self.mu, self.sigma, dims=self._dims())
        n = len(pm.modelcontext(None).coords[self.dims[-1]])
        return pm.Normal(name, self.mu, self.sigma, dims=self._dims(),
                         initval=np.linspace(-1.0, 1.0, n),   # any increasing start
                         transform=pm.distributions.transforms.ordered)

    def draw(self, rng, shape=None):
        """Numpy draws of Normal(mu, sigma), sorted along the last axis when ``ordered``."""
        value = rng.normal(self.mu, self.sigma, shape)
        return np.sort(value, axis=-1) if self.ordered else value


@dataclass(frozen=True)
class HalfNormal(Prior):
    """|Normal(0, sigma)|: a scale."""

    sigma: float

    def rv(self, name):
        """The PyMC HalfNormal(sigma) over ``dims``."""
        import pymc as pm

        return pm.HalfNormal(name, self.sigma, dims=self._dims())

    def draw(self, rng, shape=None):
        """Numpy draws of |Normal(0, sigma)|."""
        return abs(rng.normal(0.0, self.sigma, shape))


@dataclass(frozen=True)
class Beta(Prior):
    """Beta(alpha, beta): a probability."""

    alpha: float
    beta: float

    def rv(self, name):
        """The PyMC Beta(alpha, beta) over ``dims``."""
        import pymc as pm

        return pm.Beta(name, self.alpha, self.beta, dims=self._dims())

    def draw(self, rng, shape=None):
        """Numpy draws of Beta(alpha, beta)."""
        return rng.beta(self.alpha, self.beta, shape)


@dataclass(frozen=True)
class ZeroSumNormal(Prior):
    """z ~ Normal(0, sigma) iid, projected onto sum(z) = 0 along its last dim
    (PyMC's ZeroSumNormal). A theory multiplies it by a scale; ``rv(name, scale)``
    builds that product directly, the centred form of scale * z."""

    sigma: float = 1.0

    def rv(self, name, scale=1.0):
        """The PyMC ZeroSumNormal(scale * sigma) over ``dims``: scale * z in its centred
        form."""
        import pymc as pm

        return pm.ZeroSumNormal(name, scale * self.sigma, dims=self._dims())

    def draw(self, rng, shape=None):
        """Numpy draws z ~ Normal(0, sigma) iid, less their mean along the last axis."""
        z = rng.normal(0.0, self.sigma, shape)
        return z - z.mean(axis=-1, keepdims=True)


@dataclass(frozen=True)
class NormalInverseGamma(Prior):
    """The conjugate prior of a normal with unknown mean and variance:
    sigma^2 ~ InvGamma(a, b), location | sigma^2 ~ Normal(mean, sigma^2 / kappa).
    It covers two parameters, the location (its key) and ``scale`` (sigma).
    Its posterior after rows y is of the same form (``updated``), so the fit draws
    from it exactly, with the same ``draw`` the simulator uses."""

    mean: float
    kappa: float
    a: float
    b: float
    scale: str = "sigma"

    def names(self, name):
        """The location (``name``) and the scale (``scale``)."""
        return (name, self.scale)

    def updated(self, y: np.ndarray) -> NormalInverseGamma:
        """The posterior given rows y ~ Normal(location, sigma):
        kappa' = kappa + n, mean' = (kappa mean + n ybar) / kappa', a' = a + n/2,
        b' = b + sum (y - ybar)^2 / 2 + kappa n (ybar - mean)^2 / (2 kappa')."""
        n = len(y)
        ybar = y.mean() if n else 0.0
        kappa = self.kappa + n
        centre = (self.kappa * self.mean + n * ybar) / kappa
        b = (self.b + 0.5 * ((y - ybar) ** 2).sum()
             + self.kappa * n * (ybar - self.mean) ** 2 / (2 * kappa))
        return NormalInverseGamma(centre, kappa, self.a + n / 2, b, scale=self.scale,
                                  dims=self.dims)

    def draw_named(self, name, rng, shape=None):
        """Joint draws {name: location, scale: sigma}: sigma^2 = b / Gamma(a, 1), that is
        InvGamma(a, b), then location ~ Normal(mean, sigma^2 / kappa)."""
        variance = self.b / rng.gamma(self.a, 1.0, size=shape)
        return {name: rng.normal(self.mean, np.sqrt(variance / self.kappa)),
                self.scale: np.sqrt(variance)}

    def draw(self, rng, shape=None):
        """Refused with a TypeError: this prior draws two parameters (``draw_named``)."""
        raise TypeError("a normal-inverse-gamma prior draws two parameters: use draw_named")


def draw_priors(priors: dict[str, Prior], sizes: dict[str, int], rng) -> dict:
    """One draw of every parameter from ``priors``, in their order."""
    params: dict = {}
    for name, prior in priors.items():
        params.update(prior.draw_named(name, rng, shape_of(prior.dims, sizes)))
    return params
