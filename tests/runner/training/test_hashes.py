"""Weight hashes: one changed byte changes the recorded hash, and changing it back
restores it."""

import numpy as np
import torch

from runner.models import load_model
from runner.training.hashes import FrozenMatrices, StepHashes, tensor_sha256


def test_a_changed_byte_changes_the_recorded_hash():
    model = load_model("tiny-neox").model
    frozen, hashes = FrozenMatrices(model), StepHashes(steps=3)
    E = model.get_input_embeddings().weight
    hashes.record(0, frozen.digests())
    with torch.no_grad():
        E[5, 3] = torch.nextafter(E[5, 3], torch.tensor(np.inf))   # one ulp
    hashes.record(1, frozen.digests())
    changed = tensor_sha256(E)
    with torch.no_grad():
        E[5, 3] = torch.nextafter(E[5, 3], torch.tensor(-np.inf))  # and back
    hashes.record(2, frozen.digests())
    recorded = hashes.arrays()["embedding_sha256"]
    assert recorded[1] == changed != recorded[0]
    assert recorded[2] == recorded[0]
