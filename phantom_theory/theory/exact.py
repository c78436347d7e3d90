"""Exact inference for the linear-Gaussian theories (M_universal, M_hier, M_class).

Given the scales theta = (tau_gamma, sigma[, tau]) each of these theories is
linear-Gaussian in mu, the levels and the context effects:

    y = X beta + e,   beta ~ Normal(m, diag v(theta)),   e ~ Normal(0, sigma^2 I),

so p(y | theta) = Normal(y; X m, X V X' + sigma^2 I) and beta | y, theta is Gaussian.
The columns of X: mu; one level per architecture with rows (M_hier, M_class);
an orthonormal basis of the zero-sum subspace of the observed contexts O (the
zero-sum constraint runs over O); and for the held-out density of rows on a
context outside O, that context's own effect and the observed contexts' mean it
is measured against (``additive``). M_class adds delta on the column R z, R the
rows' architecture indicators, for each assignment z of the classes, summed over
exactly (``ClassMixture.class_evidence``), by the matrix determinant lemma.

The determinant and the quadratic form come from the p x p precision
P = V^-1 + X'X / sigma^2 (p = 1 + levels + contexts, far below the n rows of a crossed
table): log|Sigma| = n log sigma^2 + log|V| + log|P| and
y'Sigma^-1 y = |y - X beta_hat|^2 / sigma^2 + beta_hat' V^-1 beta_hat, with
beta_hat = P^-1 X'y / sigma^2 (the n x n form gives the same numbers; a test checks it).

The scales are integrated by the midpoint rule on a tensor grid whose coordinates
are chosen from the fold's own rows (``Coordinates``): on a nested fold, where only
r^2 = tau_gamma^2 + sigma^2 is identified, polar (log r, phi = atan2(tau_gamma,
sigma)), so that the ridge r = const is an axis; on a crossed one (asinh(tau_gamma /
c), log sigma); and asinh(tau / c) for the levels. The density is bounded where a
scale reaches 0 (phi = 0, asinh = 0), so no cells are lost to a log-scale tail. The
box is the region within DELTA nats of the mode, found by zooming; the rule is
checked against the grid of half the resolution. Draws: a cell by its weight, a
point uniform within it, then z (M_class) and beta from their exact conditionals
there: iid, with no chains to mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.linalg import helmert
from scipy.special import expit, logit

from ..errors import PhantomError
from .models import FitData, Theory, get_theory
from .models.priors import HalfNormal, Normal, NormalInverseGamma, ZeroSumNormal

GRID_POINTS = 32          # cells per axis (FitOptions.grid_points)
DELTA = 12.0              # the box holds the region within DELTA nats of the mode
ZOOM_POINTS = 13          # cells per axis of the grids that find the box
MAX_ZOOM = 12
MODE_ROUNDS = 8           # rounds of the pattern search for the mode
MAX_CLASS_MODELS = 10     # M_class sums 2^models class assignments
EDGE_MASS_MAX = 1e-3      # gate: most posterior mass in the cells on the box's open edges
CHUNK = 4096              # cells evaluated at once
LOG_2PI = np.log(2 * np.pi)


def supports(theory: str | Theory, data: FitData | None = None) -> bool:
    """Whether ``theory`` (on ``data``'s rows, when given) can be fitted exactly: it
    declares ``exact_inference`` and its priors are of the families integrated here
    (normal mu and delta, half-normal scales, zero-sum normal contexts; for classes the
    families the theory's ``class_families`` names: a beta weight, normal class means
    with half-normal scales, normal LoRA logits), with at most MAX_CLASS_MODELS
    architectures to assign to classes."""
    theory = get_theory(theory)
    if not theory.exact_inference:
        return False
    p = theory.priors
    kinds = {"mu": Normal, "tau_gamma": HalfNormal, "sigma": HalfNormal,
             "z_gamma": ZeroSumNormal}
    if theory.has_levels:
        kinds["tau"] = HalfNormal
    if theory.has_classes:
        kinds.update(theory.class_families)
    if any(not isinstance(p.get(name), kind) for name, kind in kinds.items()):
        return False
    if p["mu"].ordered or p["mu"].dims or (theory.has_classes and (
            p["delta"].ordered or len(theory.coords.get("class", ())) != 2)):
        return False
    if theory.has_classes and data is not None:
        return len(theory.class_architectures(data)) <= MAX_CLASS_MODELS
    return True


@dataclass(frozen=True)
class ScalePriors:
    """The numbers of a theory's priors that exact inference reads."""

    mu_mean: float
    mu_var: float
    z_sd: float                  # the zero-sum normal's sigma: gamma = tau_gamma z
    tau_gamma: float             # half-normal sigmas
    sigma: float
    tau: float | None
    delta_mean: float | None
    delta_var: float | None

    @classmethod
    def of(cls, theory: Theory) -> ScalePriors:
        """The priors of ``theory`` (``supports`` says whether it has these families)."""
        p = theory.priors
        return cls(p["mu"].mu, p["mu"].sigma**2, p["z_gamma"].sigma, p["tau_gamma"].sigma,
                   p["sigma"].sigma, p["tau"].sigma if theory.has_levels else None,
                   p["delta"].mu if theory.has_classes else None,
                   p["delta"].sigma**2 if theory.has_classes else None)

    def log_prior(self, scales: dict) -> np.ndarray:
        """(m,) log density of the half-normal priors at the scales."""
        out = _halfnormal(scales["tau_gamma"], self.tau_gamma) + _halfnormal(scales["sigma"],
                                                                            self.sigma)
        if self.tau is not None:
            out = out + _halfnormal(scales["tau"], self.tau)
        return out


def _logsumexp(x: np.ndarray, axis=None, keepdims: bool = False):
    """Log sum exp(x), stable (scipy's has a large overhead per call, and this is
    called per chunk of cells); -inf where every term is."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def _halfnormal(x, sd):
    return np.log(2.0) - 0.5 * LOG_2PI - np.log(sd) - 0.5 * (x / sd) ** 2


@dataclass(frozen=True)
class Coordinates:
    """The grid's coordinates x. ``polar`` (a nested fold, where only
    r^2 = tau_gamma^2 + sigma^2 is identified): x = (log r, phi), tau_gamma = r sin phi,
    sigma = r cos phi. Otherwise (a crossed fold, where sigma is pinned by the contexts
    seen twice and tau_gamma by their spread): x = (asinh(tau_gamma / c_gamma),
    log sigma). Then asinh(tau / c_tau) when the theory has levels. The soft-log axes
    (theta = c sinh x) are linear near 0, where the density of a scale is bounded, and
    logarithmic in the tail that a scale of few groups has; c is the scale's rough
    posterior mean (``rescaled``)."""

    polar: bool
    levels: bool
    c_gamma: float = 1.0
    c_tau: float = 1.0

    @property
    def dims(self) -> int:
        """2, or 3 with levels."""
        return 3 if self.levels else 2

    @property
    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) value of each coordinate."""
        if self.polar:
            lo, hi = [-np.inf, 0.0], [np.inf, np.pi / 2]
        else:
            lo, hi = [0.0, -np.inf], [np.inf, np.inf]
        return np.array(lo + [0.0] * self.levels), np.array(hi + [np.inf] * self.levels)

    def scales(self, x: np.ndarray) -> dict:
        """The scales at coordinates x (m, dims)."""
        if self.polar:
            r = np.exp(x[:, 0])
            out = {"tau_gamma": r * np.sin(x[:, 1]), "sigma": r * np.cos(x[:, 1])}
        else:
            out = {"tau_gamma": self.c_gamma * np.sinh(x[:, 0]), "sigma": np.exp(x[:, 1])}
        if self.levels:
            out["tau"] = self.c_tau * np.sinh(x[:, 2])
        return out

    def coordinates(self, scales: dict) -> np.ndarray:
        """The inverse of ``scales``: (m, dims) coordinates of the scales."""
        if self.polar:
            columns = [0.5 * np.log(scales["tau_gamma"] ** 2 + scales["sigma"] ** 2),
                       np.arctan2(scales["tau_gamma"], scales["sigma"])]
        else:
            columns = [np.arcsinh(scales["tau_gamma"] / self.c_gamma), np.log(scales["sigma"])]
        if self.levels:
            columns.append(np.arcsinh(scales["tau"] / self.c_tau))
        return np.stack(columns, axis=-1)

    def log_jacobian(self, x: np.ndarray) -> np.ndarray:
        """(m,) log |d(tau_gamma, sigma[, tau]) / dx|."""
        out = (2 * x[:, 0] if self.polar
               else np.log(self.c_gamma * np.cosh(x[:, 0])) + x[:, 1])
        if self.levels:
            out = out + np.log(self.c_tau * np.cosh(x[:, 2]))
        return out

    def rescaled(self, scales: dict, weights: np.ndarray) -> Coordinates:
        """The same coordinates with each soft-log c the weighted mean of its scale."""
        changes = {}
        if not self.polar:
            changes["c_gamma"] = max(float(weights @ scales["tau_gamma"]), 1e-8)
        if self.levels:
            changes["c_tau"] = max(float(weights @ scales["tau"]), 1e-8)
        return dataclasses.replace(self, **changes)

    def start(self, spread: float, tau_sd: float) -> tuple[np.ndarray, np.ndarray]:
        """A first box for data of standard deviation ``spread``."""
        log = np.log(spread)
        if self.polar:
            lo, hi = [log - 6.0, 0.0], [log + 2.0, np.pi / 2]
        else:
            lo, hi = [0.0, log - 6.0], [np.arcsinh(3 * spread / self.c_gamma), log + 2.0]
        if self.levels:
            lo, hi = lo + [0.0], hi + [np.arcsinh(3 * max(spread, tau_sd) / self.c_tau)]
        return np.array(lo), np.array(hi)

    def to_free(self, x: np.ndarray) -> np.ndarray:
        """Unconstrained coordinates for the optimiser: logit phi, log of a soft-log axis."""
        t = np.array(x, float)
        if self.polar:
            t[1] = logit(x[1] / (np.pi / 2))
        else:
            t[0] = np.log(x[0])
        if self.levels:
            t[2] = np.log(x[2])
        return t

    def from_free(self, t: np.ndarray) -> np.ndarray:
        """The inverse of ``to_free``, kept off the domain's edges."""
        x = np.array(t, float)
        if self.polar:
            x[1] = np.pi / 2 * np.clip(expit(t[1]), 1e-9, 1 - 1e-9)
        else:
            x[0] = np.exp(np.clip(t[0], -20.0, 20.0))
        if self.levels:
            x[2] = np.exp(np.clip(t[2], -20.0, 20.0))
        return x


