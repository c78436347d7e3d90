"""Dimensionless quantities measured at initialisation (THEORY.md section 7).

Pure numpy on a readout (or input-embedding) matrix and per-context values; the
runner measures the parts that need the model (m0, G0, lambda0, the Hessian terms
a and b, the growth along the ray) and assembles the quantities Dataset, whose
schema lives here:

- dims ``model``, ``context`` (per-context values), ``mode``, ``optimizer`` (G0,
  lambda0 and the predicted eta_hat depend on the trainable parameters and the
  first update), ``geometry`` (whole-matrix statistics of the readout and of the
  input embedding).

The at-init predictors of eta_c (section 7, "beyond linear") are pure functions of
measured numbers: ``eta_hat_linear``, ``eta_hat_second`` (with
``second_order_coefficient``, ``second_order_kappa`` and ``nu_hat_second``) and
``ray_root``, which finds the ray length S* from a callable growth G(s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .errors import PhantomError
from .order_parameter import pair_overlaps
from .schema import label as label_dataset
from .schema import open_dataset, write_dataset


def _bulk(V: int, c: int, k: int) -> np.ndarray:
    bulk = np.ones(V, dtype=bool)
    bulk[[c, k]] = False
    return bulk


def bulk_anisotropy(U, c: int, k: int) -> tuple[float, float]:
    """(b_c, b_k) with b_x = d * mean_{i not in {c, k}} S_xi^2. For isotropic
    directions b = 1; an anisotropic bulk gives b >> 1."""
    s_c, s_k = pair_overlaps(np.asarray(U, dtype=np.float64), c, k)
    bulk = _bulk(len(s_c), c, k)
    d = U.shape[-1]
    return float(d * np.mean(s_c[bulk] ** 2)), float(d * np.mean(s_k[bulk] ** 2))


def leak_count(U, c: int, k: int) -> int:
    """Number of bulk tokens that would overtake c if the hidden state moved along the
    pair's difference direction w = (U_c - U_k)/|U_c - U_k|: u_i . w > u_c . w.

    The first definition of the leak, kept as a count: on real models its threshold
    sits 11-16 isotropic standard deviations out and the count is 0, a share that
    prints as 0.000 whatever the model (THEORY.md section 7)."""
    U = np.asarray(U, dtype=np.float64)
    w = U[c] - U[k]
    w /= np.linalg.norm(w)
    projections = (U @ w) / np.linalg.norm(U, axis=1)
    return int(np.sum(projections[_bulk(len(U), c, k)] > projections[c]))


def weighted_leak(U, p, c: int, k: int) -> float:
    """The probability-weighted leak: the share of the bulk's probability on the
    competitor's side, the part of the bulk whose terms p_i (S_ci^2 - S_ki^2) pull the
    drag down.

        leak = sum_{i bulk, S_ci^2 < S_ki^2} p_i / sum_{i bulk} p_i
    """
    s_c, s_k = pair_overlaps(np.asarray(U, dtype=np.float64), c, k)
    p = np.asarray(p, dtype=np.float64)
    bulk = _bulk(len(p), c, k)
    return float(p[bulk & (s_c**2 < s_k**2)].sum() / p[bulk].sum())


def embedding_statistics(U, sample: int = 2048, seed: int = 0) -> dict[str, float]:
    """Whole-matrix statistics of the rows of U (V x d).

    mean_cosine: mean cosine over all pairs of a seeded sample of rows;
    top_pc_share: largest eigenvalue of the centred rows' covariance over its trace;
    effective_rank: exp of the entropy of the normalised singular values of the
        centred rows (Roy and Vetterli, 2007).
    """
    U = np.asarray(U, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(U), size=min(sample, len(U)), replace=False)
    unit = U[rows] / np.linalg.norm(U[rows], axis=1, keepdims=True)
    cosines = unit @ unit.T
    n = len(rows)
    mean_cosine = (cosines.sum() - np.trace(cosines)) / (n * (n - 1))
    centred = U - U.mean(axis=0)
    eigenvalues = np.clip(np.linalg.eigvalsh(centred.T @ centred), 0, None)
    singular = np.sqrt(eigenvalues)
    p = singular / singular.sum()
    p = p[p > 0]
    return {"mean_cosine": float(mean_cosine),
            "top_pc_share": float(eigenvalues.max() / eigenvalues.sum()),
            "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}


CLASS_STATISTICS = ("mean_cosine", "top_pc_share", "effective_rank_ratio")


def class_statistics(quantities: xr.Dataset, geometry: str = "readout") -> xr.Dataset:
    """The architecture-level class statistics, one row per model (dim ``model``):
    mean pairwise cosine, top-PC share and effective rank / d of ``geometry``'s
    matrix. They are properties of the architecture, not of a (c, k) pair; the
    pair-level bulk anisotropy b stays a per-context covariate (THEORY.md section 7)."""
    missing = [n for n in ("mean_cosine", "top_pc_share", "effective_rank", "embedding_dim")
               if n not in quantities.variables]
    if missing:
        raise PhantomError(f"the quantities lack {', '.join(missing)}; measure them again "
                           "with `phantom quantities`")
    if geometry not in quantities.geometry.values:
        raise PhantomError(f"geometry must be one of {list(map(str, quantities.geometry.values))}, "
                           f"not {geometry!r}")
    row = quantities.sel(geometry=geometry, drop=True)
    ds = xr.Dataset({"mean_cosine": row.mean_cosine, "top_pc_share": row.top_pc_share,
                     "effective_rank_ratio": row.effective_rank / row.embedding_dim,
                     "embedding_dim": row.embedding_dim})
    ds.attrs["class_statistics_geometry"] = geometry
    return label(ds)


# -- at-init predictors of eta_c ----------------------------------------------------

def reduced_lr(eta, steps, G0, m0):
    """Reduced learning rate nu = eta * T * G0 / |m0|: the learning rate in units of the
    linear theory's flip (nu = 1 flips a linear margin in T steps)."""
    return eta * steps * G0 / np.abs(m0)


