"""One fine-tuning run: one model, one context, one learning rate (THEORY.md
sections 1-5). Reads top to bottom: load, wrap for LoRA, build the optimizer, then
a loop in which ``train_step`` owns one step and calls the instrument.

The loss is -log p_c at the context's last position. Step 0 records the base model;
each later step records the state after one more update, so a run of T steps
logs T + 1 states. A non-finite value ends the run as ``diverged``; it is saved
like any other run and never raises.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from phantom_theory.jumps import JumpOptions
from phantom_theory.outcomes import OutcomeOptions

from ..contexts import get_context, tokenize_context
from ..models import LoadedModel, input_embedding, last_logits, load_model, readout_matrix
from .finish import finish_run
from .hashes import FrozenMatrices, StepHashes, tensor_sha256
from .instrument import Instrument
from .lora import trainable_model, trainable_parameters
from .memory import check_run_memory
from .optimizers import make_optimizer
from .options import RunOptions


def train_step(model, input_ids, target, optimizer, instrument, step: int) -> bool:
    """Measure the current state as ``step``, then take one update (unless
    ``optimizer`` is None). Returns False, without updating, once the loss is not
    finite (a non-finite weight reaches the logits, hence the loss)."""
    logits = last_logits(model, input_ids)[0]
    if instrument is not None:
        instrument.record(step, logits)
    loss = F.cross_entropy(logits[None].float(), target)
    if not torch.isfinite(loss):
        return False
    if optimizer is not None:
        loss.backward()
        try:
            optimizer.step()
        except RuntimeError as error:
            # A learning rate so large that the update itself overflows (Adam's
            # step size past the float range): the next state does not exist.
            if "overflow" not in str(error):
                raise
            return False
        optimizer.zero_grad(set_to_none=True)
    return True


def prepare(options: RunOptions, loaded: LoadedModel | None = None):
    """Load (or copy) the model, tokenize the context and make it trainable for the
    mode: (loaded, model, tokenized context, tie audit). A run that cannot fit in
    memory is refused before the model is loaded (runner.training.memory)."""
    memory = check_run_memory(options, loaded)
    if loaded is None:
        loaded = load_model(options.model, options.revision, options.dtype, options.device,
                            options.tie)
    else:
        loaded = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.info)
    context = tokenize_context(loaded.tokenizer, get_context(options.context), options.model)
    model, audit = trainable_model(loaded.model, options.mode, options.lora, options.seed)
    model.train(options.dropout)
    return loaded, model, context, {**audit, **memory}


def run(options: RunOptions, *, progress: bool = False, loaded: LoadedModel | None = None,
        outcome_options: OutcomeOptions = OutcomeOptions(),
        jump_options: JumpOptions = JumpOptions()):
    """Fine-tune once and return the annotated trajectory Dataset.

    ``loaded`` reuses an already loaded model (it is copied, never modified).
    """
    loaded, model, context, audit = prepare(options, loaded)
    optimizer = make_optimizer(trainable_parameters(model), options)
    frozen = options.mode == "lora"
    T = options.steps
    instrument = Instrument(model, context.correct_id, context.competitor_id, T,
                            options.geometry, frozen)
    frozen_matrices = FrozenMatrices(model) if frozen else None
    hashes = StepHashes(T, options.hash_interval) if frozen else None
    start_hashes = (tensor_sha256(input_embedding(model)), tensor_sha256(readout_matrix(model)))
    input_ids = torch.tensor([context.input_ids], device=options.device)
    target = torch.tensor([context.correct_id], device=options.device)

    bar = tqdm(total=T, disable=not progress, unit="step", leave=False,
               desc=f"{options.model} {options.context} {options.mode} lr={options.lr:g}")
    started = time.perf_counter()
    for step in range(T + 1):
        if hashes is not None and hashes.due(step):
            hashes.record(step, frozen_matrices.digests())
        if not train_step(model, input_ids, target, optimizer if step < T else None,
                          instrument, step):
            break
        bar.update(step < T)
    seconds = time.perf_counter() - started
    bar.close()

    steps = instrument.steps()
    if hashes is not None:
        steps.update(hashes.arrays())
    end_hashes = (tensor_sha256(input_embedding(model)), tensor_sha256(readout_matrix(model)))
    timing = {"engine": "sequential", "wall_seconds": round(seconds, 4),
              "seconds_per_step": round(seconds / (T + 1), 6)}
    return finish_run(options, loaded.info, context, audit, steps, start_hashes, end_hashes,
                      timing, outcome_options, jump_options)
