"""The three forms of each optimizer agree: the batched update moves every stacked
run exactly as torch.optim moves it alone, and the first-step direction is the
first update per unit learning rate."""

import dataclasses

import pytest
import torch

from runner.training.optimizers import BatchedOptimizer, first_step_direction, make_optimizer
from runner.training.options import OPTIMIZERS, RunOptions

SHAPES = {"w": (3, 4), "b": (4,)}


def gradients(step, n):
    generator = torch.Generator().manual_seed(step)
    return {k: torch.randn(n, *s, generator=generator, dtype=torch.float64)
            for k, s in SHAPES.items()}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_batched_update_is_torch_optim_step_for_step(optimizer, weight_decay):
    lrs = [1e-3, 3e-2, 0.5]
    options = RunOptions(optimizer=optimizer, weight_decay=weight_decay)
    start = {k: torch.randn(*s, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
             for k, s in SHAPES.items()}
    batched = BatchedOptimizer(options)
    state = {f"param/{k}": v[None].repeat(len(lrs), *([1] * v.dim())).clone()
             for k, v in start.items()}
    state.update(batched.initial_state({k: state[f"param/{k}"][:1] for k in SHAPES}))
    for key in [k for k in state if not k.startswith("param/")]:
        state[key] = state[key].repeat(len(lrs), *([1] * (state[key].dim() - 1)))
    state["lr"] = torch.tensor(lrs, dtype=torch.float64)
    singles = []
    for lr in lrs:
        params = {k: torch.nn.Parameter(v.clone()) for k, v in start.items()}
        singles.append((params, make_optimizer(list(params.values()),
                                               dataclasses.replace(options, lr=lr))))
    for step in range(5):
        grads = gradients(step, len(lrs))
        batched.step(state, list(SHAPES), grads, torch.ones(len(lrs), dtype=torch.float64))
        for i, (params, torch_optimizer) in enumerate(singles):
            for k, p in params.items():
                p.grad = grads[k][i].clone()
            torch_optimizer.step()
    for i, (params, _) in enumerate(singles):
        for k, p in params.items():
            torch.testing.assert_close(state[f"param/{k}"][i], p.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_inactive_run_does_not_move(optimizer):
    batched = BatchedOptimizer(RunOptions(optimizer=optimizer))
    state = {"param/w": torch.ones(2, 3, dtype=torch.float64)}
    state.update({k: v.repeat(2, *([1] * (v.dim() - 1)))
                  for k, v in batched.initial_state({"w": state["param/w"][:1]}).items()})
    state["lr"] = torch.tensor([0.1, 0.1], dtype=torch.float64)
    batched.step(state, ["w"], {"w": torch.ones(2, 3, dtype=torch.float64)},
                 torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert (state["param/w"][1] == 1).all() and (state["param/w"][0] != 1).all()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_first_step_direction_is_the_first_update_per_unit_lr(optimizer):
    lr = 1e-3
    start = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    param = torch.nn.Parameter(start.clone())
    torch_optimizer = make_optimizer([param], RunOptions(optimizer=optimizer, lr=lr))
    param.grad = grad
    torch_optimizer.step()
    torch.testing.assert_close((param.detach() - start) / lr,
                               first_step_direction(grad, optimizer), rtol=1e-9, atol=1e-12)


def test_an_unknown_optimizer_has_no_form():
    with pytest.raises(ValueError, match="known"):
        first_step_direction(torch.ones(2), "lion")
