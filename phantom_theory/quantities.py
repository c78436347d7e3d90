"""Dimensionless quantities measured at initialisation (THEORY.md section 7).

Pure numpy on a readout (or input-embedding) matrix and per-context values; the
runner measures the parts that need the model (m0, G0, lambda0) and assembles the
quantities Dataset, whose schema lives here:

- dims ``model``, ``context`` (per-context values), ``mode``, ``optimizer`` (G0 and
  lambda0 depend on the trainable parameters and the first update), ``geometry``
  (whole-matrix statistics of the readout and of the input embedding).
"""

from __future__ import annotations

import numpy as np

from .io import open_checked, write_netcdf
from .order_parameter import pair_overlaps

SCHEMA = "phantom-theory/quantities/1"

VARIABLES = {
    "m0": ("1", "initial logit margin z_c - z_k"),
    "p_correct0": ("1", "initial probability of c"),
    "p_competitor0": ("1", "initial probability of k"),
    "G0": ("1", "first-step margin growth per unit learning rate: <grad m, update direction>"),
    "lambda0": ("1", "top eigenvalue of the loss Hessian over the trainable parameters"),
    "lambda0_iterations": ("1", "Hessian-vector products used for lambda0"),
    "overlap_ck": ("1", "pair overlap S_ck of normalised readout rows"),
    "distinguishability": ("1", "pair distinguishability 1 - S_ck^2"),
    "b_c": ("1", "bulk anisotropy of c: d * mean over the bulk of S_ci^2"),
    "b_k": ("1", "bulk anisotropy of k: d * mean over the bulk of S_ki^2"),
    "leak_fraction": ("1", "share of bulk tokens i with u_i.w > u_c.w, w = (U_c - U_k)/|U_c - U_k|"),
    "mean_cosine": ("1", "mean pairwise cosine of a seeded sample of rows"),
    "top_pc_share": ("1", "share of the rows' variance along the top principal component"),
    "effective_rank": ("1", "effective rank exp(H(sigma / sum sigma)) of the centred rows"),
}


def bulk_anisotropy(U, c: int, k: int) -> tuple[float, float]:
    """(b_c, b_k) with b_x = d * mean_{i not in {c, k}} S_xi^2. For isotropic
    directions b = 1; an anisotropic bulk gives b >> 1."""
    s_c, s_k = pair_overlaps(np.asarray(U, dtype=np.float64), c, k)
    bulk = np.ones(len(s_c), dtype=bool)
    bulk[[c, k]] = False
    d = U.shape[-1]
    return float(d * np.mean(s_c[bulk] ** 2)), float(d * np.mean(s_k[bulk] ** 2))


def leak_fraction(U, c: int, k: int) -> float:
    """Share of bulk tokens that would overtake c if the hidden state moved along the
    pair's difference direction w = (U_c - U_k)/|U_c - U_k|: u_i . w > u_c . w."""
    U = np.asarray(U, dtype=np.float64)
    w = U[c] - U[k]
    w /= np.linalg.norm(w)
    projections = (U @ w) / np.linalg.norm(U, axis=1)
    bulk = np.ones(len(U), dtype=bool)
    bulk[[c, k]] = False
    return float(np.mean(projections[bulk] > projections[c]))


def embedding_statistics(U, sample: int = 2048, seed: int = 0) -> dict[str, float]:
    """Whole-matrix statistics of the rows of U (V x d):

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


def reduced_lr(eta, steps, G0, m0):
    """nu = eta * T * G0 / |m0|: the learning rate in units of the linear theory's
    flip (nu = 1 flips a linear margin in T steps)."""
    return eta * steps * G0 / np.abs(m0)


def sharpness_number(eta, lambda0):
    """c_sharp = eta * lambda0; the catapult anchor puts the edge at 2 for GD."""
    return eta * lambda0


def label(ds):
    """Attach units and long names to the quantities Dataset's variables."""
    for name, var in ds.data_vars.items():
        if name in VARIABLES:
            units, long_name = VARIABLES[name]
            var.attrs.update(units=units, long_name=long_name)
    return ds


def open_quantities(path):
    """Read a quantities Dataset written by ``phantom quantities``."""
    return open_checked(path, SCHEMA, "quantities file (from `phantom quantities`)")


def write_quantities(ds, path, overwrite: bool = False):
    return write_netcdf(ds, path, overwrite)
