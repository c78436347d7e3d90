"""The instrument's buffered, chunked reduction against a direct computation."""

import numpy as np
import pytest
import torch

from phantom_theory import order_parameter as op
from runner.audit import WeightHashes, tensor_sha256
from runner.instrument import Instrument
from runner.models import load_model, readout_matrix


def direct(logits, U, c, k):
    """The logged quantities computed the plain way, in float64."""
    z = logits.double().numpy()
    p = np.exp(z - z.max())
    p /= p.sum()
    s_c, s_k = op.pair_overlaps(U.double().numpy(), c, k)
    w = op.population_weights(s_c, s_k)
    bulk = np.ones_like(p, dtype=bool)
    bulk[[c, k]] = False
    return {"loss": -np.log(p[c]), "p_correct": p[c], "margin": z[c] - z[k],
            "rank_correct": 1 + (z > z[c]).sum(), "entropy": -(p * np.log(p)).sum(),
            "phi": (p * w).sum(), "drag": (p[bulk] * w[bulk]).sum(), "overlap_ck": s_c[k]}


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_buffered_rows_match_a_direct_computation_across_chunks(chunk):
    model = load_model("tiny-neox").model
    U = readout_matrix(model)
    c, k, steps = 7, 9, 7
    instrument = Instrument(model, c, k, steps, "readout", frozen=False, chunk=chunk)
    generator = torch.Generator().manual_seed(0)
    expected = []
    for step in range(steps + 1):
        logits = torch.randn(U.shape[0], generator=generator) * 3
        instrument.record(step, logits)
        expected.append(direct(logits, U.detach(), c, k))
        with torch.no_grad():
            U.add_(0.05 * torch.randn(U.shape, generator=generator))
    table = instrument.steps()
    for step, values in enumerate(expected):
        for name, value in values.items():
            # The bulk overlaps keep the model's float32 precision: Phi and the drag
            # agree with a float64 computation to float32 rounding, in Phi's units.
            tolerance = 1e-7 if name in ("phi", "drag") else 1e-9
            assert table[name][step] == pytest.approx(value, rel=1e-6, abs=tolerance), (step, name)
    phi = table["phi"]
    np.testing.assert_allclose(table["attribution_readout"][:-1] + table["attribution_geometry"][:-1],
                               np.diff(phi), atol=1e-14)
    assert np.isnan(table["attribution_readout"][-1])


def test_a_changed_byte_changes_the_recorded_hash():
    model = load_model("tiny-neox").model
    hashes = WeightHashes(model, steps=3)
    E = model.get_input_embeddings().weight
    hashes.record(0)
    with torch.no_grad():
        E[5, 3] = torch.nextafter(E[5, 3], torch.tensor(np.inf))   # one ulp
    hashes.record(1)
    changed = tensor_sha256(E)
    with torch.no_grad():
        E[5, 3] = torch.nextafter(E[5, 3], torch.tensor(-np.inf))  # and back
    hashes.record(2)
    recorded = hashes.finish()["embedding_sha256"]
    assert recorded[1] == changed != recorded[0]
    assert recorded[2] == recorded[0]
