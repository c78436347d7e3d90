"""Registry models: pulling (download, assembly, hash, conversion), the per-file
record of the converted files and its checks (on load, and in full by `phantom models
verify`), and the errors for a hash mismatch, a missing cache, a corrupt file and a
swapped or edited cache entry. Offline: the downloads are replaced by wheels built
here around a GGUF written with gguf's own writer."""

import dataclasses
import hashlib
import json
import os
import shutil
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
    return _fake_registry(tmp_path, monkeypatch)


def _fake_registry(tmp_path, monkeypatch):
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    data = gguf_path.read_bytes()
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
    with pytest.raises(PhantomError, match="hf/model.safetensors of 9 bytes.*--force"):
        load_model("tiny-gguf")



# -- the per-file record of the converted files (issue 15, defect 5) ----------------

def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pulled_once(tmp_path_factory):
    """One pull of the fake registry model, for ``pulled`` to copy."""
    root = tmp_path_factory.mktemp("pulled")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _, downloader, _ = _fake_registry(root, monkeypatch)
        return gguf.pull("tiny-gguf", downloader=downloader)


@pytest.fixture
def pulled(fake_registry, pulled_once):
    """The fake registry model in this test's cache (a copy of one pull, its mtimes
    kept, so that its record holds): its converted folder."""
    target = catalog.entry_dir("tiny-gguf")
    shutil.copytree(pulled_once, target)
    return target / catalog.CONVERTED


def test_the_pull_records_the_hash_of_every_converted_file(pulled):
    meta = gguf.cached_metadata("tiny-gguf")
    on_disk = {p.name for p in pulled.iterdir()}
    assert set(meta["files"]) == on_disk >= {"config.json", "tokenizer.json", "model.safetensors"}
    for name, record in meta["files"].items():
        assert record["sha256"] == _sha256(pulled / name)
        assert record["bytes"] == (pulled / name).stat().st_size
    assert meta["files_recorded"].startswith("pull ")


def test_a_load_records_the_digest_of_the_files_it_loaded(pulled):
    manifest = "".join(f"{_sha256(pulled / n)}  {n}\n" for n in sorted(os.listdir(pulled)))
    extra = load_model("tiny-gguf").info.extra
    assert extra["converted_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    assert extra["safetensors_sha256"] == _sha256(pulled / "model.safetensors")


def _another_model_in(folder):
    """Swap the converted folder for a different (tiny) model's."""
    model = load_model("tiny-neox")
    shutil.rmtree(folder)
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)


def test_a_swapped_cache_entry_is_refused_naming_a_file(pulled, capsys):
    _another_model_in(pulled)
    with pytest.raises(PhantomError, match=r"cached 'tiny-gguf' .*hf/\w+.*models verify tiny-gguf"):
        load_model("tiny-gguf")
    from runner.cli import main

    assert main(["models", "verify", "tiny-gguf"]) == 2
    out = capsys.readouterr()
    assert "hf/config.json" in out.out and "MISMATCH" in out.out
    assert "do not match the record" in out.err


