"""Proof that LoRA leaves the embedding matrices untouched: exact SHA-256 digests
of their bytes at every logged step (THEORY.md section 5, frozen-geometry proof)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .models import input_embedding, is_tied, readout_matrix


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
