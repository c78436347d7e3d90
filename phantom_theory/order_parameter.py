"""The order parameter Phi, its exact split into signal and drag, and the
readout/geometry attribution of the change of Phi and of the drag (THEORY.md
sections 2 to 5).

Every function here takes numpy arrays or torch tensors with any leading batch
dimensions and uses only operations both libraries share. The runner calls them
inside the training step; tests call them on small arrays with known answers.
Nothing here forms a V x V matrix: the geometry of one (c, k) pair costs one pass
over the rows and two matrix-vector products, O(V d).
"""

from __future__ import annotations

import numpy as np


def squared_norms(U):
    """|U_i|^2 for every row of U (..., V, d) -> (..., V)."""
    if isinstance(U, np.ndarray):
        return np.einsum("...ij,...ij->...i", U, U)   # no V x d temporary
    return U.norm(dim=-1).square()                    # torch, likewise


def row_norms(U):
    """|U_i| for every row of U (..., V, d) -> (..., V)."""
    return squared_norms(U) ** 0.5


def pair_overlaps(U, c: int, k: int):
    """Overlaps of every normalised row with the pair rows.

    S_ci = û_c · û_i and S_ki = û_k · û_i, with û_i = U_i / |U_i|.
    U has shape (..., V, d); returns (s_c, s_k), each (..., V).
    """
    norms = row_norms(U)
    pair = U[..., [c, k], :]                      # (..., 2, d)
    dots = U @ pair.mT                            # (..., V, 2)
    overlaps = dots / (norms[..., :, None] * norms[..., [c, k]][..., None, :])
    return overlaps[..., 0], overlaps[..., 1]


def population_weights(s_c, s_k):
    """w_i = S_ci^2 - S_ki^2: what token i adds to Phi per unit of probability."""
    return s_c * s_c - s_k * s_k


def bulk_weights(U, pair):
    """Population weights straight from the rows, without normalising all of U.

        w_i = S_ci^2 - S_ki^2 = [(U_i.û_c)^2 - (U_i.û_k)^2] / |U_i|^2

    computed in U's precision; ``pair`` holds the rows U_c, U_k (..., 2, d). The pair's own
    entries come out only approximately (1 - S_ck^2 up to rounding);
    ``exact_pair_weights`` sets them from a higher-precision S_ck.
    """
    unit_pair = pair / row_norms(pair)[..., None]
    projections = U @ unit_pair.mT                       # (..., V, 2)
    projections = projections * projections
    return (projections[..., 0] - projections[..., 1]) / squared_norms(U)


def pair_overlap(pair):
    """S_ck from the pair's two rows (..., 2, d), in their precision."""
    unit = pair / row_norms(pair)[..., None]
    return (unit[..., 0, :] * unit[..., 1, :]).sum(-1)


def exact_pair_weights(weights, s_ck, c: int, k: int):
    """Set (in place) the pair's own weights w_c = 1 - S_ck^2 = -w_k.

    With s_ck in float64, the identity Phi = sigma + delta, which involves only
    these entries, then holds to float64 rounding whatever the bulk's precision.
    """
    distinguishability = 1 - s_ck * s_ck
    weights[..., c] = distinguishability
    weights[..., k] = -distinguishability
    return weights


def pair_weights(U, c: int, k: int):
    """(w, S_ck) of the rows of U, with the pair's entries exact in U's precision."""
    pair = U[..., [c, k], :]
    s_ck = pair_overlap(pair)
    return exact_pair_weights(bulk_weights(U, pair), s_ck, c, k), s_ck


def order_parameter(p, weights):
    """Phi = sum_i p_i (S_ci^2 - S_ki^2) = <û_c|rho|û_c> - <û_k|rho|û_k>."""
    return (p * weights).sum(-1)


def signal(p, s_ck, c: int, k: int):
    """Signal sigma = (p_c - p_k)(1 - S_ck^2): the two pair terms of Phi."""
    return (p[..., c] - p[..., k]) * (1 - s_ck * s_ck)


def drag(p, weights, c: int, k: int):
    """Drag delta = sum_{i not in {c, k}} p_i (S_ci^2 - S_ki^2): the bulk's part of Phi."""
    return decompose(p, weights, None, c, k)[2]


def decompose(p, weights, s_ck, c: int, k: int):
    """(Phi, sigma, delta) in one pass; sigma is None when s_ck is None."""
    terms = p * weights
    phi = terms.sum(-1)
    delta = phi - terms[..., c] - terms[..., k]
    return phi, None if s_ck is None else signal(p, s_ck, c, k), delta


def split_change(before, mixed, after):
    """(readout, geometry) = (mixed - before, after - mixed) of a quantity X(p, S).

    ``mixed`` is X(p_{t+1}, S_t): the next distribution read through the previous
    geometry. The two parts add up to after - before up to one rounding each, and
    the geometry part is exactly 0 when ``mixed`` is ``after`` (a frozen geometry).
    """
    return mixed - before, after - mixed


def attribution(p_after, weights_before, phi_before, phi_after):
    """Split Phi(t+1) - Phi(t) into a readout part and a geometry part.

    readout  = Phi(p_{t+1}, S_t)     - Phi(p_t, S_t)
    geometry = Phi(p_{t+1}, S_{t+1}) - Phi(p_{t+1}, S_t)

    The two add up to the change in Phi. When the geometry is frozen (LoRA) the
    weights of both steps are one array, Phi(p_{t+1}, S_t) is Phi(p_{t+1}, S_{t+1})
    computed the same way, and the geometry part is exactly 0.
    """
    return split_change(phi_before, order_parameter(p_after, weights_before), phi_after)


def drag_attribution(p_after, weights_before, delta_before, delta_after, c: int, k: int):
    """Split delta(t+1) - delta(t) as Phi's change is split (THEORY.md section 4).

    readout  = delta(p_{t+1}, S_t)     - delta(p_t, S_t)
    geometry = delta(p_{t+1}, S_{t+1}) - delta(p_{t+1}, S_t)

    delta(p_{t+1}, S_t) is computed by ``decompose``, the same arithmetic as the
    drag itself, so under a frozen geometry the geometry part is exactly 0.
    """
    mixed = decompose(p_after, weights_before, None, c, k)[2]
    return split_change(delta_before, mixed, delta_after)


def readout_share(readout, geometry):
    """|readout| / (|readout| + |geometry|); 1 when the geometry did not move."""
    total = abs(readout) + abs(geometry)
    return abs(readout) / total if total > 0 else 1.0
