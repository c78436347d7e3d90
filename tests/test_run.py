"""One fine-tuning run on the tiny models: identities, frozen geometry, outcomes."""

import numpy as np
import pytest

from runner.train import RunOptions, run

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
def test_under_lora_the_geometry_part_is_exactly_zero(run_of, model):
    ds = run_of(model, "lora")
    assert (ds.attribution_geometry.values[:-1] == 0.0).all()


@pytest.mark.parametrize("model", MODELS)
def test_under_full_fine_tuning_the_geometry_moves(run_of, model):
    ds = run_of(model, "full")
    assert np.abs(ds.attribution_geometry.values[:-1]).max() > 0


@pytest.mark.parametrize("model", MODELS)
def test_lora_leaves_both_embedding_matrices_byte_identical(run_of, model):
    ds = run_of(model, "lora")
    for name in ("embedding_sha256", "readout_sha256"):
        hashes = set(ds[name].values)
        assert hashes == {ds.attrs[f"{name.split('_')[0]}_sha256_start"]}
    assert ds.attrs["embedding_sha256_end"] == ds.attrs["embedding_sha256_start"]
    assert ds.attrs["readout_sha256_end"] == ds.attrs["readout_sha256_start"]


def test_lora_keeps_the_tied_model_tied(run_of):
    ds = run_of("tiny-gpt2", "lora")
    assert ds.attrs["tied_base"] == 1 and ds.attrs["tie_preserved"] == 1


@pytest.mark.parametrize("model", MODELS)
def test_full_fine_tuning_changes_the_embedding_matrices(run_of, model):
    ds = run_of(model, "full")
    assert ds.attrs["embedding_sha256_end"] != ds.attrs["embedding_sha256_start"]
    assert ds.attrs["readout_sha256_end"] != ds.attrs["readout_sha256_start"]


@pytest.mark.parametrize("model", MODELS)
def test_a_planted_context_starts_failing(run_of, model):
    ds = run_of(model, "lora")
    assert ds.p_competitor[0] > ds.p_correct[0] and ds.phi[0] < 0


@pytest.mark.parametrize("model", MODELS)
def test_a_large_enough_lr_flips_within_T(run_of, model):
    ds = run_of(model, "lora", lr=3e-2)
    assert ds.outcome.item() == "success" and 0 < int(ds.flip_step) <= 60


def test_a_small_lr_fails_silently(run_of):
    ds = run_of("tiny-gpt2", "lora", lr=1e-4)
    assert ds.outcome.item() in ("kinematic_failure", "structural_failure")
    assert ds.loss[-1] < ds.loss[0]


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e4), ("adamw", 1e38)])
def test_a_huge_lr_is_recorded_as_diverged(optimizer, lr):
    ds = run(RunOptions(model="tiny-gpt2", mode="full" if optimizer == "adamw" else "lora",
                        optimizer=optimizer, lr=lr, steps=20))
    assert ds.outcome.item() == "diverged"
    assert int(ds.diverged_step) > 0 and np.isnan(ds.loss[-1])
    assert np.isfinite(ds.loss[0])


def test_cpu_runs_with_the_same_seed_are_bitwise_repeatable():
    options = RunOptions(model="tiny-neox", mode="lora", lr=1e-2, steps=15, seed=3)
    first, second = run(options), run(options)
    for name in ("loss", "phi", "drag", "attribution_readout"):
        assert first[name].values.tobytes() == second[name].values.tobytes()


def test_a_different_seed_changes_a_lora_run():
    first = run(RunOptions(model="tiny-neox", mode="lora", lr=1e-2, steps=5, seed=1))
    second = run(RunOptions(model="tiny-neox", mode="lora", lr=1e-2, steps=5, seed=2))
    assert first.loss.values[-1] != second.loss.values[-1]


def test_the_untied_model_records_both_geometries(run_of):
    ds = run_of("tiny-neox", "full")
    assert not np.allclose(ds.phi, ds.phi_input)
    np.testing.assert_allclose(ds.signal_input + ds.drag_input, ds.phi_input, rtol=1e-6)


def test_the_tied_model_has_one_geometry(run_of):
    ds = run_of("tiny-gpt2", "full")
    np.testing.assert_array_equal(ds.phi, ds.phi_input)
