"""Quantities at initialisation that need the model (m0, G0, lambda0), against
known answers and direct computations."""

import numpy as np
import pytest
import torch

from runner.at_init import (
    QuantityOptions,
    margin_growth,
    measure_quantities,
    top_hessian_eigenvalue,
)
from runner.models import last_logits, load_model
from runner.training import LoraOptions
from runner.training.lora import wrap_lora


@pytest.fixture(scope="module")
def lora_rank1():
    """tiny-gpt2 under LoRA of rank 1: 512 trainable parameters, small enough for an
    exact dense Hessian."""
    model = load_model("tiny-gpt2", dtype="float64").model
    torch.manual_seed(0)
    model, _ = wrap_lora(model, LoraOptions(rank=1), seed=0)
    with torch.no_grad():   # B = 0 at init makes half the Hessian vanish; move off it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    ids = torch.tensor([[5, 6, 7, 8]])
    target = torch.tensor([9])

    def loss_fn():
        return torch.nn.functional.cross_entropy(last_logits(model, ids)[0][None], target)

    return model, params, ids, loss_fn


def dense_hessian(loss_fn, params):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = sum(p.numel() for p in params)
    with sdpa_kernel(SDPBackend.MATH):
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        rows = [torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat[i], params,
                                                                      retain_graph=True)])
                for i in range(n)]
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_lambda0_matches_the_dense_hessian(lora_rank1, method):
    _, params, _, loss_fn = lora_rank1
    exact = np.linalg.eigvalsh(dense_hessian(loss_fn, params)).max()
    value, calls = top_hessian_eigenvalue(loss_fn, params, method, tol=1e-8, max_iter=2000)
    assert value == pytest.approx(exact, rel=1e-4)
    if method == "lanczos":   # far fewer Hessian-vector products than the dimension
        assert calls < sum(p.numel() for p in params) / 4


def test_power_iteration_in_float32_agrees_with_float64(lora_rank1):
    """Large models iterate in their own dtype (memory); the eigenvalue must agree
    with the float64 iteration to well within the tolerances used for them."""
    _, params, _, loss_fn = lora_rank1
    exact, _ = top_hessian_eigenvalue(loss_fn, params, "power", tol=1e-8, max_iter=2000)
    single, _ = top_hessian_eigenvalue(loss_fn, params, "power", tol=1e-5, max_iter=2000,
                                       power_dtype=torch.float32)
    assert single == pytest.approx(exact, rel=1e-3)


def test_sgd_g0_is_the_margin_growth_of_a_small_gd_step(lora_rank1):
    model, params, ids, loss_fn = lora_rank1
    c, k, eta = 9, 10, 1e-6
    m0, growth = margin_growth(model, params, ids, c, k)
    g_sgd = growth["sgd"]
    grads = torch.autograd.grad(loss_fn(), params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.sub_(eta * g)
        logits = last_logits(model, ids)[0]
        for p, g in zip(params, grads, strict=True):
            p.add_(eta * g)
    assert (float(logits[c] - logits[k]) - m0) / eta == pytest.approx(g_sgd, rel=1e-4)


def test_adam_g0_is_the_margin_growth_of_a_small_first_adam_step(lora_rank1):
    model, params, ids, loss_fn = lora_rank1
    c, k, eta = 9, 10, 1e-7
    m0, growth = margin_growth(model, params, ids, c, k)
    g_adam = growth["adamw"]
    saved = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=eta, weight_decay=0.0)
    loss_fn().backward()
    optimizer.step()
    with torch.no_grad():
        logits = last_logits(model, ids)[0]
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    assert (float(logits[c] - logits[k]) - m0) / eta == pytest.approx(g_adam, rel=1e-3)


def test_the_quantities_dataset_is_labelled_and_traceable():
    ds = measure_quantities(["tiny-neox"], ["start-begin"],
                            QuantityOptions(modes=("lora",), optimizers=("sgd",)))
    assert ds.G0.dims == ("model", "context", "mode", "optimizer")
    assert ds.lambda0.sel(mode="lora").item() > 0
    for name in ("m0", "G0", "lambda0", "b_c", "leak_fraction", "mean_cosine"):
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"] == "1"
    for key in ("git_commit", "torch_version", "quantities_hessian_method", "models_json"):
        assert key in ds.attrs


def test_each_model_may_have_its_own_contexts():
    """A real model's selection differs per model: the rows it does not use are NaN,
    and the ones it uses equal a measurement of that model alone."""
    options = QuantityOptions(modes=("lora",), optimizers=("sgd",))
    ds = measure_quantities(["tiny-neox", "tiny-gpt2"],
                            {"tiny-neox": ["start-begin"], "tiny-gpt2": ["big-large"]}, options)
    assert sorted(ds.context.values) == ["big-large", "start-begin"]
    assert np.isnan(ds.G0.sel(model="tiny-neox", context="big-large")).all()
    assert np.isnan(ds.G0.sel(model="tiny-gpt2", context="start-begin")).all()
    alone = measure_quantities(["tiny-gpt2"], ["big-large"], options)
    np.testing.assert_array_equal(ds.m0.sel(model="tiny-gpt2", context="big-large").values,
                                  alone.m0.sel(model="tiny-gpt2", context="big-large").values)
