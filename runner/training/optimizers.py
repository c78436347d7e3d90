"""The optimizers, each written three ways that must agree.

- ``make_optimizer``: the ``torch.optim`` optimizer of a single run;
- ``BatchedOptimizer``: the same update for many stacked runs at once, each with its
  own learning rate and step count, in a few ``torch._foreach_*`` calls. It mirrors
  ``torch.optim.SGD`` and ``torch.optim.AdamW`` by hand (tests/runner/training/test_optimizers.py
  checks it step for step against them);
- ``first_step_direction``: the direction of the first update per unit learning
  rate, from which the quantities at initialisation take G0 (THEORY.md section 7).

Adding an optimizer means a name in ``options.OPTIMIZERS`` and a branch in each
of the three, here.
"""

from __future__ import annotations

import torch

from .options import OPTIMIZERS, RunOptions


def make_optimizer(params, options: RunOptions) -> torch.optim.Optimizer:
    """The torch optimizer of one run."""
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, betas=options.betas, eps=options.eps,
                                 weight_decay=options.weight_decay)
    raise ValueError(f"no torch optimizer for {options.optimizer!r}; known: {OPTIMIZERS}")


def first_step_direction(grad: torch.Tensor, optimizer: str, eps: float = 1e-8) -> torch.Tensor:
    """The first update of ``optimizer`` per unit learning rate, from the gradient
    of the loss: -g for GD; -g / (|g| + eps) for Adam (its bias-corrected first
    step, m_hat = g and v_hat = g^2), in float64."""
    g = grad.double()
    if optimizer == "sgd":
        return -g
    if optimizer == "adamw":
        return -g / (g.abs() + eps)
    raise ValueError(f"no first-step direction for {optimizer!r}; known: {OPTIMIZERS}")


def _broadcastable(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return vector.view(-1, *([1] * (like.dim() - 1)))


class BatchedOptimizer:
    """One update of many stacked runs (leading dim = run), matching torch.optim.

    ``initial_state`` gives the per-run optimizer state of one run; ``step`` moves
    every run whose ``active`` entry is 1 and leaves the others where they are.
    """

    def __init__(self, options: RunOptions):
        if options.optimizer not in OPTIMIZERS:
            raise ValueError(f"no batched update for {options.optimizer!r}; known: {OPTIMIZERS}")
        self.name = options.optimizer
        self.betas, self.eps, self.weight_decay = options.betas, options.eps, options.weight_decay
        self._fused = getattr(torch, "_fused_adamw_", None) is not None
        self._fused_views = None

    def initial_state(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The optimizer state of one run, shape (1, ...), keyed beside its params."""
        if self.name == "sgd":
            return {}
        state = {}
        for n, p in params.items():
            state[f"exp_avg/{n}"] = torch.zeros_like(p)
            state[f"exp_avg_sq/{n}"] = torch.zeros_like(p)
        first = next(iter(params.values()))
        state["optimizer_step"] = torch.zeros(1, dtype=first.dtype, device=first.device)
        return state

    def step(self, state: dict, names: list[str], grads: dict, active: torch.Tensor) -> None:
        """Update ``state``'s ``param/<name>`` tensors in place."""
        params = [state[f"param/{n}"] for n in names]
        grads = [grads[n] for n in names]
        lr = state["lr"] * active
        if self.name == "sgd":
            torch._foreach_addcmul_(params, grads, [-_broadcastable(lr, p) for p in params])
            return
        state["optimizer_step"] += active
        if self.weight_decay:
            torch._foreach_mul_(params, [_broadcastable(1 - lr * self.weight_decay, p)
                                         for p in params])
        directions = self._adam_directions(state, names, grads)
        torch._foreach_addcmul_(params, directions, [_broadcastable(lr, p) for p in params])

    def _adam_directions(self, state: dict, names: list[str], grads: list) -> list:
        """Update the moments and return -m_hat / (sqrt(v_hat) + eps) per parameter,
        each run with its own step count. The direction does not depend on the
        learning rate, so torch's fused AdamW kernel computes it in one pass (with
        lr 1 on zeroed scratch tensors), and the per-run learning rate is applied
        afterwards."""
        beta1, beta2 = self.betas
        exp_avg = [state[f"exp_avg/{n}"] for n in names]
        exp_avg_sq = [state[f"exp_avg_sq/{n}"] for n in names]
        steps = state["optimizer_step"]
        if self._fused:
            key = (id(steps), *(id(x) for x in exp_avg))
            if self._fused_views is None or self._fused_views[0] != key:
                # Per-run views of the moments (and scratch), rebuilt only when
                # membership reallocates the stacked tensors.
                scratch = [torch.zeros_like(m) for m in exp_avg]
                self._fused_views = (key, scratch, [
                    [v for x in xs for v in x.unbind(0)] for xs in (scratch, exp_avg, exp_avg_sq)
                ], list(steps.unbind(0)) * len(names))
            _, scratch, (scratch_views, avg_views, avg_sq_views), step_views = self._fused_views
            # The fused kernel reads its tensors as flat memory: vmap's gradients
            # can come out transposed (GPT-2's Conv1D does), so make them contiguous.
            grad_views = [v for g in grads for v in g.contiguous().unbind(0)]
            torch._foreach_zero_(scratch)
            # A run that has not stepped yet (inactive from the start) would divide by
            # a zero bias correction; count it as stepped for the kernel only, so its
            # direction stays finite and its zero learning rate leaves it in place.
            idle = (steps == 0).to(steps.dtype)
            steps.add_(idle)
            try:
                torch._fused_adamw_(scratch_views, grad_views, avg_views, avg_sq_views, [],
                                    step_views, lr=1.0, beta1=beta1, beta2=beta2,
                                    weight_decay=0.0, eps=self.eps, amsgrad=False,
                                    maximize=False)
                return scratch
            except (NotImplementedError, RuntimeError):
                self._fused = False   # no fused kernel for this device or dtype
            finally:
                steps.sub_(idle)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        safe_steps = steps.clamp(min=1).double()
        correction1 = (1 - beta1 ** safe_steps).to(steps.dtype)
        correction2 = ((1 - beta2 ** safe_steps) ** 0.5).to(steps.dtype)
        denominators = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominators, [_broadcastable(correction2, g) for g in grads])
        torch._foreach_add_(denominators, self.eps)
        directions = torch._foreach_div(exp_avg, denominators)
        torch._foreach_div_(directions, [-_broadcastable(correction1, g) for g in grads])
        return directions
