"""Will a run fit in memory? An estimate made before the model is loaded, compared
with the memory the device has available, so that a run too large for the machine
is refused with one line instead of being killed halfway through loading.

The estimate counts, in the run's dtype:

- weights: every copy of the model alive at once (a reused model is deep-copied;
  the batched engine's LoRA keeps a second copy and makes a third per seed);
- gradients: one per trainable parameter (every parameter under full fine-tuning,
  the adapters under LoRA);
- optimizer state: AdamW's two moments per trainable parameter, none for SGD;
- temporaries: the largest trainable tensor once for the backward pass (a tied
  matrix gets two gradients that are summed) and once more for AdamW's denominator;
- snapshots: the byte copies of E and U that prove LoRA leaves them untouched
  (runner.training.hashes);
- activations, roughly: every linear layer's input and output for ``TOKENS``
  positions, twice (forward and backward), and the logits;
- a fixed ``PROCESS_OVERHEAD`` for the interpreter, torch and the tokenizer (host
  memory only).

The model's shape comes from its configuration on torch's meta device (no weights
read), or from the model itself where it is already loaded. A registry model
stored untied but loaded retied (``--tie readout``) has both copies at load and one
after; the larger of the load and the training footprint is what must fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from phantom_theory.errors import PhantomError

from ..models import LORA_TARGETS, REGISTRY, input_embedding, readout_matrix, resolve
from .options import RunOptions

DTYPE_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
TOKENS = 64                       # positions of a context: more than any pool sentence
PROCESS_OVERHEAD = 1 << 30        # interpreter, torch, transformers, the tokenizer: ~0.4-1 GiB
GIB = 1 << 30


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a model, in numbers of elements."""

    stored: int          # parameters as loaded (both copies of an untied pair)
    parameters: int      # distinct parameters once loaded (a retied pair counted once)
    largest: int         # the largest parameter tensor
    adapters: int        # LoRA parameters for the run's LoRA options
    largest_adapter: int
    geometry: int        # elements of E, plus U when untied (the LoRA snapshots)
    activations: int     # per position: inputs and outputs of every linear layer
    vocab: int


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes of a run (or a batch of runs) on its device."""

    weights: int
    gradients: int
    optimizer: int
    temporaries: int
    snapshots: int
    activations: int
    overhead: int
    load_peak: int       # weights (and overhead) while loading, before a retie
    resident: int = 0    # already in memory when the check runs (a loaded model)

    @property
    def total(self) -> int:
        """Bytes the run holds at its peak: training or loading, whichever is larger."""
        training = (self.weights + self.gradients + self.optimizer + self.temporaries
                    + self.snapshots + self.activations + self.overhead)
        return max(training, self.load_peak)

    @property
    def needed(self) -> int:
        """Bytes still to be found: the total less what is already resident."""
        return max(self.total - self.resident, 0)

    def describe(self) -> str:
        """The estimate's terms, in GiB, for an error message."""
        terms = (("weights", self.weights), ("gradients", self.gradients),
                 ("optimizer moments", self.optimizer),
                 ("activations and temporaries",
                  self.activations + self.temporaries + self.snapshots),
                 ("process", self.overhead))
        return ", ".join(f"{name} {value / GIB:.1f}" for name, value in terms if value)


def _lora_targets(model, options: RunOptions) -> tuple[str, ...]:
    return tuple(options.lora.targets or LORA_TARGETS.get(model.config.model_type, ()))


def model_shape(model, options: RunOptions, stored: int | None = None) -> ModelShape:
    """The shape of ``model`` (real or on the meta device) for ``options``'s LoRA
    settings; ``stored`` is the parameter count at load when it differs (retied)."""
    E, U = input_embedding(model), readout_matrix(model)
    tied = E is U
    params = list(model.parameters())          # a shared tensor is listed once
    targets = set(_lora_targets(model, options))
    adapters, largest_adapter, activations = 0, 0, 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight is E or weight is U:
            continue
        activations += sum(weight.shape)       # a linear layer's input and output
        if name.rsplit(".", 1)[-1] in targets:
            per = options.lora.rank * sum(weight.shape)
            adapters += per
            largest_adapter = max(largest_adapter, per)
    count = sum(p.numel() for p in params)
    return ModelShape(
        stored=stored or count, parameters=count, largest=max(p.numel() for p in params),
        adapters=adapters, largest_adapter=largest_adapter,
        geometry=E.numel() + (0 if tied else U.numel()), activations=activations,
        vocab=U.shape[0])


