"""Proof that LoRA leaves the embedding matrices untouched: exact SHA-256 digests
of their bytes at every logged step (THEORY.md section 5, frozen-geometry proof)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..models import input_embedding, is_tied, readout_matrix

HASH_VARIABLES = ("embedding_sha256", "readout_sha256")


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


class FrozenMatrices:
    """Exact SHA-256 digests of a model's input embedding and readout matrices.

    Bytes equal to the snapshot taken at construction (compared byte for byte)
    have the snapshot's digest by definition, so it is reused; bytes that differ
    are hashed afresh. A digest is exact either way, and the common case costs a
    memory comparison instead of a hash. A tied readout is the embedding's bytes.
    """

    def __init__(self, model):
        E = input_embedding(model)
        self.matrices = {"embedding_sha256": E}
        if not is_tied(model):
            self.matrices["readout_sha256"] = readout_matrix(model)
        self._reference = {name: (_as_integers(m.detach().clone()), tensor_sha256(m))
                           for name, m in self.matrices.items()}
        self._live = {name: _as_integers(m) for name, m in self.matrices.items()}

    def digests(self) -> dict[str, str]:
        """The current SHA-256 of each matrix (embedding_sha256, readout_sha256); a tied
        readout gets the embedding's digest."""
        out = {}
        for name, matrix in self.matrices.items():
            reference, digest = self._reference[name]
            live = self._live[name]
            same = (np.array_equal(live, reference) if isinstance(live, np.ndarray)
                    else torch.equal(live, reference))
            out[name] = digest if same else tensor_sha256(matrix)
        out.setdefault("readout_sha256", out["embedding_sha256"])
        return out


class StepHashes:
    """The digests of one run at every ``interval``-th logged state and at its last
    (T), '' elsewhere. Both engines keep one per run: the sequential loop per run,
    the batched engine per slot, from one digest shared by the slots that are due."""

    def __init__(self, steps: int, interval: int = 1):
        self.interval, self.last = interval, steps
        self.hashes = {name: np.full(steps + 1, "", dtype=object) for name in HASH_VARIABLES}

    def due(self, step: int) -> bool:
        """Whether the state logged as ``step`` is hashed."""
        return step % self.interval == 0 or step == self.last

    def record(self, step: int, digests: dict[str, str]) -> None:
        """Store ``digests`` (``FrozenMatrices.digests()``) for ``step`` if it is due."""
        if self.due(step):
            for name in HASH_VARIABLES:
                self.hashes[name][step] = digests[name]

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-step hash arrays ('' where a step was not hashed)."""
        return self.hashes
