"""Stage 2, contexts: the near-synonym pool and tokenizing it in context (``pool``),
and screening and selecting contexts for a model (``selection``)."""

from .pool import (
    Context,
    TokenizedContext,
    get_context,
    load_contexts,
    read_contexts,
    selected_contexts,
    tokenize_context,
)

__all__ = ["Context", "TokenizedContext", "get_context", "load_contexts", "read_contexts",
           "selected_contexts", "tokenize_context"]
