"""The instrument: its buffered, chunked reduction against a direct computation,
and the identities it records in every run (Phi = signal + drag, the attribution
parts add up to the change in Phi and in the drag, a frozen geometry's parts are
exactly 0, both geometries of an untied model)."""

import numpy as np
import pytest
import torch

from phantom_theory import order_parameter as op
from runner.models import load_model, readout_matrix
from runner.training.instrument import Instrument


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
    expected, states = [], []
    for step in range(steps + 1):
        logits = torch.randn(U.shape[0], generator=generator) * 3
        instrument.record(step, logits)
        expected.append(direct(logits, U.detach(), c, k))
        states.append((logits.double().numpy(), U.detach().double().numpy().copy()))
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
    # the drag's parts, against delta(p_t+1, S_t) - delta(p_t, S_t) computed directly
    np.testing.assert_allclose(table["attribution_drag_readout"][:-1]
                               + table["attribution_drag_geometry"][:-1],
                               np.diff(table["drag"]), rtol=0, atol=1e-14)
    bulk = np.ones(U.shape[0], dtype=bool)
    bulk[[c, k]] = False
    for t, ((z0, U0), (z1, _)) in enumerate(zip(states, states[1:], strict=False)):
        p0, p1 = (np.exp(z - z.max()) / np.exp(z - z.max()).sum() for z in (z0, z1))
        w0 = op.population_weights(*op.pair_overlaps(U0, c, k))
        readout = p1[bulk] @ w0[bulk] - p0[bulk] @ w0[bulk]
        assert table["attribution_drag_readout"][t] == pytest.approx(readout, abs=1e-7), t
    assert np.abs(table["attribution_drag_geometry"][:-1]).max() > 1e-6
    assert np.isnan(table["attribution_drag_geometry"][-1])


MODELS = ["tiny-gpt2", "tiny-neox"]
MODES = ["full", "lora"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_phi_equals_signal_plus_drag_at_every_step(run_of, model, mode):
    ds = run_of(model, mode)
    np.testing.assert_allclose(ds.signal + ds.drag, ds.phi, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_attribution_parts_sum_to_the_change_in_phi(run_of, model, mode):
    ds = run_of(model, mode)
    parts = (ds.attribution_readout + ds.attribution_geometry).values[:-1]
    np.testing.assert_allclose(parts, np.diff(ds.phi.values), rtol=0, atol=1e-14)


@pytest.mark.parametrize("model", MODELS)
def test_the_drag_attribution_is_exact_in_float64_under_full_fine_tuning(run_of, model):
    """Per step, readout part + geometry part = delta(t+1) - delta(t) to 1e-12, and
    the run's sums are the drag's change; the geometry does take part."""
    ds = run_of(model, "full", optimizer="sgd", lr=0.3, steps=30, dtype="float64")
    readout = ds.attribution_drag_readout.values[:-1]
    geometry = ds.attribution_drag_geometry.values[:-1]
    np.testing.assert_allclose(readout + geometry, np.diff(ds.drag.values), rtol=0, atol=1e-12)
    assert np.abs(geometry).max() > 1e-6
    assert float(ds.drag_change_readout) == pytest.approx(readout.sum(), abs=1e-12)
    assert float(ds.drag_change_readout + ds.drag_change_geometry) == \
        pytest.approx(float(ds.drag_change), abs=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_under_lora_both_geometry_parts_are_exactly_zero(run_of, model):
    ds = run_of(model, "lora")
    for name in ("attribution_geometry", "attribution_drag_geometry"):
        assert np.array_equal(ds[name].values[:-1], np.zeros(ds.sizes["step"] - 1)), name
    assert np.abs(ds.attribution_drag_readout.values[:-1]).max() > 0
    assert float(ds.drag_change_geometry) == 0.0
    assert str(ds.structural_kind.item()) in ("", "readout")


def test_the_untied_model_records_both_geometries(run_of):
    ds = run_of("tiny-neox", "full")
    assert not np.allclose(ds.phi, ds.phi_input)
    np.testing.assert_allclose(ds.signal_input + ds.drag_input, ds.phi_input, rtol=1e-6)
