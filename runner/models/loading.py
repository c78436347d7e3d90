"""Model loading: one function for a built-in tiny model, a registry model, a known
hub model, a hub id or a local directory, with the same behaviour for all of them.

Real models load through ``AutoModelForCausalLM.from_pretrained`` by id (or path)
and revision, from safetensors only, never with remote code. The accessors below
give the input embedding E and the readout matrix U of any loaded model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from phantom_theory.errors import PhantomError

from .catalog import REGISTRY, TIE_MODES, TINY_MODELS, resolve

DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelInfo:
    """Where a model came from and what it is; written into every dataset."""

    name: str                 # what the user asked for
    source: str               # "builtin", "hub" or "local"
    location: str             # hub id or directory
    revision: str             # hub revision, or a weights digest for built-in models
    architecture: str         # transformers class
    family: str               # config.model_type
    tied: bool                # readout and input embedding are one tensor
    n_params: int
    extra: dict = field(default_factory=dict)   # source-specific provenance

    def attrs(self) -> dict:
        """The info as dataset attributes: model_<field> for every field and every
        ``extra`` entry, ``tied`` stored as 0/1."""
        attrs = {f"model_{key}": value for key, value in vars(self).items() if key != "extra"}
        attrs["model_tied"] = int(self.tied)
        attrs.update({f"model_{key}": value for key, value in self.extra.items()})
        return attrs


@dataclass
class LoadedModel:
    """A loaded model, its tokenizer and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    info: ModelInfo


def input_embedding(model) -> torch.Tensor:
    """E (V x d): the input embedding matrix (``wte`` / ``embed_in``)."""
    return model.get_input_embeddings().weight


def readout_matrix(model) -> torch.Tensor:
    """U (V x d): the readout matrix (``lm_head`` / ``embed_out``)."""
    return model.get_output_embeddings().weight


def is_tied(model) -> bool:
    """True when the readout and the input embedding share storage."""
    E, U = input_embedding(model), readout_matrix(model)
    return E is U or (E.data_ptr() == U.data_ptr() and E.shape == U.shape)


def last_logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits at the last position, (batch, V)."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters or hasattr(model, "peft_config"):
        return model(input_ids=input_ids, logits_to_keep=1).logits[:, -1]
    return model(input_ids=input_ids).logits[:, -1]


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise PhantomError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _info(name, source, location, revision, model, extra=None) -> ModelInfo:
    return ModelInfo(
        name=name, source=source, location=str(location), revision=revision,
        architecture=type(model).__name__, family=model.config.model_type,
        tied=is_tied(model), n_params=sum(p.numel() for p in model.parameters()),
        extra=extra or {},
    )


def _from_pretrained(location: str, revision: str | None, dtype: torch.dtype, name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(revision=revision, trust_remote_code=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            location, use_safetensors=True, dtype=dtype, **kwargs)
    except OSError as error:
        raise PhantomError(
            f"cannot load model {name!r} from {location!r}: {str(error).splitlines()[0]} "
            "(the Hugging Face hub needs network access; built-in models: "
            f"{', '.join(TINY_MODELS)})"
        ) from None
    return model, tokenizer


def retie_to_readout(model) -> None:
    """Make the input embedding the readout matrix itself (one tensor, tied)."""
    model.get_input_embeddings().weight = model.get_output_embeddings().weight
    model.config.tie_word_embeddings = True


def load_model(name: str, revision: str | None = None, dtype: str = "float32",
               device: str = "cpu", tie: str = "auto") -> LoadedModel:
    """Load ``name`` for fine-tuning, in eval mode (dropout off) on ``device``.

    ``tie`` matters for registry models stored untied although their source is
    tied: "readout" ties the input embedding to the readout copy, "stored" keeps
    the two copies, "auto" takes the registry's default."""
    from .gguf import cached_metadata, provenance_of

    if tie not in TIE_MODES:
        raise PhantomError(f"tie must be one of {TIE_MODES}, not {tie!r}")
    torch_dtype = _dtype(dtype)
    source, location = resolve(name)
    if source == "registry":
        if revision not in (None, "registry"):
            raise PhantomError(f"registry model {name!r} has no revisions; drop --revision")
        meta = cached_metadata(name)   # a clear error when it was never pulled
        model, tokenizer = _from_pretrained(location, None, torch_dtype, name)
        tie = REGISTRY[name].default_tie if tie == "auto" else tie
        if tie == "readout" and not is_tied(model):
            retie_to_readout(model)
        info = _info(name, source, location, f"gguf-sha256:{meta['gguf_sha256_verified'][:16]}",
                     model, provenance_of(meta, tie))
    elif source == "builtin":
        if revision not in (None, "builtin"):
            raise PhantomError(f"built-in model {name!r} has no revisions; drop --revision")
        from .tiny import build_tiny

        model, tokenizer, digest = build_tiny(name)
        model = model.to(torch_dtype)
        info = _info(name, source, location, f"builtin-sha256:{digest[:16]}", model)
    else:
        revision = revision or ("main" if source == "hub" else "local")
        model, tokenizer = _from_pretrained(
            location, None if source == "local" else revision, torch_dtype, name)
        info = _info(name, source, location, revision, model)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as error:
        raise PhantomError(f"cannot move the model to device {device!r}: {error}") from None
    return LoadedModel(model.eval(), tokenizer, info)
