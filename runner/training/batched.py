"""Many runs of one model advancing together in one vectorised step.

The runs share the model, the mode, the optimizer and its settings. Each has its
own context, learning rate, seed and step budget, its own parameters (full
fine-tuning) or LoRA adapters, and its own optimizer state. One step is
``torch.func.vmap`` over ``functional_call`` of the model with stacked parameters;
the update is a handful of ``torch._foreach_*`` calls with a per-run learning rate,
written to match ``torch.optim.SGD`` and ``torch.optim.AdamW`` step for step.
Contexts of different lengths are right-padded: the model is causal, so the
padding never reaches the last real position, which is where the logits are read.

Runs join as soon as a position is free and leave when they finish; the batch
grows up to ``max_slots`` and shrinks when it runs out of work. A batch that runs
out of accelerator memory halves itself and restarts the runs it held.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from phantom_theory.errors import PhantomError
from phantom_theory.jumps import JumpOptions
from phantom_theory.outcomes import OutcomeOptions
from phantom_theory.schema import ARCH_DIMS, RUN_DIMS

from ..contexts import TokenizedContext, get_context, tokenize_context
from ..models import LoadedModel, input_embedding, is_tied, readout_matrix
from .finish import finish_run
from .hashes import FrozenMatrices, StepHashes, tensor_sha256
from .instrument import MATRICES, Recorder, frozen_geometry, other_geometry, pair_geometry
from .lora import trainable_model
from .memory import check_batch_memory
from .optimizers import BatchedOptimizer
from .options import RunOptions

# What differs between the runs of one batch: the run identity less what an
# architecture's batch shares (model, mode, optimizer), and the step budget.
PER_RUN = (*(d for d in RUN_DIMS if d not in ARCH_DIMS), "steps")


def batch_key(options: RunOptions) -> tuple:
    """What runs must share to advance in one batch: everything but PER_RUN."""
    return tuple((f.name, getattr(options, f.name)) for f in fields(options)
                 if f.name not in PER_RUN)


@dataclass
class Member:
    """A run in the batch."""

    options: RunOptions
    context: TokenizedContext
    slot: int                       # its slot in the recorder
    started: float
    step: int = 0                   # the state it records next
    done: bool = False
    hashes: StepHashes | None = None   # per-step digests of E and U (LoRA)


class BatchedEngine:
    """Runs every request handed to ``run`` through one vectorised model."""

    def __init__(self, template: RunOptions, loaded: LoadedModel, max_slots: int = 32,
                 outcome_options: OutcomeOptions = OutcomeOptions(),
                 jump_options: JumpOptions = JumpOptions(), chunk: int = 64, length: int = 1):
        if template.dropout:
            raise PhantomError("the batched engine needs dropout off; run such sweeps "
                               "with --engine sequential")
        self.template, self.loaded = template, loaded
        self.outcome_options, self.jump_options = outcome_options, jump_options
        # as many slots as fit in memory, and none at all when one run does not
        max_slots, memory = check_batch_memory(template, loaded.model, max_slots)
        self.max_slots = max_slots
        self.device = torch.device(template.device)
        # Full fine-tuning reads the base model's parameters only as the runs'
        # starting point (the stacked copies train); LoRA wraps a copy.
        base = loaded.model if template.mode == "full" else copy.deepcopy(loaded.model)
        self.model, self.audit = trainable_model(base, template.mode, template.lora,
                                                 template.seed)
        self.audit.update(memory)
        self.model.eval()

        named = dict(self.model.named_parameters())
        self.trainable = [n for n, p in named.items()
                          if template.mode == "full" or p.requires_grad]
        name_of = {id(p): n for n, p in named.items()}
        geometries = [template.geometry]
        if not is_tied(self.model):
            geometries.append(other_geometry(template.geometry))
        self.geometry_names = [name_of[id(MATRICES[g](self.model))] for g in geometries]
        self.embedding_name = name_of[id(input_embedding(self.model))]
        self.readout_name = name_of[id(readout_matrix(self.model))]
        U = readout_matrix(self.model)
        self.recorder = Recorder(max_slots, U.shape[0], U.shape[1], U.device, U.dtype,
                                 template.geometry, is_tied(self.model), chunk)
        self.frozen_matrices = FrozenMatrices(self.model) if template.mode == "lora" else None
        self.base_hashes = (tensor_sha256(input_embedding(self.model)), tensor_sha256(U))
        self._lora_init: dict[int, dict[str, torch.Tensor]] = {}
        self._contexts: dict[str, TokenizedContext] = {}
        self._step_fn = vmap(grad_and_value(self._loss, has_aux=True))
        self.members: list[Member | None] = []
        self.state: dict[str, torch.Tensor] = {}
        self._free_slots = list(range(max_slots))
        self._retry: deque[RunOptions] = deque()
        self.length = length   # inputs are right-padded to at least this many tokens
        self.optimizer = BatchedOptimizer(template)

    # -- the vectorised step ---------------------------------------------------------

    def _loss(self, params, input_ids, last, target):
        out = functional_call(
            self.model, params, (input_ids[None],),
            {"attention_mask": self._mask, "use_cache": False, "logits_to_keep": last[None]})
        logits = out.logits[0, 0]
        return F.cross_entropy(logits[None].float(), target[None]), logits

    def _forward_backward(self):
        params = {name: self.state[f"param/{name}"] for name in self.trainable}
        # torch has no vmap rule for the fused attention kernels and would loop over
        # the runs one by one; the math kernel is plain batched matrix products, in
        # the model's own precision.
        with sdpa_kernel(SDPBackend.MATH):
            grads, (loss, logits) = self._step_fn(params, self.state["input_ids"],
                                                  self.state["last"], self.state["target"])
        return grads, loss, logits

    def _step(self) -> None:
        grads, loss, logits = self._forward_backward()
        members = self.members
        geometries = None
        if self.template.mode == "full":
            geometries = [pair_geometry(self.state[f"param/{name}"], self.state["pair_index"])
                          for name in self.geometry_names]
        self.recorder.push([m.slot for m in members], [m.step for m in members], logits,
                           geometries)
        due = [m for m in members if m.hashes is not None and m.hashes.due(m.step)]
        if due:
            digests = self.frozen_matrices.digests()
            for m in due:
                m.hashes.record(m.step, digests)
        finite = torch.isfinite(loss).cpu().numpy()
        budget = np.array([m.step < m.options.steps for m in members])
        active = finite & budget
        with torch.no_grad():
            self.optimizer.step(self.state, self.trainable, grads,
                                torch.as_tensor(active, dtype=logits.dtype, device=self.device))
        for m, moves in zip(members, active, strict=True):
            if moves:
                m.step += 1
            else:
                m.done = True

    # -- membership ----------------------------------------------------------------

    def _context(self, context_id: str) -> TokenizedContext:
        if context_id not in self._contexts:
            self._contexts[context_id] = tokenize_context(
                self.loaded.tokenizer, get_context(context_id), self.template.model)
        return self._contexts[context_id]

    def _lora_start(self, seed: int) -> dict[str, torch.Tensor]:
        """The LoRA adapters a sequential run with ``seed`` starts from."""
        if seed not in self._lora_init:
            wrapped, _ = trainable_model(copy.deepcopy(self.loaded.model), "lora",
                                         self.template.lora, seed)
            wrapped.eval()
            named = dict(wrapped.named_parameters())
            self._lora_init[seed] = {n: named[n].detach().clone() for n in self.trainable}
        return self._lora_init[seed]

    def _initial_state(self, options: RunOptions, context: TokenizedContext) -> dict:
        """Every per-position tensor's value for a run starting now, shape (1, ...)."""
        named = dict(self.model.named_parameters())
        start = (self._lora_start(options.seed) if options.mode == "lora"
                 else {n: named[n].detach() for n in self.trainable})
        ids = list(context.input_ids) + [0] * (self.length - len(context.input_ids))
        state = {f"param/{n}": start[n][None].clone() for n in self.trainable}
        state.update(self.optimizer.initial_state({n: state[f"param/{n}"]
                                                   for n in self.trainable}))
        dtype = next(iter(start.values())).dtype
        state.update(
            lr=torch.tensor([options.lr], dtype=dtype, device=self.device),
            input_ids=torch.tensor([ids], device=self.device),
            last=torch.tensor([len(context.input_ids) - 1], device=self.device),
            target=torch.tensor([context.correct_id], device=self.device),
            pair_index=torch.tensor([[context.correct_id, context.competitor_id]],
                                    device=self.device),
        )
        return state

    def _pad_to(self, length: int) -> None:
        if length <= self.length:
            return
        if "input_ids" in self.state:
            ids = self.state["input_ids"]
            pad = torch.zeros(len(ids), length - self.length, dtype=ids.dtype, device=self.device)
            self.state["input_ids"] = torch.cat([ids, pad], dim=1)
        self.length = length

    def _admit(self, options: RunOptions) -> None:
        if batch_key(options) != batch_key(self.template):
            raise ValueError("a run that does not belong to this batch")
        context = self._context(options.context)
        self._pad_to(len(context.input_ids))
        slot = self._free_slots.pop()
        frozen = (frozen_geometry(self.model, context.correct_id, context.competitor_id,
                                  self.template.geometry)
                  if options.mode == "lora" else None)
        self.recorder.start(slot, context.correct_id, context.competitor_id, options.steps,
                            frozen)
        hashes = (StepHashes(options.steps, self.template.hash_interval)
                  if options.mode == "lora" else None)
        member = Member(options, context, slot, time.perf_counter(), hashes=hashes)
        initial = self._initial_state(options, context)
        if None in self.members:
            position = self.members.index(None)
            self.members[position] = member
            for key, value in initial.items():
                self.state[key][position] = value[0]
        else:
            self.members.append(member)
            self.state = {key: torch.cat([self.state[key], value]) if self.state else value
                          for key, value in initial.items()}

    def _fill(self, next_request) -> None:
        while sum(m is not None for m in self.members) < self.max_slots:
            options = self._retry.popleft() if self._retry else next_request()
            if options is None:
                return
            self._admit(options)

    def _compact(self) -> None:
        keep = [i for i, m in enumerate(self.members) if m is not None]
        if len(keep) == len(self.members):
            return
        self.members = [self.members[i] for i in keep]
        if not keep:
            self.state = {}
            return
        index = torch.tensor(keep, device=self.device)
        self.state = {key: value.index_select(0, index) for key, value in self.state.items()}

    def _retire(self, on_finish) -> None:
        for position, member in enumerate(self.members):
            if member is None or not member.done:
                continue
            steps = self.recorder.finish(member.slot)
            self._free_slots.append(member.slot)
            if member.hashes is not None:
                steps.update(member.hashes.arrays())
                digests = self.frozen_matrices.digests()
                end_hashes = (digests["embedding_sha256"], digests["readout_sha256"])
            else:
                end_hashes = tuple(tensor_sha256(self.state[f"param/{name}"][position])
                                   for name in (self.embedding_name, self.readout_name))
            seconds = time.perf_counter() - member.started
            timing = {"engine": "batched", "batch_slots": self.max_slots,
                      "wall_seconds": round(seconds, 4),
                      "seconds_per_step": round(seconds / (member.options.steps + 1), 6)}
            ds = finish_run(member.options, self.loaded.info, member.context, self.audit, steps,
                            self.base_hashes, end_hashes, timing, self.outcome_options,
                            self.jump_options)
            self.members[position] = None
            on_finish(member.options, ds)

    def _shrink_after_oom(self) -> None:
        """Out of accelerator memory: restart the held runs in a batch half as wide."""
        if self.max_slots == 1:
            raise PhantomError(f"one run of {self.template.model} does not fit in the memory of "
                               f"{self.template.device}; use a smaller dtype or another device")
        for member in self.members:
            if member is not None:
                self.recorder.finish(member.slot)
                self._free_slots.append(member.slot)
                self._retry.append(member.options)
        self.members, self.state = [], {}
        self.max_slots = max(1, self.max_slots // 2)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def _mask(self) -> torch.Tensor:
        if getattr(self, "_mask_cache", None) is None or self._mask_cache.shape[1] != self.length:
            self._mask_cache = torch.ones(1, self.length, dtype=torch.long, device=self.device)
        return self._mask_cache

    def run(self, next_request, on_finish) -> None:
        """Advance runs until ``next_request()`` has nothing more and every run held
        has finished. ``on_finish(options, dataset)`` receives each finished run;
        it may make new requests available to ``next_request``."""
        while True:
            self._fill(next_request)
            self._compact()
            if not self.members:
                return
            try:
                self._step()
            except torch.OutOfMemoryError:
                self._shrink_after_oom()
                continue
            self._retire(on_finish)


def run_batched(requests, loaded: LoadedModel, max_slots: int = 32, **engine_options):
    """Run a fixed list of requests (all of one batch key) and return their datasets
    in request order."""
    requests = list(requests)
    pending = deque(requests)
    results = {}
    engine = BatchedEngine(requests[0], loaded, max_slots, **engine_options)
    engine.run(lambda: pending.popleft() if pending else None,
               lambda options, ds: results.__setitem__(id(options), ds))
    return [results[id(options)] for options in requests]