def _flip_a_weight_byte(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF          # inside the last tensor's bytes: same size, other weights
    path.write_bytes(bytes(data))


def test_edited_weights_are_refused_on_load_and_found_by_verify(pulled, capsys):
    weights = pulled / "model.safetensors"
    _flip_a_weight_byte(weights)
    with pytest.raises(PhantomError, match="hf/model.safetensors modified since it was recorded"):
        load_model("tiny-gguf")
    from runner.cli import main

    assert main(["models", "verify", "tiny-gguf"]) == 2
    lines = dict(line.split() [:2] for line in capsys.readouterr().out.splitlines()[:-1]
                 if line.startswith("hf/"))
    assert lines.pop("hf/model.safetensors") == "MISMATCH"
    assert set(lines.values()) == {"OK"}


def test_verify_rehashes_what_the_cheap_check_cannot_see(pulled):
    """An edit that keeps the size and the mtime passes the check on load (by
    design: it reads no bytes); the full verify finds it."""
    weights = pulled / "model.safetensors"
    stamp = weights.stat()
    _flip_a_weight_byte(weights)
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    load_model("tiny-gguf")
    assert dict(gguf.verify("tiny-gguf"))["hf/model.safetensors"] == "MISMATCH"


def test_an_edited_tokenizer_is_refused(pulled):
    path = pulled / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    tokenizer["model"]["vocab"]["Ġthe"], tokenizer["model"]["vocab"]["he"] = (
        tokenizer["model"]["vocab"]["he"], tokenizer["model"]["vocab"]["Ġthe"])
    path.write_text(json.dumps(tokenizer))
    with pytest.raises(PhantomError, match="hf/tokenizer.json"):
        load_model("tiny-gguf")
    assert dict(gguf.verify("tiny-gguf"))["hf/tokenizer.json"] == "MISMATCH"


def test_an_added_file_is_refused(pulled):
    (pulled / "pytorch_model.bin").write_bytes(b"weights from elsewhere")
    with pytest.raises(PhantomError, match="hf/pytorch_model.bin, which it was not pulled with"):
        load_model("tiny-gguf")
    assert dict(gguf.verify("tiny-gguf"))["hf/pytorch_model.bin"] == "UNEXPECTED"


def test_verify_prints_every_file_and_restamps_a_copied_cache(pulled, capsys):
    """Same bytes, new mtimes (a cache copied without -p): refused on load until
    verify has re-hashed the files, which then loads again."""
    for path in pulled.iterdir():
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(PhantomError, match="modified since it was recorded"):
        load_model("tiny-gguf")
    from runner.cli import main

    assert main(["models", "verify", "tiny-gguf"]) == 0
    out = capsys.readouterr().out
    for path in pulled.iterdir():
        assert f"hf/{path.name}" in out
    assert "OK (mtime re-recorded)" in out and "tiny.gguf" in out
    assert "files match the record" in out
    load_model("tiny-gguf")


def test_a_cache_pulled_before_the_records_gets_one_on_first_load(pulled, capsys):
    meta_path = pulled.parent / catalog.METADATA
    meta = json.loads(meta_path.read_text())
    recorded = meta.pop("files")
    del meta["files_recorded"]
    meta_path.write_text(json.dumps(meta))
    load_model("tiny-gguf")
    assert "trusted on first use" in capsys.readouterr().err
    meta = json.loads(meta_path.read_text())
    assert meta["files_recorded"].startswith("first load ")
    assert {n: r["sha256"] for n, r in meta["files"].items()} == {
        n: r["sha256"] for n, r in recorded.items()}
    _flip_a_weight_byte(pulled / "model.safetensors")   # and from now on it is checked
    with pytest.raises(PhantomError, match="hf/model.safetensors"):
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


@pytest.mark.real
@pytest.mark.slow
def test_qwen_1p5b_pulls_from_22_wheels_and_predicts_paris():
    """Needs the package registry, about 8 minutes and 10 GB of RAM on 2 CPU cores
    (pulled once into PHANTOM_HOME): Qwen2.5-Coder-1.5B from 22 wheels, its record,
    its tie audit, and its top-1 token after "The capital of France is". Outside
    `make test-real` and `make test-slow`; run it with `pytest -m "real and slow"`."""
    from runner.cli import main
    from runner.models import last_logits

    name = "qwen2.5-coder-1.5b"
    assert main(["models", "pull", name, "--quiet"]) == 0
    meta = gguf.cached_metadata(name)
    assert meta["gguf_sha256_verified"] == catalog.REGISTRY[name].gguf_sha256
    assert (meta["embedding_quantisation"], meta["readout_quantisation"]) == ("Q4_K", "Q6_K")
    assert meta["stored_tied"] == 0 and 0.995 < meta["row_cosine_median"] < 0.999
    assert meta["parameters"] == 1_543_714_304 + 151936 * 1536
    assert {status for _, status in gguf.verify(name)} == {"OK"}
    loaded = load_model(name)   # --tie auto: re-tied to the readout copy, as the 0.5B
    assert loaded.info.tied and loaded.info.extra["tie_mode"] == "readout"
    assert loaded.info.n_params == 1_543_714_304
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = int(last_logits(loaded.model, ids)[0].argmax())
    assert loaded.tokenizer.decode([top]) == " Paris"
