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

from .order_parameter import pair_overlaps
from .schema import label as label_dataset
from .schema import open_dataset, write_dataset


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


def reduced_lr(eta, steps, G0, m0):
    """Reduced learning rate nu = eta * T * G0 / |m0|: the learning rate in units of the
    linear theory's flip (nu = 1 flips a linear margin in T steps)."""
    return eta * steps * G0 / np.abs(m0)


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
