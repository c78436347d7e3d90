"""Finishing a run: its per-step columns, identity and provenance into the annotated
trajectory Dataset (THEORY.md section 9). Both engines end every run here."""

from __future__ import annotations

import torch

from phantom_theory.jumps import JumpOptions
from phantom_theory.options import options_attrs
from phantom_theory.outcomes import OutcomeOptions
from phantom_theory.provenance import provenance
from phantom_theory.trajectory import annotate, build_trajectory

from .options import RunOptions


def finish_run(options: RunOptions, info, context, audit: dict, steps: dict,
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
