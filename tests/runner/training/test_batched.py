"""The batched engine against the sequential runner."""

import dataclasses

import numpy as np
import pytest
import torch

from runner.models import load_model
from runner.training import RunOptions, run
from runner.training.batched import BatchedEngine, run_batched

CASES = [(model, mode, optimizer) for model in ("tiny-gpt2", "tiny-neox")
         for mode in ("full", "lora") for optimizer in ("sgd", "adamw")]
LRS = {"sgd": (1e-4, 1e-2, 0.3), "adamw": (1e-4, 3e-3, 3e-2)}
CONTEXTS = ("shame-guilt", "start-begin", "hard-difficult")


def requests(model, mode, optimizer, dtype, steps=20):
    return [RunOptions(model=model, context=context, mode=mode, optimizer=optimizer, lr=lr,
                       steps=steps, dtype=dtype, seed=seed)
            for seed, (context, lr) in enumerate(zip(CONTEXTS, LRS[optimizer], strict=True))]


@pytest.fixture(scope="module")
def loaded_models():
    return {(m, d): load_model(m, dtype=d) for m in ("tiny-gpt2", "tiny-neox")
            for d in ("float64", "float32")}


@pytest.mark.parametrize("model,mode,optimizer", CASES)
def test_batched_runs_equal_sequential_runs_in_float64(loaded_models, model, mode, optimizer):
    loaded = loaded_models[(model, "float64")]
    batch = requests(model, mode, optimizer, "float64")
    # Two slots for three runs: the third run joins when the first leaves.
    for options, batched in zip(batch, run_batched(batch, loaded, max_slots=2), strict=True):
        sequential = run(options, loaded=loaded)
        assert batched.outcome.item() == sequential.outcome.item()
        assert int(batched.flip_step) == int(sequential.flip_step)
        for name in ("loss", "p_correct", "phi", "signal", "drag", "attribution_readout",
                     "attribution_geometry"):
            np.testing.assert_allclose(batched[name], sequential[name], rtol=1e-8, atol=1e-12,
                                       err_msg=name)


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-neox"])
def test_batched_float32_runs_match_outcomes_and_early_steps(loaded_models, model):
    loaded = loaded_models[(model, "float32")]
    batch = requests(model, "full", "adamw", "float32")
    for options, batched in zip(batch, run_batched(batch, loaded), strict=True):
        sequential = run(options, loaded=loaded)
        assert batched.outcome.item() == sequential.outcome.item()
        np.testing.assert_allclose(batched.loss[:5], sequential.loss[:5], rtol=1e-4)


def test_lora_embeddings_stay_byte_identical_in_a_batch(loaded_models):
    for ds in run_batched(requests("tiny-gpt2", "lora", "adamw", "float32"),
                          loaded_models[("tiny-gpt2", "float32")]):
        assert set(ds.embedding_sha256.values) == {ds.attrs["embedding_sha256_start"]}
        assert ds.attrs["embedding_sha256_end"] == ds.attrs["embedding_sha256_start"]


def test_batched_and_sequential_hash_the_same_steps_at_an_interval(loaded_models):
    batch = [dataclasses.replace(o, hash_interval=3)
             for o in requests("tiny-neox", "lora", "sgd", "float32", steps=10)]
    loaded = loaded_models[("tiny-neox", "float32")]
    for batched, options in zip(run_batched(batch, loaded), batch, strict=True):
        sequential = run(options, loaded=loaded)
        for name in ("embedding_sha256", "readout_sha256"):
            hashed = batched[name].values != ""
            assert list(np.flatnonzero(hashed)) == [0, 3, 6, 9, 10]
            assert list(batched[name].values) == list(sequential[name].values)


def test_full_fine_tuning_in_a_batch_moves_each_runs_own_embedding(loaded_models):
    datasets = run_batched(requests("tiny-neox", "full", "sgd", "float32"),
                           loaded_models[("tiny-neox", "float32")])
    ends = {ds.attrs["readout_sha256_end"] for ds in datasets}
    assert len(ends) == 3 and datasets[0].attrs["readout_sha256_start"] not in ends


def test_a_batch_out_of_memory_halves_and_restarts_its_runs(loaded_models, monkeypatch):
    loaded = loaded_models[("tiny-neox", "float64")]
    batch = requests("tiny-neox", "full", "adamw", "float64") * 2
    batch = [RunOptions(**{**vars(o), "seed": i}) for i, o in enumerate(batch)]
    expected = run_batched(batch, loaded, max_slots=8)
    real = BatchedEngine._forward_backward
    widths = []

    def at_most_two(self):
        widths.append(len(self.members))
        if len(self.members) > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(self)

    monkeypatch.setattr(BatchedEngine, "_forward_backward", at_most_two)
    split = run_batched(batch, loaded, max_slots=8)
    assert max(widths) > 2 and widths[-1] <= 2
    for a, b in zip(expected, split, strict=True):
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-10)
