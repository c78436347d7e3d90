"""Stage 2, contexts: the near-synonym pool and tokenizing it in context (``pool``),
screening and selecting contexts for a model (``selection``), and the crossed set,
the same contexts on every model, oriented per model (``crossed``)."""

from .crossed import CrossedSet, held_out_contexts, read_crossed
from .pool import (
    Context,
    TokenizedContext,
    get_context,
    load_contexts,
    read_contexts,
    selected_contexts,
    tokenize_context,
)

__all__ = ["Context", "CrossedSet", "TokenizedContext", "get_context", "held_out_contexts",
           "load_contexts", "read_contexts", "read_crossed", "selected_contexts",
           "tokenize_context"]
