"""phantom-theory runner: model loading, contexts, the fine-tuning loop and dataset writing.

``runner`` imports ``phantom_theory``; never the other way round.
"""

from .models import LoadedModel, ModelInfo, input_embedding, is_tied, load_model, readout_matrix
from .train import RunOptions, run

__all__ = ["LoadedModel", "ModelInfo", "RunOptions", "input_embedding", "is_tied", "load_model",
           "readout_matrix", "run"]