@dataclass
class Layout:
    """The design of the linear part: X (n, p), the target less mu's prior mean, the
    column groups, and what each group is (architectures, contexts)."""

    X: np.ndarray
    y: np.ndarray
    arch: np.ndarray              # (n,) architecture of each row
    levels: np.ndarray            # architectures with a level column, in column order
    observed: np.ndarray          # the zero-sum contexts O
    basis: np.ndarray             # (|O|, |O| - 1) orthonormal, orthogonal to 1
    new: np.ndarray               # contexts with rows outside O
    columns: dict                 # group -> slice: mu, alpha, u, new, shift

    @classmethod
    def build(cls, theory: Theory, data: FitData, priors: ScalePriors,
              observed: np.ndarray | None = None) -> Layout:
        """The layout of ``data``'s rows, zero-sum over ``observed`` (default: the
        contexts of the rows)."""
        observed = np.unique(data.context) if observed is None else np.asarray(observed)
        levels = np.unique(data.arch) if theory.has_levels else np.zeros(0, int)
        new = np.setdiff1d(np.unique(data.context), observed)
        basis = helmert(len(observed)).T if len(observed) > 1 else np.zeros((len(observed), 0))
        sizes = {"mu": 1, "alpha": len(levels), "u": basis.shape[1], "new": len(new),
                 "shift": int(len(new) > 0)}
        columns, start = {}, 0
        for name, size in sizes.items():
            columns[name] = slice(start, start + size)
            start += size
        X = np.zeros((len(data.y), start))
        rows = np.arange(len(data.y))
        X[:, 0] = 1.0
        if len(levels):
            X[rows, columns["alpha"].start + np.searchsorted(levels, data.arch)] = 1.0
        in_o = np.isin(data.context, observed)
        position = np.searchsorted(observed, data.context[in_o])
        X[np.ix_(rows[in_o], np.arange(columns["u"].start, columns["u"].stop))] = basis[position]
        if len(new):
            X[rows[~in_o], columns["new"].start + np.searchsorted(new, data.context[~in_o])] = 1
            X[~in_o, columns["shift"].start] = -1.0
        return cls(X, np.asarray(data.y, float) - priors.mu_mean, np.asarray(data.arch),
                   levels, observed, basis, new, columns)

    @property
    def gram(self) -> np.ndarray:
        """X'X."""
        return self.X.T @ self.X

    def variances(self, scales: dict, priors: ScalePriors) -> np.ndarray:
        """(m, p) prior variances of the columns: mu's, tau^2 for the levels,
        (tau_gamma z_sd)^2 for the zero-sum basis and a new context's own effect,
        and that over |O| for the observed contexts' mean."""
        m = len(scales["sigma"])
        v = np.empty((m, self.X.shape[1]))
        g2 = (scales["tau_gamma"] * priors.z_sd) ** 2
        v[:, self.columns["mu"]] = priors.mu_var
        v[:, self.columns["alpha"]] = (scales["tau"] ** 2)[:, None] if len(self.levels) else 0
        v[:, self.columns["u"]] = g2[:, None]
        v[:, self.columns["new"]] = g2[:, None]
        v[:, self.columns["shift"]] = (g2 / max(len(self.observed), 1))[:, None]
        return v


