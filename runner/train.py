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
import inspect
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from phantom_theory.errors import PhantomError
from phantom_theory.jumps import JumpOptions
from phantom_theory.outcomes import OutcomeOptions
from phantom_theory.provenance import options_attrs, provenance
from phantom_theory.trajectory import annotate, build_trajectory

from .audit import WeightHashes, tensor_sha256
from .contexts import get_context, tokenize_context
from .instrument import Instrument
from .models import LoadedModel, input_embedding, is_tied, load_model, readout_matrix

MODES = ("full", "lora")
OPTIMIZERS = ("sgd", "adamw")

# LoRA target modules by config.model_type: peft's own defaults, written out so
# that they are documented and recorded rather than implied.
LORA_TARGETS = {
    "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "llama": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "gemma3_text": ("q_proj", "v_proj"),
    "gemma3": ("q_proj", "v_proj"),
}


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines one run; the CLI fills it and the dataset records it."""

    model: str = "tiny-gpt2"
    context: str = "shame-guilt"
    mode: str = "full"                 # "full" or "lora"
    optimizer: str = "adamw"           # "sgd" (plain gradient descent) or "adamw"
    lr: float = 1e-3
    steps: int = 200                   # T
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    revision: str | None = None
    geometry: str = "readout"          # which matrix supplies the unit rows u_i
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] | None = None   # None: LORA_TARGETS[model_type]
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    dropout: bool = False
    hash_interval: int = 1             # under LoRA, hash E and U every this many steps
    tie: str = "auto"                  # registry models stored untied: "stored" or "readout"

    def __post_init__(self):
        checks = [
            (self.mode in MODES, f"mode must be one of {MODES}, not {self.mode!r}"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}"),
            (np.isfinite(self.lr) and self.lr > 0, f"learning rate must be positive, not {self.lr}"),
            (self.steps > 0, f"steps must be a positive integer, not {self.steps}"),
            (self.geometry in ("readout", "input"),
             f"geometry must be 'readout' or 'input', not {self.geometry!r}"),
            (self.lora_rank > 0, f"LoRA rank must be positive, not {self.lora_rank}"),
            (self.hash_interval > 0, f"hash interval must be positive, not {self.hash_interval}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PhantomError(message)


def wrap_lora(model, options: RunOptions):
    """Wrap ``model`` in peft LoRA adapters; the embeddings stay frozen."""
    from peft import LoraConfig, get_peft_model

    family = model.config.model_type
    targets = options.lora_targets or LORA_TARGETS.get(family)
    if not targets:
        raise PhantomError(
            f"no default LoRA target modules for model type {family!r}; pass --lora-targets")
    config = LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=0.0,
                        target_modules=list(targets), fan_in_fan_out=family == "gpt2")
    return get_peft_model(model, config), tuple(targets)


def make_optimizer(params, options: RunOptions) -> torch.optim.Optimizer:
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr)
    return torch.optim.AdamW(params, lr=options.lr, betas=options.betas, eps=options.eps,
                             weight_decay=options.weight_decay)


def last_logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits at the last position, (batch, V)."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters or hasattr(model, "peft_config"):
        return model(input_ids=input_ids, logits_to_keep=1).logits[:, -1]
    return model(input_ids=input_ids).logits[:, -1]


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
    """Load (or copy) the model, tokenize the context and wrap for the mode."""
    if loaded is None:
        loaded = load_model(options.model, options.revision, options.dtype, options.device,
                            options.tie)
    else:
        loaded = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.info)
    context = tokenize_context(loaded.tokenizer, get_context(options.context), options.model)
    model = loaded.model
    audit = {"tied_base": int(is_tied(model))}
    torch.manual_seed(options.seed)
    if options.mode == "lora":
        model, targets = wrap_lora(model, options)
        audit["lora_targets"] = ",".join(targets)
    audit["tied_after_wrap"] = int(is_tied(model))
    audit["tie_preserved"] = int(audit["tied_base"] == audit["tied_after_wrap"])
    model.train(options.dropout)
    return loaded, model, context, audit


def run(options: RunOptions, *, progress: bool = False, loaded: LoadedModel | None = None,
        outcome_options: OutcomeOptions = OutcomeOptions(),
        jump_options: JumpOptions = JumpOptions()):
    """Fine-tune once and return the annotated trajectory Dataset.

    ``loaded`` reuses an already loaded model (it is copied, never modified).
    """
    loaded, model, context, audit = prepare(options, loaded)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, options)
    frozen = options.mode == "lora"
    T = options.steps
    instrument = Instrument(model, context.correct_id, context.competitor_id, T,
                            options.geometry, frozen)
    hashes = WeightHashes(model, T, options.hash_interval) if frozen else None
    start_hashes = (tensor_sha256(input_embedding(model)), tensor_sha256(readout_matrix(model)))
    input_ids = torch.tensor([context.input_ids], device=options.device)
    target = torch.tensor([context.correct_id], device=options.device)

    bar = tqdm(total=T, disable=not progress, unit="step", leave=False,
               desc=f"{options.model} {options.context} {options.mode} lr={options.lr:g}")
    started = time.perf_counter()
    for step in range(T + 1):
        if hashes is not None:
            hashes.record(step)
        if not train_step(model, input_ids, target, optimizer if step < T else None,
                          instrument, step):
            break
        bar.update(step < T)
    seconds = time.perf_counter() - started
    bar.close()

    steps = instrument.steps()
    if hashes is not None:
        steps.update(hashes.finish())
    end_hashes = (tensor_sha256(input_embedding(model)), tensor_sha256(readout_matrix(model)))
    timing = {"engine": "sequential", "wall_seconds": round(seconds, 4),
              "seconds_per_step": round(seconds / (T + 1), 6)}
    return trajectory(options, loaded.info, context, audit, steps, start_hashes, end_hashes,
                      timing, outcome_options, jump_options)


def trajectory(options: RunOptions, info, context, audit: dict, steps: dict,
               start_hashes, end_hashes, timing: dict,
               outcome_options: OutcomeOptions = OutcomeOptions(),
               jump_options: JumpOptions = JumpOptions()):
    """The annotated trajectory Dataset of a finished run, with its provenance."""
    attrs = {
        **provenance("torch", "transformers", "peft", "tokenizers", "safetensors"),
        **info.attrs(),
        **options_attrs("run", options),
        **audit,
        "device": str(options.device),
        "dtype": options.dtype,
        "torch_threads": torch.get_num_threads(),
        "context_sentence": context.context.sentence,
        "context_correct": context.context.correct,
        "context_competitor": context.context.competitor,
        "context_source": context.context.source,
        "input_ids": list(context.input_ids),
        "correct_id": context.correct_id,
        "competitor_id": context.competitor_id,
        "embedding_sha256_start": start_hashes[0],
        "readout_sha256_start": start_hashes[1],
        "embedding_sha256_end": end_hashes[0],
        "readout_sha256_end": end_hashes[1],
        **timing,
    }
    run_identity = dict(model=options.model, context=options.context, mode=options.mode,
                        optimizer=options.optimizer, lr=options.lr, seed=options.seed)
    ds = build_trajectory(steps, run_identity, attrs)
    return annotate(ds, outcome_options, jump_options)
