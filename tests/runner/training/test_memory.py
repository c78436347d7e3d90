"""Memory sizing: the model's shape read without its weights, the footprint's terms,
and the refusal of a run (or a batch) that cannot fit, before anything is loaded.
The machine's available memory is faked, so no real model is needed."""

import dataclasses
import json
import sys

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from runner.models import catalog, load_model
from runner.training import RunOptions, memory, run
from runner.training.lora import trainable_model, trainable_parameters
from tests.conftest import RUN, fails

GIB = 1 << 30
# Qwen2.5-Coder-1.5B-Instruct's architecture (the pulled config.json), tied as in its source
QWEN_1P5B = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936,
                 hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True)


@pytest.fixture
def available(monkeypatch):
    """available(n): the device reports n bytes free from now on."""
    def fake(n):
        monkeypatch.setattr(memory, "available_memory", lambda device: n)
    return fake


def _saved(model_name, folder):
    loaded = load_model(model_name)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return loaded.model


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-neox"])
def test_the_lora_adapter_count_is_what_peft_trains(model):
    options = RunOptions(model=model, mode="lora")
    shape = memory.shape_before_loading(options)
    wrapped, _ = trainable_model(load_model(model).model, "lora", options.lora, 0)
    assert shape.adapters == sum(p.numel() for p in trainable_parameters(wrapped))


def test_the_shape_from_the_config_alone_is_the_loaded_models(tmp_path):
    model = _saved("tiny-neox", tmp_path)
    options = RunOptions(model=str(tmp_path))
    assert memory.shape_before_loading(options) == memory.model_shape(model, options)
    assert memory.shape_before_loading(options).parameters == sum(
        p.numel() for p in model.parameters())


def test_a_retied_registry_model_holds_both_copies_only_while_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANTOM_HOME", str(tmp_path))
    entry = dataclasses.replace(catalog.REGISTRY["qwen2.5-coder-0.5b"], name="tiny-untied")
    monkeypatch.setitem(catalog.REGISTRY, "tiny-untied", entry)
    model = _saved("tiny-neox", catalog.entry_dir("tiny-untied") / catalog.CONVERTED)
    V, d = model.get_output_embeddings().weight.shape
    retied = memory.shape_before_loading(RunOptions(model="tiny-untied"))   # auto: readout
    stored = memory.shape_before_loading(RunOptions(model="tiny-untied", tie="stored"))
    assert retied.stored == stored.stored == stored.parameters == retied.parameters + V * d
    assert retied.geometry == V * d and stored.geometry == 2 * V * d
    options = RunOptions(model="tiny-untied", mode="full", optimizer="sgd")
    assert memory.footprint(retied, options).load_peak - memory.PROCESS_OVERHEAD == 4 * stored.stored


def test_the_1p5b_fits_full_sgd_but_not_full_adamw_in_24_gib(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN_1P5B))

    def estimate(mode, optimizer, dtype="float32"):
        options = RunOptions(model=str(tmp_path), mode=mode, optimizer=optimizer, dtype=dtype)
        return memory.shape_before_loading(options), memory.footprint(
            memory.shape_before_loading(options), options)

    shape, sgd = estimate("full", "sgd")
    assert shape.parameters == 1_543_714_304 and shape.largest == 151936 * 1536
    _, adamw = estimate("full", "adamw")
    # AdamW adds exactly two moments per parameter and one temporary of the largest tensor
    assert adamw.total - sgd.total == 2 * 4 * shape.parameters + 4 * shape.largest
    assert sgd.weights == sgd.gradients == 4 * shape.parameters      # ~5.75 GiB each
    assert 12 * GIB < sgd.total < 16 * GIB and adamw.total > 24 * GIB
    _, lora = estimate("lora", "adamw")
    assert lora.total < 9 * GIB and lora.optimizer == 2 * 4 * shape.adapters
    assert estimate("full", "sgd", "float64")[1].weights == 2 * sgd.weights


