"""Stage 3, training: what defines a run (``options``), making a model trainable
for its mode with the tie audit (``lora``), the optimizers (``optimizers``), the
fine-tuning loop (``loop``), the per-step instrument (``instrument``), the weight
hashes that prove frozen geometry (``hashes``), many runs at once (``batched``),
and finishing a run into its trajectory Dataset (``finish``)."""

from .loop import run
from .options import MODES, OPTIMIZERS, LoraOptions, RunOptions

__all__ = ["MODES", "OPTIMIZERS", "LoraOptions", "RunOptions", "run"]
