"""Per-step measurements of a fine-tuning run (THEORY.md sections 3 and 5).

``Instrument.record`` is called from the training step with the step's logits. It
copies them into a buffer and, when the geometry moves (full fine-tuning), takes
the step's population weights from one pass over the readout rows plus two
matrix-vector products: O(V d), never V x V. Under LoRA the geometry is frozen and
computed once. Every ``chunk`` steps the buffer is reduced to the logged columns
in a few vectorised float64 operations, on the weights' own device, so the
per-step cost is a copy (LoRA) or one geometry pass (full fine-tuning) and the
host never waits on an accelerator mid-run. ``WeightHashes`` proves the frozen
claim by hashing the embedding matrices' bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from phantom_theory import order_parameter as op

from .models import input_embedding, is_tied, readout_matrix

BASE_COLUMNS = (
    "loss", "p_correct", "p_competitor", "margin", "rank_correct", "rank_competitor",
    "entropy", "bulk_mass", "phi", "signal", "drag", "signal_normalised", "overlap_ck",
    "pair_distance",
)
ATTRIBUTION_COLUMNS = ("attribution_readout", "attribution_geometry")
SECONDARY_COLUMNS = ("phi", "signal", "drag", "overlap_ck")
MATRICES = {"readout": readout_matrix, "input": input_embedding}


def columns(geometry: str) -> tuple[str, ...]:
    other = "input" if geometry == "readout" else "readout"
    return (*BASE_COLUMNS, *(f"{name}_{other}" for name in SECONDARY_COLUMNS),
            *ATTRIBUTION_COLUMNS)


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class PairGeometry:
    """One matrix's share of the instrument: per state, the bulk population weights
    w_i = S_ci^2 - S_ki^2 (in the matrix's precision) and the pair's two rows (in
    float64, for an exact S_ck). Frozen geometry is taken once."""

    def __init__(self, parameter: torch.Tensor, c: int, k: int, frozen: bool, chunk: int):
        self.parameter, self.c, self.k, self.frozen = parameter, c, k, frozen
        V, d = parameter.shape
        rows = 1 if frozen else chunk
        dtype, device = _working_dtype(parameter.dtype), parameter.device
        self.weights = torch.empty(rows, V, dtype=dtype, device=device)
        self.pairs = torch.empty(rows, 2, d, dtype=torch.float64, device=device)
        self.index = torch.tensor([c, k], device=device)
        # On the CPU the per-step arithmetic runs in numpy, on views that share
        # memory with the parameter and the buffers: a numpy call costs a fraction
        # of a torch call, and these are many small calls.
        self._numpy = device.type == "cpu" and parameter.dtype == dtype
        if self._numpy:
            self._buffers = (self.weights.numpy(), self.pairs.numpy())
        self._view = None   # (data_ptr, numpy view of the parameter)
        self._taken = False

    def _matrix_view(self) -> np.ndarray:
        pointer = self.parameter.data_ptr()   # the optimizer updates in place
        if self._view is None or self._view[0] != pointer:
            self._view = (pointer, self.parameter.detach().numpy())
        return self._view[1]

    def take(self, row: int) -> None:
        if self.frozen and self._taken:
            return
        row = 0 if self.frozen else row
        if self._numpy:
            U = self._matrix_view()
            pair = U[[self.c, self.k]]
            weights, pairs = self._buffers
            pairs[row] = pair
            weights[row] = op.bulk_weights(U, pair)
        else:
            with torch.no_grad():
                U = self.parameter.detach().to(self.weights.dtype)
                pair = U.index_select(0, self.index)
                self.pairs[row].copy_(pair)
                self.weights[row].copy_(op.bulk_weights(U, pair))
        self._taken = True

    def chunk(self, n: int):
        """(weights (n or 1, V), S_ck (n or 1,), |U_c - U_k| (n or 1,)) in float64."""
        rows = 1 if self.frozen else n
        pairs = self.pairs[:rows]
        s_ck = op.pair_overlap(pairs)
        weights = op.exact_pair_weights(self.weights[:rows].double(), s_ck, self.c, self.k)
        distance = (pairs[:, 0] - pairs[:, 1]).norm(dim=-1)
        return weights, s_ck, distance


class Instrument:
    """Records the order parameter and its parts at every step into ``table``
    (T + 1 rows, one column per name in ``self.columns``)."""

    def __init__(self, model, c: int, k: int, steps: int, geometry: str = "readout",
                 frozen: bool = False, chunk: int = 64):
        self.c, self.k, self.chunk = c, k, chunk
        self.columns = columns(geometry)
        self.table = np.full((steps + 1, len(self.columns)), np.nan)
        other = "input" if geometry == "readout" else "readout"
        primary = MATRICES[geometry](model)
        self.primary = PairGeometry(primary, c, k, frozen, chunk)
        self.secondary = (self.primary if is_tied(model) else
                          PairGeometry(MATRICES[other](model), c, k, frozen, chunk))
        self.logits = torch.empty(chunk, primary.shape[0], device=primary.device,
                                  dtype=_working_dtype(primary.dtype))
        self._steps: list[int] = []     # steps buffered since the last reduction
        self._previous = None           # (weights, phi) of the last reduced state

    def record(self, step: int, logits: torch.Tensor) -> None:
        """Buffer the state whose last-position logits are ``logits`` (V,) as ``step``."""
        row = len(self._steps)
        self.logits[row] = logits.detach()
        self.primary.take(row)
        if self.secondary is not self.primary:
            self.secondary.take(row)
        self._steps.append(step)
        if len(self._steps) == self.chunk:
            self.reduce()

    def reduce(self) -> None:
        """Turn the buffered states into table rows (and the attribution of each
        increment, including the one from the previous chunk's last state)."""
        n = len(self._steps)
        if not n:
            return
        c, k = self.c, self.k
        with torch.no_grad():
            z = self.logits[:n].double()
            log_partition = z.logsumexp(-1)
            p = (z - log_partition[:, None]).exp()
            z_c, z_k, p_c, p_k = z[:, c], z[:, k], p[:, c], p[:, k]
            weights, s_ck, distance = self.primary.chunk(n)
            phi, sigma, delta = op.decompose(p, weights, s_ck, c, k)
            if self.secondary is self.primary:
                secondary = (phi, sigma, delta, s_ck)
            else:
                weights2, s_ck2, _ = self.secondary.chunk(n)
                secondary = (*op.decompose(p, weights2, s_ck2, c, k), s_ck2)
            ones = torch.ones(n, dtype=torch.float64, device=z.device)
            columns = torch.stack([
                log_partition - z_c, p_c, p_k, z_c - z_k,
                (z > z_c[:, None]).sum(-1) + 1, (z > z_k[:, None]).sum(-1) + 1,
                log_partition - (p * z).sum(-1), 1 - p_c - p_k,
                phi, sigma, delta, p_c - p_k, s_ck * ones, distance * ones,
                *(v * ones for v in secondary),
            ], dim=-1)
            weights_all = weights.expand(n, -1)
            if self._previous is None:
                before_w, before_phi, p_after, after_phi = (
                    weights_all[:-1], phi[:-1], p[1:], phi[1:])
            else:
                before_w = torch.cat([self._previous[0][None], weights_all[:-1]])
                before_phi = torch.cat([self._previous[1][None], phi[:-1]])
                p_after, after_phi = p, phi
            readout, geometry = op.attribution(p_after, before_w, before_phi, after_phi)
            self._previous = (weights_all[-1].clone(), phi[-1].clone())
        steps = np.asarray(self._steps)
        self.table[steps, :-2] = columns.cpu().numpy()
        increments = steps[len(steps) - len(readout):] - 1
        self.table[increments, -2:] = torch.stack([readout, geometry], -1).cpu().numpy()
        self._steps = []

    def steps(self) -> dict[str, np.ndarray]:
        """The logged columns by name (NaN where a state was never reached)."""
        self.reduce()
        return {name: self.table[:, i] for i, name in enumerate(self.columns)}


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes, exactly as stored."""
    data = tensor.detach().contiguous().view(torch.uint8).cpu().numpy()
    return hashlib.sha256(memoryview(data)).hexdigest()


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _as_integers(tensor: torch.Tensor):
    """The tensor's bytes as integers, so that equality is bitwise (NaN equals
    itself, -0.0 differs from 0.0): a numpy view on the CPU, a tensor view elsewhere."""
    view = tensor.detach().view(_INT_OF_SIZE[tensor.element_size()])
    return view.numpy() if view.device.type == "cpu" else view


class WeightHashes:
    """Exact SHA-256 of the input embedding and readout matrices at logged steps.

    A step whose bytes equal the step-0 snapshot (compared byte for byte) has the
    step-0 digest by definition, so it is reused; any step whose bytes differ is
    hashed afresh. The record is exact either way, and the common case costs a
    memory comparison instead of a hash.
    """

    def __init__(self, model, steps: int, interval: int = 1):
        self.interval, self.n_states = interval, steps + 1
        E = input_embedding(model)
        matrices = {"embedding_sha256": E}
        if not is_tied(model):   # a tied readout is the same bytes: its hash is E's
            matrices["readout_sha256"] = readout_matrix(model)
        self.matrices = matrices
        self.hashes = {name: np.full(self.n_states, "", dtype=object)
                       for name in ("embedding_sha256", "readout_sha256")}
        self._reference = {name: (_as_integers(m.detach().clone()), tensor_sha256(m))
                           for name, m in matrices.items()}
        self._live = {name: _as_integers(m) for name, m in matrices.items()}

    def record(self, step: int) -> None:
        if step % self.interval and step != self.n_states - 1:
            return
        for name, matrix in self.matrices.items():
            reference, digest = self._reference[name]
            live = self._live[name]
            same = (np.array_equal(live, reference) if isinstance(live, np.ndarray)
                    else torch.equal(live, reference))
            self.hashes[name][step] = digest if same else tensor_sha256(matrix)
        if "readout_sha256" not in self.matrices:
            self.hashes["readout_sha256"][step] = self.hashes["embedding_sha256"][step]

    def finish(self) -> dict[str, np.ndarray]:
        """Per-step hash arrays ('' where a step was not hashed)."""
        return self.hashes
