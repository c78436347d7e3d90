"""phantom-theory runner: the stages that need a model, in the order the data flows.

1. ``models``    every model name (catalog), loading, tiny builders, GGUF pull/convert
2. ``contexts``  the near-synonym pool, tokenizing in context, per-model selection
3. ``training``  run options, LoRA wrapping, optimizers, the loop, the instrument,
                 weight hashes, the batched engine, finishing a run into its Dataset
4. ``sweep``     spec, store, driver and executors: eta_c and eta_max per group
5. ``at_init``   quantities at initialisation that need the model (m0, G0, lambda0)

The pure stages that follow (outcomes, jumps, the sweep table, the theories, the
predictions and the report) live in ``phantom_theory``. ``runner`` imports
``phantom_theory``; never the other way round.
"""

from .models import LoadedModel, ModelInfo, input_embedding, is_tied, load_model, readout_matrix
from .training import LoraOptions, RunOptions, run

__all__ = ["LoadedModel", "LoraOptions", "ModelInfo", "RunOptions", "input_embedding", "is_tied",
           "load_model", "readout_matrix", "run"]
