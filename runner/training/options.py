"""What defines one run (``RunOptions``) and its LoRA adapters (``LoraOptions``,
shared with the quantities at initialisation, so that G0 and lambda0 are measured
over the same parameters the runs train)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from phantom_theory.errors import PhantomError

MODES = ("full", "lora")
# The optimizers a run can use; runner.training.optimizers implements each one three
# ways (torch.optim for a single run, a batched update, the first-step direction).
OPTIMIZERS = ("sgd", "adamw")
DTYPES = ("float32", "float64", "bfloat16", "float16")
GEOMETRIES = ("readout", "input")
TIE_MODES = ("auto", "stored", "readout")
MAX_STEPS = 1_000_000   # a run's buffers are O(T): a bound, not a guess at 15 GiB
MAX_SEED = 2**63 - 1    # torch.manual_seed takes a 64-bit integer


def _require(checks) -> None:
    for ok, message in checks:
        if not ok:
            raise PhantomError(message)


@dataclass(frozen=True)
class LoraOptions:
    """LoRA adapters: rank, alpha (the update is scaled by alpha / rank) and the
    target modules (None: the catalog's default for the model type)."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha / r)"})
    targets: tuple[str, ...] | None = field(
        default=None, metadata={"help": "module names to adapt (default: per model type)"})

    def __post_init__(self):
        _require([
            (self.rank > 0, f"the LoRA rank must be a positive integer, not {self.rank}"),
            (math.isfinite(self.alpha) and self.alpha > 0,
             f"the LoRA alpha must be a positive number, not {self.alpha}"),
            (self.targets is None or (len(self.targets) > 0 and all(self.targets)),
             f"the LoRA targets must be module names, not {self.targets!r}"),
        ])


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines one run; the CLI fills it and the dataset records it."""

    model: str = field(default="tiny-gpt2", metadata={
        "help": "built-in (tiny-gpt2, tiny-neox, ...), registry model, hub id or local folder"})
    context: str = field(default="shame-guilt",
                         metadata={"help": "context id (`phantom contexts list`)"})
    mode: str = field(default="full", metadata={"help": "full or lora"})
    optimizer: str = field(default="adamw", metadata={"help": "sgd or adamw"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate (> 0)"})
    steps: int = field(default=200, metadata={"help": "number of updates T (> 0)"})
    seed: int = field(default=0, metadata={"help": "seed of the LoRA initialisation"})
    dtype: str = field(default="float32", metadata={"help": ", ".join(DTYPES)})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    revision: str | None = field(default=None,
                                 metadata={"help": "hub revision (branch, tag or commit)"})
    geometry: str = field(default="readout", metadata={
        "help": "matrix whose rows define the overlaps: readout or input"})
    lora: LoraOptions = LoraOptions()
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (>= 0)"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    dropout: bool = field(default=False, metadata={"help": "train with dropout on"})
    hash_interval: int = field(default=1, metadata={
        "help": "under LoRA, hash the embedding matrices every N steps"})
    tie: str = field(default="auto", metadata={
        "help": "registry models stored untied: readout, stored or auto (the registry's)"})
    memory_check: str = field(default="on", metadata={
        "help": "on: refuse a run whose estimated memory exceeds what is available "
                "(runner.training.memory); off: try anyway"})

    def __post_init__(self):
        _require([
            (isinstance(self.model, str) and self.model.strip() != "",
             "the model name is empty; give a built-in model such as tiny-gpt2, a registry "
             "model, a hub id or a local folder"),
            (self.mode in MODES, f"mode must be one of {MODES}, not {self.mode!r}"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}"),
            (math.isfinite(self.lr) and self.lr > 0,
             f"learning rate must be positive, not {self.lr}"),
            (0 < self.steps <= MAX_STEPS,
             f"steps must be an integer from 1 to {MAX_STEPS:,}, not {self.steps}"),
            (0 <= self.seed <= MAX_SEED,
             f"seed must be an integer from 0 to 2**63 - 1, not {self.seed}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, not {self.dtype!r}"),
            (self.geometry in GEOMETRIES,
             f"geometry must be 'readout' or 'input', not {self.geometry!r}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight decay must be a number >= 0, not {self.weight_decay}"),
            (all(0 <= b < 1 for b in self.betas),
             f"AdamW betas must lie in [0, 1), not {self.betas}"),
            (math.isfinite(self.eps) and self.eps > 0, f"eps must be positive, not {self.eps}"),
            (self.hash_interval > 0,
             f"hash interval must be a positive integer, not {self.hash_interval}"),
            (self.tie in TIE_MODES, f"tie must be one of {TIE_MODES}, not {self.tie!r}"),
            (self.memory_check in ("on", "off"),
             f"memory check must be 'on' or 'off', not {self.memory_check!r}"),
        ])