def _cholesky(P: np.ndarray) -> np.ndarray:
    """Batched Cholesky factors; a matrix that is not positive definite (a cell at the
    edge of float64) gets NaN, so its cell has no weight."""
    try:
        return np.linalg.cholesky(P)
    except np.linalg.LinAlgError:
        out = np.full_like(P, np.nan)
        for i, matrix in enumerate(P):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[i] = np.linalg.cholesky(matrix)
        return out


def _solve(P: np.ndarray, B: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Batched P^-1 B; a matrix LAPACK finds singular (float64's edge, as in
    ``_cholesky``) is marked not ``ok`` (in place) and solved as the identity."""
    try:
        return np.linalg.solve(P, B)
    except np.linalg.LinAlgError:
        out = np.array(B, dtype=float)
        for i in range(len(P)):
            try:
                out[i] = np.linalg.solve(P[i], B[i])
            except np.linalg.LinAlgError:
                ok[i] = False
        return out


class ExactPosterior:
    """The exact posterior of one theory on one fold's rows: the grid over the scales,
    its weights and the log evidence, with iid draws and held-out densities."""

    def __init__(self, theory: str | Theory, data: FitData, points: int = GRID_POINTS,
                 observed: np.ndarray | None = None):
        self.theory = get_theory(theory)
        if not supports(self.theory, data):
            raise PhantomError(f"{self.theory.name} cannot be fitted exactly on these rows; "
                               "use inference = nuts")
        self.data, self.points = data, points
        self.priors = ScalePriors.of(self.theory)
        self.classes = (self.theory.class_evidence(data, MAX_CLASS_MODELS)
                        if self.theory.has_classes else None)
        self.layout = Layout.build(self.theory, data, self.priors, observed)
        self._prepare_class_terms()
        spread = float(np.std(self.layout.y)) if len(self.layout.y) > 1 else 0.0
        self.spread = spread if spread > 0 else 1.0
        self.coords = Coordinates(polar=data.nested, levels=self.theory.has_levels,
                                  c_gamma=self.spread, c_tau=max(self.spread,
                                                                 self.priors.tau or 0.0))
        self.dims = self.coords.dims
        self.mode, self.mode_value = self._find_mode()
        self.lo, self.hi = self._find_box()
        self.cells, self.table = self._grid(points)
        self.log_evidence = self._log_evidence(self.table, points)
        self.weights = np.exp(self.table["log_density"]
                              - _logsumexp(self.table["log_density"]))

    # -- the density of the scales ------------------------------------------------------

    def _prepare_class_terms(self):
        if self.classes is None:
            return
        L, included = self.layout, self.classes.included
        R = (L.arch[:, None] == included[None, :]).astype(float)       # (n, E)
        self._XR, self._RR, self._Ry = L.X.T @ R, R.sum(axis=0), R.T @ L.y
        # Which level column (if any) each included architecture has.
        self._level_of = np.array([np.searchsorted(L.levels, a) if a in L.levels else -1
                                   for a in included])
        z = self.classes.z
        self._zz = (z[:, :, None] * z[:, None, :]).reshape(len(z), -1)  # (K, E^2)

    def evaluate(self, x: np.ndarray, moments: bool = False) -> dict:
        """At grid coordinates x (m, d): log_density (m,), the log posterior density of
        the coordinates up to a constant (the scales' prior, the coordinates' Jacobian
        and log p(y | theta)), and with ``moments`` the conditional mean and variance
        of mu."""
        parts = [self._evaluate(x[i:i + CHUNK], moments) for i in range(0, len(x), CHUNK)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _evaluate(self, x, moments, class_terms=False):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._evaluate_chunk(x, moments, class_terms)

    def _evaluate_chunk(self, x, moments, class_terms):
        L, pri = self.layout, self.priors
        scales = self.coords.scales(x)
        s2 = scales["sigma"] ** 2
        v = L.variances(scales, pri)
        p, n = L.X.shape[1], L.X.shape[0]
        P = L.gram[None] / s2[:, None, None]
        P[:, np.arange(p), np.arange(p)] += 1 / v
        chol = _cholesky(P)
        ok = np.isfinite(chol).all(axis=(1, 2))
        chol[~ok] = np.eye(p)
        P[~ok] = np.eye(p)
        extra = [np.eye(p)[:, :1]] if (moments or self.classes is not None) else []
        if self.classes is not None:
            alpha = L.columns["alpha"]
            extra.append(np.eye(p)[:, alpha])
        rhs = np.concatenate([(L.X.T @ L.y)[:, None], *extra], axis=1)
        scale = np.where(np.arange(rhs.shape[1]) == 0, s2[:, None], 1.0)[:, None, :]
        solved = _solve(P, np.broadcast_to(rhs, (len(x), *rhs.shape)) / scale, ok)
        beta = solved[:, :, 0]
        residual = L.y[None, :] - beta @ L.X.T
        quad = (residual**2).sum(axis=1) / s2 + (beta**2 / v).sum(axis=1)
        logdet = (n * np.log(s2) + np.log(v).sum(axis=1)
                  + 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1))
        out = {}
        if self.classes is None:
            loglik = -0.5 * (quad + logdet + n * LOG_2PI)
            if moments:
                out["mu_mean"] = pri.mu_mean + beta[:, 0]
                out["mu_var"] = solved[:, 0, 1]
        else:
            terms, mean, var = self._class_terms(scales, beta, solved, quad, logdet, n)
            loglik = _logsumexp(terms, axis=1)
            if class_terms:
                out["class_terms"] = terms
            if moments:
                share = np.exp(terms - loglik[:, None])
                out["mu_mean"] = (share * mean).sum(axis=1)
                out["mu_var"] = (share * (var + mean**2)).sum(axis=1) - out["mu_mean"] ** 2
        log_density = pri.log_prior(scales) + self.coords.log_jacobian(x) + loglik
        out["log_density"] = np.where(ok, log_density, -np.inf)
        for name in ("mu_mean", "mu_var"):
            if name in out:     # a cell without weight must not turn a moment into NaN
                out[name] = np.where(ok, out[name], 0.0)
        return out

    def _class_terms(self, scales, beta, solved, quad, logdet, n):
        """(m, K) log p(z) p(y | theta, z) for every class assignment z, with delta
        integrated (matrix determinant lemma on the column x = R z), and the mean and
        variance of mu given (theta, z)."""
        pri, c = self.priors, self.classes
        tau2 = scales["tau"] ** 2
        E, m = len(c.included), len(tau2)
        has = self._level_of >= 0
        cols = self._level_of[has]
        # M = R' Sigma^-1 R = (I / tau^2 - P^-1_aa / tau^4) and r = R' Sigma^-1 y = beta_a / tau^2
        # on the architectures with rows (R lies in the span of their level columns).
        inv_aa = solved[:, :, 2:][:, self.layout.columns["alpha"]][:, cols][:, :, cols]
        M = np.zeros((m, E, E))
        idx = np.flatnonzero(has)
        M[np.ix_(np.arange(m), idx, idx)] = (np.eye(len(idx))[None] / tau2[:, None, None]
                                            - inv_aa / tau2[:, None, None] ** 2)
        r = np.zeros((m, E))
        r[:, idx] = beta[:, self.layout.columns["alpha"]][:, cols] / tau2[:, None]
        q = M.reshape(m, -1) @ self._zz.T                         # z' M z
        cz = r @ c.z.T                                            # z' r
        d0, vd = pri.delta_mean, pri.delta_var
        lift = 1 + vd * q
        quad_z = quad[:, None] - 2 * d0 * cz + d0**2 * q - vd * (cz - d0 * q) ** 2 / lift
        terms = (c.log_weight[None, :]
                 - 0.5 * (quad_z + logdet[:, None] + np.log(lift) + n * LOG_2PI))
        # mu | theta, z: mean m_mu + beta_0 + delta_hat k, variance P^-1_00 + k^2 V_delta,
        # with k = P^-1_{0,a} z / tau^2.
        inv_0a = np.zeros((m, E))
        inv_0a[:, idx] = solved[:, 0, 2:][:, cols]
        k = (inv_0a @ c.z.T) / tau2[:, None]
        v_delta = vd / lift
        delta_hat = d0 + v_delta * (cz - d0 * q)
        mean = pri.mu_mean + beta[:, :1] + delta_hat * k
        var = solved[:, 0, 1][:, None] + k**2 * v_delta
        return terms, mean, var

    # -- the grid -------------------------------------------------------------------

    def _start_box(self):
        return self.coords.start(self.spread, self.priors.tau or 0.0)

    def _find_mode(self):
        """The mode of the log density: the best point of a coarse grid, then a pattern
        search, 5 points per axis around the best point so far with the spacing
        halved each round (the mode only anchors the box and its threshold)."""
        lo, hi = self._start_box()
        cells = _cells(lo, hi, 9)
        values = self.evaluate(cells)["log_density"]
        best, value = cells[np.argmax(values)], float(values.max())
        domain_lo, domain_hi = self.coords.domain
        step = (hi - lo) / 9
        margin = 1e-4 * step     # a scale within 1e-4 cells of 0 is 0 for the box
        offsets = _cells(-2.5 * np.ones(self.dims), 2.5 * np.ones(self.dims), 5)
        for _ in range(MODE_ROUNDS):
            points = np.clip(best + offsets * step, domain_lo + margin, domain_hi - margin)
            values = self.evaluate(points)["log_density"]
            if values.max() > value:
                best, value = points[np.argmax(values)], float(values.max())
            step = step / 2
        return best, value

    def _find_box(self):
        """The box holding the region within DELTA nats of the mode: zoom grids of
        ZOOM_POINTS cells per axis, each box the previous one's kept cells and one cell
        of margin, grown by its own width where the region reaches an open edge."""
        lo, hi = self._start_box()
        lo = np.minimum(lo, self.mode - 1e-3 * (hi - lo))
        hi = np.maximum(hi, self.mode + 1e-3 * (hi - lo))
        domain_lo, domain_hi = self.coords.domain
        lo, hi = np.maximum(lo, domain_lo), np.minimum(hi, domain_hi)
        n, d = ZOOM_POINTS, self.dims
        for _ in range(MAX_ZOOM):
            cells = _cells(lo, hi, n)
            flat = self.evaluate(cells)["log_density"]
            values = flat.reshape((n,) * d)
            keep = values > max(values.max(), self.mode_value) - DELTA
            width = (hi - lo) / n
            new_lo, new_hi, grew = lo.copy(), hi.copy(), False
            for k in range(d):
                kept = np.flatnonzero(keep.any(axis=tuple(j for j in range(d) if j != k)))
                if not len(kept):
                    new_lo[k], new_hi[k] = self.mode[k] - 2 * width[k], self.mode[k] + 2 * width[k]
                    continue
                new_lo[k] = lo[k] + (kept[0] - 1) * width[k]
                new_hi[k] = lo[k] + (kept[-1] + 2) * width[k]
                if kept[0] == 0 and lo[k] > domain_lo[k]:
                    new_lo[k], grew = lo[k] - (hi[k] - lo[k]), True
                if kept[-1] == n - 1 and hi[k] < domain_hi[k]:
                    new_hi[k], grew = hi[k] + (hi[k] - lo[k]), True
                new_lo[k] = min(new_lo[k], self.mode[k] - width[k])
                new_hi[k] = max(new_hi[k], self.mode[k] + width[k])
            new_lo = np.maximum(new_lo, domain_lo)
            new_hi = np.minimum(new_hi, domain_hi)
            change = np.max(np.abs(np.r_[new_lo - lo, new_hi - hi]) / np.r_[hi - lo, hi - lo])
            lo, hi = new_lo, new_hi
            if not grew and change < 0.1:
                break
        # Rescale the soft-log axes to the region's own scale (its rough mean, from the
        # last zoom grid); the box is the image of the old one (each axis maps
        # monotonically).
        weights = np.exp(flat - _logsumexp(flat))
        old = self.coords
        self.coords = old.rescaled(old.scales(cells), weights)
        corners = self.coords.coordinates(old.scales(np.stack([lo, hi])))
        self.mode = self.coords.coordinates(old.scales(self.mode[None]))[0]
        return corners[0], corners[1]

    def _grid(self, points):
        cells = _cells(self.lo, self.hi, points)
        return cells, self.evaluate(cells, moments=True)

    def _log_evidence(self, table, points) -> float:
        volume = np.prod((self.hi - self.lo) / points)
        return float(_logsumexp(table["log_density"]) + np.log(volume))

    @property
    def step(self) -> np.ndarray:
        """The cell widths of the grid."""
        return (self.hi - self.lo) / self.points

    # -- summaries and the gate ---------------------------------------------------------

    def moments(self, points: int | None = None) -> dict[str, tuple[float, float]]:
        """Posterior (mean, sd) of mu and the scales by the midpoint rule on this grid,
        or on a grid of ``points`` cells per axis over the same box."""
        if points is None or points == self.points:
            return _moments(self.coords, self.cells, self.table)
        return _moments(self.coords, *self._grid(points))

    def diagnostics(self, tol: float, ess_min: float, n_draws: int) -> dict:
        """The gate of an exact fit: grid_rel_change, the largest change of a posterior
        mean (in posterior sds) or sd (relative) of mu and the scales when the grid is
        halved; grid_jitter, the largest relative sd the draws gain from lying uniform
        within their cells; grid_edge_mass, the mass in the cells on the box's open edges;
        grid_ess, the cells' effective number (1 / sum w^2); the change of the log
        evidence on the halved grid. Passed when the changes are <= tol, the edge mass
        <= EDGE_MASS_MAX and the iid draws number at least ess_min."""
        coarse_cells, coarse_table = self._grid(self.points // 2)
        fine, coarse = self.moments(), _moments(self.coords, coarse_cells, coarse_table)
        change = max(max(abs(fine[k][0] - coarse[k][0]) / fine[k][1],
                         abs(fine[k][1] - coarse[k][1]) / fine[k][1])
                     for k in fine if fine[k][1] > 0)
        w = self.weights.reshape((self.points,) * self.dims)
        x = self.cells
        spread = np.sqrt(np.maximum(self.weights @ x**2 - (self.weights @ x) ** 2, 1e-300))
        jitter = float(np.max(np.sqrt(1 + self.step**2 / 12 / spread**2) - 1))
        edge, (domain_lo, domain_hi) = 0.0, self.coords.domain
        for k in range(self.dims):
            layers = np.moveaxis(w, k, 0)
            if self.lo[k] > domain_lo[k]:
                edge += float(layers[0].sum())
            if self.hi[k] < domain_hi[k]:
                edge += float(layers[-1].sum())
        if self.classes is not None:
            edge = max(edge, self.classes.edge)
        evidence_change = abs(self.log_evidence - self._log_evidence(coarse_table,
                                                                     self.points // 2))
        failed = int((~np.isfinite(self.table["log_density"])).sum())
        diagnostics = {"max_rhat": float("nan"), "min_ess_bulk": float(n_draws),
                       "divergences": 0, "grid_cells": int(self.points**self.dims),
                       "grid_ess": float(1 / (self.weights**2).sum()),
                       "grid_rel_change": float(change), "grid_jitter": jitter,
                       "grid_edge_mass": edge, "grid_log_evidence_change": float(evidence_change),
                       "grid_failed_cells": failed}
        diagnostics["passed"] = bool(change <= tol and jitter <= tol and edge <= EDGE_MASS_MAX
                                     and n_draws >= ess_min)
        return diagnostics

    # -- draws ----------------------------------------------------------------------------

    def draw(self, chains: int, draws: int, seed: int) -> dict:
        """Independent posterior draws, name -> (chains, draws, ...) arrays: the scales, mu,
        gamma (zero-sum over the observed contexts; a population draw elsewhere) and
        z_gamma, and for M_class delta, weight and the class layer's parameters
        (``ClassEvidence.draw``)."""
        rng = np.random.default_rng(seed)
        S = chains * draws
        cell = rng.choice(len(self.weights), size=S, p=self.weights)
        x = self.cells[cell] + (rng.random((S, self.dims)) - 0.5) * self.step
        domain_lo, domain_hi = self.coords.domain
        x = np.clip(x, domain_lo + 1e-6 * self.step, domain_hi - 1e-6 * self.step)
        scales = self.coords.scales(x)
        parts = [self._linear_draws(x[i:i + CHUNK], rng) for i in range(0, S, CHUNK)]
        linear = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        post = {**scales, "mu": self.priors.mu_mean + linear["beta"][:, 0]}
        post["gamma"] = self._gamma(linear["beta"], scales, rng)
        z = post["gamma"] / scales["tau_gamma"][:, None]
        post["z_gamma"] = z - z.mean(axis=1, keepdims=True)
        if self.classes is not None:
            post["delta"] = linear["delta"]
            post.update(self.classes.draw(linear["assignment"], rng))
        return {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in post.items()}

    def _gamma(self, beta, scales, rng) -> np.ndarray:
        """(S, contexts): the basis times u on the observed contexts; elsewhere
        tau_gamma z_sd (w_k - c), w_k ~ Normal(0, 1), c ~ Normal(0, 1 / |O|) shared: a new
        context against the observed contexts' mean."""
        L, S = self.layout, len(beta)
        gamma = np.empty((S, self.data.n_contexts))
        gamma[:, L.observed] = beta[:, L.columns["u"]] @ L.basis.T
        other = np.setdiff1d(np.arange(self.data.n_contexts), L.observed)
        scale = (scales["tau_gamma"] * self.priors.z_sd)[:, None]
        shift = rng.standard_normal((S, 1)) / np.sqrt(max(len(L.observed), 1))
        gamma[:, other] = scale * (rng.standard_normal((S, len(other))) - shift)
        return gamma

    def _linear_draws(self, x, rng) -> dict:
        """Draws of beta (and for M_class the assignment z and delta) from their conditionals
        at coordinates x: z by its weight (Gumbel-max), then the Gaussian of beta and
        delta, the column R z appended to X."""
        L, pri = self.layout, self.priors
        scales = self.coords.scales(x)
        s2 = scales["sigma"] ** 2
        v = L.variances(scales, pri)
        S, p = len(x), L.X.shape[1]
        G, Xy = L.gram, L.X.T @ L.y
        out = {}
        if self.classes is None:
            P = np.broadcast_to(G, (S, p, p)) / s2[:, None, None]
            b = np.broadcast_to(Xy, (S, p)) / s2[:, None]
            prior_var = v
        else:
            terms = self._evaluate(x, False, class_terms=True)["class_terms"]
            assignment = np.argmax(terms + rng.gumbel(size=terms.shape), axis=1)
            z = self.classes.z[assignment]
            d0, vd = pri.delta_mean, pri.delta_var
            g_pd, g_dd, y_d = z @ self._XR.T, z @ self._RR, z @ self._Ry
            P = np.zeros((S, p + 1, p + 1))
            P[:, :p, :p] = G
            P[:, :p, p] = P[:, p, :p] = g_pd
            P[:, p, p] = g_dd
            P /= s2[:, None, None]
            b = np.concatenate([Xy[None] - d0 * g_pd, (y_d - d0 * g_dd)[:, None]], axis=1)
            b /= s2[:, None]
            prior_var = np.concatenate([v, np.full((S, 1), vd)], axis=1)
            out["assignment"] = assignment
        P = P.copy()
        k = P.shape[1]
        P[:, np.arange(k), np.arange(k)] += 1 / prior_var
        chol = np.linalg.cholesky(P)
        mean = np.linalg.solve(P, b[..., None])[..., 0]
        noise = np.linalg.solve(np.swapaxes(chol, 1, 2), rng.standard_normal((S, k, 1)))[..., 0]
        draw = mean + noise
        out["beta"] = draw[:, :p]
        if self.classes is not None:
            out["delta"] = pri.delta_mean + draw[:, p]
        return out

    # -- held-out rows -------------------------------------------------------------

    def heldout_lpd(self, arch: int, context, y) -> float:
        """The log density p(y_h | the fold's rows) of architecture ``arch``'s rows (contexts
        ``context``, values ``y``) under this fit: the log evidence of the fold's rows
        with them, less that of the fold's rows alone, each on its own grid (the
        architecture's level and the effects of contexts outside O integrated, as in
        its blind prediction)."""
        context, y = np.asarray(context, int), np.asarray(y, float)
        if not len(y):
            return 0.0
        fitted = self.data.fitted.copy()
        fitted[arch] = 1.0
        joint = dataclasses.replace(
            self.data, arch=np.r_[self.data.arch, np.full(len(y), arch)],
            context=np.r_[self.data.context, context], y=np.r_[self.data.y, y], fitted=fitted)
        both = ExactPosterior(self.theory, joint, self.points, observed=self.layout.observed)
        return both.log_evidence - self.log_evidence


def _moments(coords, cells, table) -> dict[str, tuple[float, float]]:
    """(mean, sd) of mu (a mixture of the cells' conditional normals) and of the scales
    at the cells, by the cells' weights."""
    w = np.exp(table["log_density"] - _logsumexp(table["log_density"]))
    mean = float(w @ table["mu_mean"])
    out = {"mu": (mean, float(np.sqrt(max(w @ (table["mu_var"] + table["mu_mean"] ** 2)
                                          - mean**2, 0.0))))}
    for name, value in coords.scales(cells).items():
        mean = float(w @ value)
        out[name] = (mean, float(np.sqrt(max(w @ value**2 - mean**2, 0.0))))
    return out


def _cells(lo, hi, points) -> np.ndarray:
    """(points^d, d) midpoints of a tensor grid of ``points`` cells per axis over [lo, hi]."""
    axes = [lo[k] + (np.arange(points) + 0.5) * (hi[k] - lo[k]) / points for k in range(len(lo))]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo))