def eta_hat_linear(m0, G0, steps):
    """The linear theory's flip, eta_hat = |m0| / (T G0); NaN where G0 <= 0."""
    G0 = np.asarray(G0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(G0 > 0, np.abs(m0) / (steps * G0), np.nan)


def second_order_coefficient(a, b, steps):
    """C of m_T - m_0 = eta T G0 + eta^2 C + O(eta^3) under T steps of gradient descent.

        C = (a + b) T (T - 1) / 2 + a T / 2

    a = g' H_m g (the margin's curvature along the step), b = (grad m)' H_L g (the
    step's own change, through the loss Hessian). With theta_t - theta_0 =
    -eta t g + O(eta^2), the gradients g_t = g + H_L (theta_t - theta_0) sum to
    theta_T - theta_0 = -eta T g + eta^2 T (T - 1)/2 H_L g, whose margin is
    eta T G0 + eta^2 [b T (T - 1)/2 + a T^2/2]."""
    return (np.asarray(a) + b) * steps * (steps - 1) / 2 + np.asarray(a) * steps / 2


def second_order_kappa(C, m0, G0, steps):
    """The second order's weight kappa = C |m0| / (T G0)^2: the flip condition m_T = 0 reads nu + kappa nu^2 = 1.
    NaN where G0 = 0."""
    G0 = np.asarray(G0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(G0 != 0, C * np.abs(m0) / (steps * G0) ** 2, np.nan)


def nu_hat_second(kappa):
    """(nu_hat2, no_root): the root of nu + kappa nu^2 = 1 that the margin reaches first.

        nu_hat2 = (sqrt(1 + 4 kappa) - 1) / (2 kappa) = 2 / (1 + sqrt(1 + 4 kappa))

    It is computed in the second form, which is exact at kappa = 0 (nu = 1) and has no cancellation
    near it. NaN, with no_root True, where 1 + 4 kappa < 0 (the quadratic margin
    never reaches 0)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    discriminant = 1 + 4 * kappa
    no_root = discriminant < 0
    with np.errstate(invalid="ignore"):
        nu = 2 / (1 + np.sqrt(np.where(no_root, np.nan, discriminant)))
    return nu, no_root


def eta_hat_second(m0, G0, C, steps):
    """(eta_hat, no_root): the smallest eta > 0 with eta T G0 + eta^2 C = |m0|.

        eta_hat = 2 |m0| / (T G0 + sqrt((T G0)^2 + 4 C |m0|))

    This is nu_hat2 |m0| / (T G0) where G0 > 0, and stays defined where G0 <= 0 but
    C > 0 (a margin that only the second order turns). NaN, no_root True, where no
    positive root exists."""
    TG = steps * np.asarray(G0, dtype=np.float64)
    discriminant = TG**2 + 4 * np.asarray(C, dtype=np.float64) * np.abs(m0)
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = TG + np.sqrt(np.where(discriminant >= 0, discriminant, np.nan))
        no_root = ~(denominator > 0) & np.isfinite(discriminant)
        eta = np.where(denominator > 0, 2 * np.abs(m0) / denominator, np.nan)
    return eta, no_root


def predictors(parts, m0, steps) -> dict[str, np.ndarray]:
    """Every at-init predictor of eta_c for T = ``steps``, from the measured parts
    (``parts``: a mapping with G0, second_order_a, second_order_b and ray_length;
    ``m0`` broadcastable against them): linear |m0| / (T G0); the second order
    (C, kappa, nu_hat2, eta_hat_second and its no-root flag); the ray S* / T. The
    parts do not depend on T, so any T is recomputed from them."""
    G0 = np.asarray(parts["G0"], dtype=np.float64)
    C = second_order_coefficient(parts["second_order_a"], parts["second_order_b"], steps)
    C = np.asarray(C, dtype=np.float64)
    kappa = second_order_kappa(C, m0, G0, steps)
    nu, _ = nu_hat_second(kappa)
    eta_second, no_root = eta_hat_second(m0, G0, C, steps)
    return {"eta_hat_linear": eta_hat_linear(m0, G0, steps), "second_order_c": C,
            "kappa": kappa, "nu_hat2": np.where(G0 > 0, nu, np.nan),
            "eta_hat_second": eta_second, "second_order_no_root": no_root.astype(np.int8),
            "eta_hat_ray": np.asarray(parts["ray_length"], dtype=np.float64) / steps}


@dataclass(frozen=True)
class RayRoot:
    """The ray length S* with int_0^S* G(s) ds = target, and how it was found.

    length: S* (NaN without a root); evaluations: calls of G; no_root: the integral
    stays below the target up to the bound (or G stopped being finite); converged:
    two successive estimates agreed to rtol; nodes, values: where G was evaluated
    and what it was (s = 0 included)."""

    length: float
    evaluations: int
    no_root: bool
    converged: bool
    nodes: tuple[float, ...]
    values: tuple[float, ...]


# The refinement stops only once no interval under the root is wider than this share of
# it, and the node that brackets the root lies within it: successive crossings can agree
# while a wide interval, or a far bracket node, bends the interpolant.
MAX_RAY_GAP = 1 / 3
# Each crossing is evaluated this far above itself, so that the next bracket is tight.
RAY_OVERSHOOT = 0.01


def _antiderivative(s, g):
    from scipy.interpolate import CubicSpline

    # not-a-knot: a line through 2 nodes, a parabola through 3, a cubic spline above
    return CubicSpline(s, g, bc_type="not-a-knot").antiderivative()


def _first_crossing(F, hi: float, target: float) -> float:
    """The smallest s in (0, hi] with F(s) = target, given F(0) = 0 < target <= F(hi)."""
    from scipy.optimize import brentq

    grid = np.linspace(0.0, hi, 513)
    above = np.nonzero(F(grid) >= target)[0]
    j = above[0] if len(above) else len(grid) - 1
    return float(brentq(lambda s: F(s) - target, grid[j - 1], grid[j], xtol=1e-14 * hi,
                        rtol=1e-12))


def ray_root(growth: Callable[[float], float], target: float, scale: float, g0: float,
             rtol: float = 1e-3, max_evaluations: int = 12, bound: float = 100.0,
             expand: float = 4.0) -> RayRoot:
    """S* solving int_0^S* G(s) ds = target, from a few evaluations of ``growth`` = G.

    Bracket: G at s = scale, expand * scale, ... up to bound * scale, until the
    integral reaches the target (a non-finite G caps the search below where it
    occurred; no root up to the bound is ``no_root``). Refine: the integral is that of
    the not-a-knot cubic spline through the nodes up to the first one whose integral
    reaches the target, so a node far beyond the root does not bend the interpolant
    near it. While that bracketing node is far (beyond (1 + MAX_RAY_GAP) S), G is
    evaluated just above the spline's crossing S (by RAY_OVERSHOOT), which tightens
    the bracket; then any interval under S wider than MAX_RAY_GAP S is halved. It
    stops when two successive crossings agree to ``rtol`` with the bracket tight and
    no interval wide, or after ``max_evaluations`` (``converged`` False).
    ``g0`` = G(0), known from the first step, costs no evaluation.
    """
    nodes, values = [0.0], [float(g0)]
    calls, ceiling = 0, bound * scale

    def result(length, no_root=False, converged=False):
        return RayRoot(float(length), calls, no_root, converged, tuple(nodes), tuple(values))

    def evaluate(s: float) -> bool:
        """Add the node (s, G(s)); False (and no node) where G(s) is not finite."""
        nonlocal calls, ceiling
        calls += 1
        value = float(growth(s))
        if not np.isfinite(value):
            ceiling = s
            return False
        i = int(np.searchsorted(nodes, s))
        nodes.insert(i, float(s))
        values.insert(i, value)
        return True

    def bracket() -> int | None:
        """Index of the first node whose integral reaches the target."""
        for j in range(1, len(nodes)):
            if _antiderivative(nodes[:j + 1], values[:j + 1])(nodes[j]) >= target:
                return j
        return None

    if not target > 0:
        return result(0.0, converged=True)
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(g0)):
        return result(np.nan, no_root=True)
    previous = np.nan
    while True:
        hi = bracket()
        if hi is None:
            largest = nodes[-1]
            s = scale if largest == 0 else largest * expand
            if s >= ceiling:   # the last step up goes to the bound, or halfway (in log) to a blow-up
                s = (ceiling if ceiling == bound * scale else
                     ceiling / expand if largest == 0 else np.sqrt(largest * ceiling))
            if s <= largest * (1 + rtol):
                return result(np.nan, no_root=True)
            if calls >= max_evaluations:
                return result(np.nan)
            evaluate(s)
            continue
        root = _first_crossing(_antiderivative(nodes[:hi + 1], values[:hi + 1]), nodes[hi],
                               target)
        # the intervals that the integral to the root spans, the last one ending at it
        edges = np.array([*(s for s in nodes if s < root * (1 - 1e-9)), root])
        gaps = np.diff(edges)
        if (abs(root - previous) <= rtol * root and gaps.max() <= MAX_RAY_GAP * root
                and nodes[hi] <= (1 + MAX_RAY_GAP) * root):
            return result(root, converged=True)
        if calls >= max_evaluations:
            return result(root)
        widest = int(np.argmax(gaps))
        point = root * (1 + RAY_OVERSHOOT)
        if nodes[hi] <= (1 + MAX_RAY_GAP) * root and gaps[widest] > MAX_RAY_GAP * root:
            point = edges[widest] + gaps[widest] / 2   # the bracket is tight: halve a wide interval
        elif np.min(np.abs(np.array(nodes) - point)) <= RAY_OVERSHOOT / 2 * root:
            point = edges[-2] + gaps[-1] / 2   # a node sits there already: halve the last interval
        if not evaluate(point):   # G blew up below a node where it was finite
            return result(np.nan)
        previous = root


def sharpness_number(eta, lambda0):
    """c_sharp = eta * lambda0; the catapult anchor puts the edge at 2 for GD."""
    return eta * lambda0


def label(ds):
    """Attach units and long names to the quantities Dataset's variables."""
    return label_dataset(ds, "quantities")


def open_quantities(path):
    """Read a quantities Dataset written by ``phantom quantities``."""
    return open_dataset(path, "quantities")


def write_quantities(ds, path, overwrite: bool = False):
    """Write a quantities Dataset atomically; refuses to replace a file unless ``overwrite``."""
    return write_dataset(ds, path, "quantities", overwrite)
