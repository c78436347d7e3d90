"""The fine-tuning loop: facts recomputed from the live model, step by step, with
code independent of the instrument (hashlib, numpy), so that a broken instrument
or a loop that moves the embeddings fails here. Then whole runs: full fine-tuning
moves the embeddings, the outcome follows the learning rate, and the seed decides a
run bit for bit."""

import hashlib

import numpy as np
import pytest
import torch

from runner.models import input_embedding, is_tied, readout_matrix
from runner.training import RunOptions, run
from runner.training.loop import prepare, train_step
from runner.training.lora import trainable_parameters
from runner.training.optimizers import make_optimizer

STEPS = 12
MODELS = ["tiny-gpt2", "tiny-neox"]


def sha256_of(tensor) -> str:
    """SHA-256 of a tensor's bytes, with numpy and hashlib only."""
    array = tensor.detach().cpu().contiguous().numpy()
    return hashlib.sha256(array.view(np.uint8).tobytes()).hexdigest()


def phi_of(U, logits, c, k):
    """Phi = sum_i p_i (S_ci^2 - S_ki^2) in float64 numpy, from rows U (V, d)."""
    U = U.detach().double().cpu().numpy()
    unit = U / np.linalg.norm(U, axis=1, keepdims=True)
    weights = (unit @ unit[c]) ** 2 - (unit @ unit[k]) ** 2
    z = logits.detach().double().cpu().numpy()
    p = np.exp(z - z.max())
    p /= p.sum()
    return float(p @ weights), weights, p


def live_steps(options: RunOptions):
    """Train as ``run`` does, yielding (model, logits, c, k) at every state."""
    _, model, context, _ = prepare(options)
    optimizer = make_optimizer(trainable_parameters(model), options)
    ids = torch.tensor([context.input_ids])
    target = torch.tensor([context.correct_id])
    from runner.models import last_logits

    for step in range(options.steps + 1):
        with torch.no_grad():
            logits = last_logits(model, ids)[0]
        yield model, logits, context.correct_id, context.competitor_id
        train_step(model, ids, target, optimizer if step < options.steps else None, None, step)


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-neox"])
def test_lora_leaves_the_base_embedding_bytes_as_loaded(model):
    options = RunOptions(model=model, mode="lora", optimizer="adamw", lr=3e-2, steps=STEPS)
    from runner.models import load_model

    base = load_model(model).model
    expected = (sha256_of(input_embedding(base)), sha256_of(readout_matrix(base)))
    seen = {(sha256_of(input_embedding(m)), sha256_of(readout_matrix(m)))
            for m, _, _, _ in live_steps(options)}
    assert seen == {expected}
    ds = run(options)   # and the run's own record says the same, in every step
    assert set(ds.embedding_sha256.values) == {expected[0]}
    assert set(ds.readout_sha256.values) == {expected[1]}


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-neox"])
def test_lora_moves_the_logits_while_the_geometry_part_recomputed_live_is_zero(model):
    options = RunOptions(model=model, mode="lora", optimizer="adamw", lr=3e-2, steps=STEPS)
    states = [(readout_matrix(m).detach().clone(), logits.clone(), c, k)
              for m, logits, c, k in live_steps(options)]
    geometry_parts, readout_parts = [], []
    for (U0, z0, c, k), (U1, z1, _, _) in zip(states, states[1:], strict=False):
        _, w0, p0 = phi_of(U0, z0, c, k)
        _, w1, p1 = phi_of(U1, z1, c, k)
        geometry_parts.append(p1 @ w1 - p1 @ w0)
        readout_parts.append(p1 @ w0 - p0 @ w0)
    assert np.max(np.abs(readout_parts)) > 1e-4          # the run does something
    assert np.array_equal(geometry_parts, np.zeros(len(geometry_parts)))
    ds = run(options)
    np.testing.assert_allclose(ds.attribution_readout.values[:-1], readout_parts,
                               rtol=1e-5, atol=1e-9)


def test_full_fine_tuning_moves_the_geometry_part_recomputed_live():
    options = RunOptions(model="tiny-neox", mode="full", optimizer="sgd", lr=0.3, steps=STEPS)
    states = [(readout_matrix(m).detach().clone(), logits.clone(), c, k)
              for m, logits, c, k in live_steps(options)]
    (U0, z0, c, k), (U1, z1, _, _) = states[0], states[1]
    _, w0, _ = phi_of(U0, z0, c, k)
    _, w1, p1 = phi_of(U1, z1, c, k)
    ds = run(options)
    assert ds.attribution_geometry.values[0] == pytest.approx(p1 @ w1 - p1 @ w0, rel=1e-4)
    assert abs(p1 @ w1 - p1 @ w0) > 0


def test_the_tied_model_reads_the_same_rows_through_both_matrices():
    options = RunOptions(model="tiny-gpt2", mode="full", optimizer="sgd", lr=0.3, steps=4)
    ds = run(options)
    for step, (model, logits, c, k) in enumerate(live_steps(options)):
        assert is_tied(model)
        from_input, _, _ = phi_of(input_embedding(model), logits, c, k)
        from_readout, _, _ = phi_of(readout_matrix(model), logits, c, k)
        assert from_input == from_readout
        assert ds.phi_input.values[step] == pytest.approx(from_input, rel=1e-5, abs=1e-9)
        assert ds.phi.values[step] == pytest.approx(from_readout, rel=1e-5, abs=1e-9)


def test_the_untied_model_records_its_input_geometry_from_the_input_matrix():
    options = RunOptions(model="tiny-neox", mode="full", optimizer="sgd", lr=0.3, steps=4)
    ds = run(options)
    for step, (model, logits, c, k) in enumerate(live_steps(options)):
        from_input, _, _ = phi_of(input_embedding(model), logits, c, k)
        assert ds.phi_input.values[step] == pytest.approx(from_input, rel=1e-5, abs=1e-9)
    assert not np.allclose(ds.phi.values, ds.phi_input.values)



@pytest.mark.parametrize("model", MODELS)
def test_under_full_fine_tuning_the_geometry_moves(run_of, model):
    ds = run_of(model, "full")
    assert np.abs(ds.attribution_geometry.values[:-1]).max() > 0


@pytest.mark.parametrize("model", MODELS)
def test_full_fine_tuning_changes_the_embedding_matrices(run_of, model):
    ds = run_of(model, "full")
    assert ds.attrs["embedding_sha256_end"] != ds.attrs["embedding_sha256_start"]
    assert ds.attrs["readout_sha256_end"] != ds.attrs["readout_sha256_start"]


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