def test_a_run_that_cannot_fit_is_refused_before_loading(available, monkeypatch):
    import runner.training.loop as loop

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loop, "load_model", never)
    available(1 << 20)
    with pytest.raises(PhantomError) as error:
        run(RunOptions(model="tiny-gpt2", mode="full", optimizer="adamw", steps=1))
    message = str(error.value)
    assert "\n" not in message
    for fragment in ("needs about 1.0 GiB more", "cpu has 0.0 GiB available", "--mode lora",
                     "--optimizer sgd", "a GPU (--device cuda)", "--memory-check off"):
        assert fragment in message


def test_the_refusal_is_at_the_estimate_and_the_estimate_is_recorded(available):
    options = RunOptions(model="tiny-gpt2", context="start-begin", mode="lora", steps=2)
    estimate = memory.footprint(memory.shape_before_loading(options), options)
    available(estimate.needed - 1)
    with pytest.raises(PhantomError, match="needs about"):
        run(options)
    available(estimate.needed)
    ds = run(options)
    assert ds.attrs["memory_estimate_bytes"] == estimate.total
    assert ds.attrs["memory_available_bytes"] == estimate.needed
    assert ds.attrs["run_memory_check"] == "on"


def test_memory_check_off_runs_anyway_and_records_it(available):
    available(1 << 20)
    ds = run(RunOptions(model="tiny-gpt2", context="start-begin", mode="lora", steps=2,
                        memory_check="off"))
    assert ds.attrs["run_memory_check"] == "off"
    assert ds.attrs["memory_needed_bytes"] > ds.attrs["memory_available_bytes"] == 1 << 20


def test_a_reused_model_counts_its_copy(available):
    """run(loaded=...) deep-copies the model: one copy is resident, one is to come."""
    loaded = load_model("tiny-neox")
    options = RunOptions(model="tiny-neox", context="start-begin", mode="full",
                         optimizer="sgd", steps=1)
    shape = memory.model_shape(loaded.model, options)
    ds = run(options, loaded=loaded)
    fresh = memory.footprint(shape, options)
    assert ds.attrs["memory_estimate_bytes"] == fresh.total + 4 * shape.parameters
    assert ds.attrs["memory_needed_bytes"] == fresh.total - memory.PROCESS_OVERHEAD


def test_the_memory_check_flag_takes_on_or_off(capsys, tmp_path):
    fails(capsys, [*RUN, "--memory-check", "maybe", "--out", str(tmp_path / "r.nc")],
          "memory check must be 'on' or 'off'")


def test_a_batch_keeps_the_slots_that_fit_and_its_runs_do_not_change(available):
    from runner.training.batched import run_batched

    loaded = load_model("tiny-neox")
    requests = [RunOptions(model="tiny-neox", context="start-begin", mode="full",
                           optimizer="adamw", lr=lr, steps=3) for lr in (1e-3, 1e-2, 1e-1)]
    shape = memory.model_shape(loaded.model, requests[0])

    def needed(slots):
        return memory.footprint(shape, requests[0], slots=slots, resident_copies=1).needed

    wide = run_batched(requests, loaded, max_slots=3)
    available(needed(2))
    narrow = run_batched(requests, loaded, max_slots=3)
    assert {ds.attrs["memory_batch_slots"] for ds in narrow} == {2}
    assert {ds.attrs["batch_slots"] for ds in narrow} == {2}
    for a, b in zip(wide, narrow, strict=True):
        np.testing.assert_allclose(a.margin.values, b.margin.values, rtol=1e-5, atol=1e-6)
    available(needed(1) - 1)
    with pytest.raises(PhantomError, match="one batched run of tiny-neox .* needs about"):
        run_batched(requests, loaded, max_slots=3)


def test_available_memory_falls_back_to_proc_meminfo(monkeypatch):
    with_psutil = memory.available_memory("cpu")
    monkeypatch.setitem(sys.modules, "psutil", None)     # import psutil raises ImportError
    assert abs(memory.available_memory("cpu") - with_psutil) < GIB
