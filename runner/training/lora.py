"""Making a model trainable for a mode: full fine-tuning (every parameter) or LoRA
adapters (peft; the embeddings stay frozen), with the tie audit. This is the only
place a model is wrapped in LoRA: the sequential loop, the batched engine and the
quantities at initialisation all call ``trainable_model``.

peft can untie tied weights while wrapping; the audit records the tie before and
after, so a run whose tie was broken says so (THEORY.md section 5).
"""

from __future__ import annotations

import torch

from phantom_theory.errors import PhantomError

from ..models import LORA_TARGETS, is_tied
from .options import LoraOptions


def wrap_lora(model, lora: LoraOptions, seed: int):
    """(model wrapped in LoRA adapters, target modules): the adapters' random
    initialisation is seeded with ``seed``."""
    from peft import LoraConfig, get_peft_model

    family = model.config.model_type
    targets = lora.targets or LORA_TARGETS.get(family)
    if not targets:
        raise PhantomError(f"no default LoRA target modules for model type {family!r}; give "
                           "them with --lora-targets (comma-separated module names)")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise PhantomError(f"LoRA target module(s) {missing} do not exist in {family} models; "
                           f"choose from module names such as "
                           f"{', '.join(sorted(n for n in names if n)[:12])}")
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=0.0,
                        target_modules=list(targets), fan_in_fan_out=family == "gpt2")
    torch.manual_seed(seed)
    return get_peft_model(model, config), tuple(targets)


def trainable_model(model, mode: str, lora: LoraOptions, seed: int):
    """(model ready to train in ``mode``, tie audit). Full fine-tuning trains every
    parameter of ``model`` itself; LoRA wraps it (the base weights frozen)."""
    audit = {"tied_base": int(is_tied(model))}
    torch.manual_seed(seed)   # also seeds dropout, where a run turns it on
    if mode == "lora":
        model, targets = wrap_lora(model, lora, seed)
        audit["lora_targets"] = ",".join(targets)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    audit["tied_after_wrap"] = int(is_tied(model))
    audit["tie_preserved"] = int(audit["tied_base"] == audit["tied_after_wrap"])
    return model, audit


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters an optimizer moves."""
    return [p for p in model.parameters() if p.requires_grad]