def shape_before_loading(options: RunOptions) -> ModelShape | None:
    """The shape of ``options.model`` from its configuration alone (meta device), or
    None where the configuration cannot be read without loading (a hub model offline,
    a registry model not pulled: loading then raises its own error)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..models import retie_to_readout

    source, location = resolve(options.model)
    if source == "builtin":
        from ..models.tiny import build_tiny

        return model_shape(build_tiny(options.model)[0], options)
    try:
        config = AutoConfig.from_pretrained(   # a hub model only if already downloaded
            location, revision=options.revision if source == "hub" else None,
            trust_remote_code=False, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError):
        return None
    stored = sum(p.numel() for p in model.parameters())
    if source == "registry":
        tie = REGISTRY[options.model].default_tie if options.tie == "auto" else options.tie
        if tie == "readout" and input_embedding(model) is not readout_matrix(model):
            retie_to_readout(model)
    return model_shape(model, options, stored)


def footprint(shape: ModelShape, options: RunOptions, *, copies: int = 1, slots: int = 0,
              resident_copies: int = 0) -> Footprint:
    """The estimated bytes of a run of ``options`` on a model of ``shape``.

    ``copies`` full copies of the weights are alive (``resident_copies`` of them
    loaded already). ``slots`` > 0 is the batched engine: each slot holds its own
    trainable parameters, gradients and moments, and its stacked state is copied
    once when a run joins (torch.cat)."""
    b = DTYPE_BYTES[options.dtype]
    lora = options.mode == "lora"
    trainable = shape.adapters if lora else shape.parameters
    largest = shape.largest_adapter if lora else shape.largest
    moments = 2 if options.optimizer == "adamw" else 0
    host = 0 if options.device.startswith("cuda") else PROCESS_OVERHEAD
    weights = copies * shape.parameters * b
    activations = (2 * shape.activations * TOKENS + 4 * shape.vocab) * b
    if slots:
        per_slot = (2 * (1 + moments) * trainable + trainable) * b + activations
        gradients, optimizer, activations = 0, 0, slots * per_slot
        if not lora:
            weights = shape.parameters * b        # the stacked copies are the slots'
    else:
        gradients, optimizer = trainable * b, moments * trainable * b
    return Footprint(
        weights=weights, gradients=gradients, optimizer=optimizer,
        temporaries=largest * b * (1 + (moments > 0)),
        snapshots=shape.geometry * b if lora else 0,
        activations=activations, overhead=host,
        load_peak=(shape.stored + (copies - 1) * shape.parameters) * b + host,
        resident=resident_copies * shape.parameters * b + (host if resident_copies else 0))


def _meminfo_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def available_memory(device: str) -> int | None:
    """Bytes the device can still give: a CUDA device's free memory, or the host's
    available memory (psutil, else /proc/meminfo); None where neither can be read."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return _meminfo_available()
    except OSError:
        return None


def _refusal(options: RunOptions, estimate: Footprint, available: int, what: str) -> str:
    return (f"{what} of {options.model} ({options.mode}, {options.optimizer}, {options.dtype}) "
            f"needs about {estimate.needed / GIB:.1f} GiB more ({estimate.describe()} GiB) but "
            f"{options.device} has {available / GIB:.1f} GiB available; use --mode lora, "
            "--optimizer sgd, a GPU (--device cuda), or --memory-check off "
            "(memory_check = \"off\" in a sweep spec) to try anyway")


def _attrs(options: RunOptions, estimate: Footprint | None, available: int | None) -> dict:
    return {"memory_estimate_bytes": -1 if estimate is None else estimate.total,
            "memory_needed_bytes": -1 if estimate is None else estimate.needed,
            "memory_available_bytes": -1 if available is None else available}


def check_run_memory(options: RunOptions, loaded=None) -> dict:
    """Refuse a sequential run that cannot fit, before its model is loaded (or, with
    ``loaded``, before it is copied); the estimate as dataset attributes."""
    if loaded is None:
        shape = shape_before_loading(options)
        estimate = None if shape is None else footprint(shape, options)
    else:
        estimate = footprint(model_shape(loaded.model, options), options, copies=2,
                             resident_copies=1)
    available = available_memory(options.device)
    if (options.memory_check == "on" and estimate is not None and available is not None
            and estimate.needed > available):
        raise PhantomError(_refusal(options, estimate, available, "a run"))
    return _attrs(options, estimate, available)


def check_batch_memory(options: RunOptions, model, max_slots: int) -> tuple[int, dict]:
    """The batched engine's check, with its model loaded: the number of slots that
    fit (at most ``max_slots``; a PhantomError when not even one does) and the
    estimate of that batch as dataset attributes."""
    shape = model_shape(model, options)
    copies = 3 if options.mode == "lora" else 1   # LoRA: its own copy, and one per seed

    def estimate(slots):
        return footprint(shape, options, copies=copies, slots=slots, resident_copies=1)

    available = available_memory(options.device)
    slots = max_slots
    if options.memory_check == "on" and available is not None:
        while slots > 1 and estimate(slots).needed > available:
            slots -= 1
        if estimate(slots).needed > available:
            raise PhantomError(_refusal(options, estimate(1), available, "one batched run"))
    return slots, {**_attrs(options, estimate(slots), available), "memory_batch_slots": slots}
