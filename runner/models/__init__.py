"""Stage 1, models: every name the toolkit knows (``catalog``), loading any of them
the same way (``loading``), the built-in tiny models (``tiny``) and the real models
pulled as GGUF from PyPI (``gguf``)."""

from .catalog import KNOWN_HUB_MODELS, LORA_TARGETS, REGISTRY, TINY_MODELS, resolve
from .loading import (
    LoadedModel,
    ModelInfo,
    input_embedding,
    is_tied,
    last_logits,
    load_model,
    readout_matrix,
    retie_to_readout,
)

__all__ = ["KNOWN_HUB_MODELS", "LORA_TARGETS", "REGISTRY", "TINY_MODELS", "LoadedModel",
           "ModelInfo", "input_embedding", "is_tied", "last_logits", "load_model",
           "readout_matrix", "resolve", "retie_to_readout"]