def _nig_log_evidence(prior: NormalInverseGamma, y: np.ndarray) -> float:
    """The log evidence p(y) of iid normal rows under a normal-inverse-gamma prior:
    -n/2 log(2 pi) + 1/2 log(kappa / kappa') + a log b - a' log b' + log Gamma(a') - log Gamma(a)."""
    from scipy.special import gammaln

    post = prior.updated(y)
    return float(-0.5 * len(y) * LOG_2PI + 0.5 * np.log(prior.kappa / post.kappa)
                 + prior.a * np.log(prior.b) - post.a * np.log(post.b)
                 + gammaln(post.a) - gammaln(prior.a))


def exact_heldout_lpd(fit, table, held_out: str) -> float | None:
    """The exact log predictive density of ``held_out``'s rows under ``fit`` (a fit
    without them), the LOAO term: from the fit's grid (``ExactPosterior.heldout_lpd``),
    or for a theory drawn from a normal-inverse-gamma posterior in closed form. None
    for a fit sampled by NUTS (its density is the Monte Carlo mean over draws)."""
    theory = get_theory(fit.theory)
    arch = list(table.model.values).index(held_out)
    row = table.sel(model=held_out)
    observed = np.flatnonzero(row.observed.values & np.isfinite(row[theory.target].values))
    y = row[theory.target].values[observed]
    quadrature = getattr(fit, "exact", None)
    if quadrature is not None:
        return quadrature.heldout_lpd(arch, observed, y)
    priors = list(theory.priors.values())
    if not theory.sampled and len(priors) == 1 and isinstance(priors[0], NormalInverseGamma):
        return (_nig_log_evidence(priors[0], np.r_[fit.data.y, y])
                - _nig_log_evidence(priors[0], fit.data.y))
    return None
