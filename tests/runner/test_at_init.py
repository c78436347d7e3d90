"""Quantities at initialisation that need the model (m0, G0, lambda0, the second order,
the ray integral, the drag's response), against known answers, real optimizer steps
and direct computations."""

import dataclasses

import numpy as np
import pytest
import torch

from phantom_theory import quantities as q
from runner.at_init import (
    QuantityOptions,
    first_order,
    margin_growth,
    measure_quantities,
    ray_length,
    second_order_terms,
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


PREDICTORS = ("eta_hat_linear", "eta_hat_second", "eta_hat_ray", "kappa", "nu_hat2",
              "second_order_a", "second_order_b", "second_order_c", "second_order_no_root",
              "ray_length", "ray_evaluations", "ray_no_root", "ray_converged", "drag_growth")


def test_the_quantities_dataset_is_labelled_and_traceable():
    ds = measure_quantities(["tiny-neox"], ["start-begin"],
                            QuantityOptions(modes=("lora",), optimizers=("sgd", "adamw"),
                                            steps=40))
    assert ds.G0.dims == ("model", "context", "mode", "optimizer")
    assert ds.lambda0.sel(mode="lora").item() > 0
    for name in ("m0", "G0", "lambda0", "b_c", "leak_count", "leak_weighted", "drag0",
                 "mean_cosine", "embedding_dim", *PREDICTORS):
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"] == "1", name
    for name in PREDICTORS:
        assert ds[name].dims == ("model", "context", "mode", "optimizer"), name
    assert "leak_fraction" not in ds
    for key in ("git_commit", "torch_version", "quantities_hessian_method", "models_json",
                "quantities_steps", "quantities_adam_second_order", "quantities_ray_bound"):
        assert key in ds.attrs
    row = ds.isel(model=0, context=0, mode=0)
    np.testing.assert_allclose(row.eta_hat_linear, abs(row.m0) / (40 * row.G0))
    np.testing.assert_allclose(row.eta_hat_ray, row.ray_length / 40)
    assert row.second_order_b.sel(optimizer="adamw") == 0   # frozen first Adam direction
    assert (row.ray_converged == 1).all() and (row.ray_evaluations <= 10).all()


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


def test_a_stopped_measurement_resumes_with_the_models_it_finished(tmp_path, monkeypatch):
    """Each model's part is written as it ends; a rerun reads a part made with the same
    contexts and options instead of measuring it again, and measures one made with
    other options afresh. The whole equals an uninterrupted measurement."""
    from phantom_theory.quantities import open_quantities, write_quantities
    from runner import at_init

    options = QuantityOptions(modes=("lora",), optimizers=("sgd",))
    # the second name is the longer: a part read back must not cut it to its width
    # once the whole is written (the file's encoding of the part must not stick)
    models = ["tiny-neox", "tiny-gpt2-wide"]
    contexts = {"tiny-neox": ["start-begin"], "tiny-gpt2-wide": ["big-large"]}
    whole = measure_quantities(models, contexts, options)
    real, measured, died = at_init.measure_model, [], []

    def second_dies(name, *args, **kwargs):
        measured.append(name)
        if name == "tiny-gpt2-wide" and not died:
            died.append(name)
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(at_init, "measure_model", second_dies)
    with pytest.raises(KeyboardInterrupt):
        measure_quantities(models, contexts, options, parts=tmp_path / "parts")
    assert measured == models
    measured.clear()
    resumed = measure_quantities(models, contexts, options, parts=tmp_path / "parts")
    assert measured == ["tiny-gpt2-wide"]   # tiny-neox came from its part
    write_quantities(resumed, tmp_path / "q.nc")
    assert list(open_quantities(tmp_path / "q.nc").model.values) == models
    for name in ("m0", "G0", "lambda0", "eta_hat_ray"):
        np.testing.assert_array_equal(resumed[name].values, whole[name].values, err_msg=name)
    assert resumed.attrs["models_json"] == whole.attrs["models_json"]
    measured.clear()
    other = dataclasses.replace(options, steps=options.steps + 1)
    measure_quantities(["tiny-neox"], contexts, other, parts=tmp_path / "parts")
    assert measured == ["tiny-neox"]   # other options: measured again


# -- the predictors beyond linear, against real steps and brute force ---------------

def _tiny(mode, name="tiny-gpt2", dtype="float64"):
    from runner.contexts import get_context, tokenize_context
    from runner.training.lora import trainable_model, trainable_parameters

    loaded = load_model(name, dtype=dtype)
    model, _ = trainable_model(loaded.model, mode, LoraOptions(), seed=0)
    model.eval()
    t = tokenize_context(loaded.tokenizer, get_context("start-begin"), name)
    return model, trainable_parameters(model), torch.tensor([t.input_ids]), t.correct_id, \
        t.competitor_id


@pytest.fixture(scope="module", params=["full", "lora"])
def tiny64(request):
    """(mode, model, params, ids, c, k, first-order state, (a, b)) of float64 tiny-gpt2."""
    model, params, ids, c, k = _tiny(request.param)
    state = first_order(model, params, ids, c, k)
    return request.param, model, params, ids, c, k, state, \
        second_order_terms(model, params, ids, c, k, "sgd", state=state)


def _moved(params, origin, vector, s):
    with torch.no_grad():
        for p, p0, d in zip(params, origin, vector, strict=True):
            p.copy_(p0 + s * d)


def test_second_order_c_matches_the_increments_of_real_sgd_steps(tiny64):
    """m_1 - m_0 = eta G0 and (m_T - m_0 - eta T G0) / eta^2 = C(T) for T = 1, 2, 3,
    to the O(eta) of the third order."""
    mode, model, params, ids, c, k, state, (a, b) = tiny64
    eta = 1e-6 if mode == "full" else 1e-5    # eta^2 C well above float64 rounding
    G0 = state.growth("sgd", 1e-8)
    origin = [p.detach().clone() for p in params]
    margins = [state.margin]
    try:
        for _ in range(3):
            grads = first_order(model, params, ids, c, k).grad_loss
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(eta * g)
            margins.append(first_order(model, params, ids, c, k).margin)
    finally:
        _moved(params, origin, origin, 0.0)
    assert margins[1] - margins[0] == pytest.approx(eta * G0, rel=1e-3)
    for T in (1, 2, 3):
        measured = (margins[T] - margins[0] - eta * T * G0) / eta**2
        assert measured == pytest.approx(q.second_order_coefficient(a, b, T), rel=1e-2), T


def test_the_growth_along_the_ray_starts_at_g0_with_slope_a_plus_b(tiny64):
    """d/ds <grad m, -grad L> at theta0 - s g is g' H_m g + (grad m)' H_L g: the ray and
    the second order measure one curvature."""
    mode, model, params, ids, c, k, state, (a, b) = tiny64
    origin = [p.detach().clone() for p in params]
    s = 1e-6 if mode == "full" else 1e-4
    direction = state.direction("sgd", 1e-8)
    growth = []
    for sign in (1, -1):
        _moved(params, origin, direction, sign * s)
        growth.append(first_order(model, params, ids, c, k).growth("sgd", 1e-8))
    _moved(params, origin, direction, 0.0)
    assert (growth[0] - growth[1]) / (2 * s) == pytest.approx(a + b, rel=1e-4)


def test_adam_a_is_the_margin_curvature_along_the_first_adam_step():
    model, params, ids, c, k = _tiny("full")
    state = first_order(model, params, ids, c, k)
    a, b = second_order_terms(model, params, ids, c, k, "adamw", state=state)
    assert b == 0.0
    origin = [p.detach().clone() for p in params]
    direction, s, margins = state.direction("adamw", 1e-8), 1e-5, []
    for sign in (1, -1):
        _moved(params, origin, direction, sign * s)
        margins.append(first_order(model, params, ids, c, k).margin)
    _moved(params, origin, direction, 0.0)
    assert (margins[0] + margins[1] - 2 * state.margin) / s**2 == pytest.approx(a, rel=1e-3)
    assert second_order_terms(model, params, ids, c, k, "adamw", adam_second_order="none",
                              state=state) == (pytest.approx(np.nan, nan_ok=True),) * 2


def _brute_force_ray(model, params, ids, c, k, optimizer, upper, nodes=16):
    """S* from a degree-16 Chebyshev interpolant of G on [0, upper], integrated exactly."""
    from numpy.polynomial import chebyshev
    from scipy.optimize import brentq

    state = first_order(model, params, ids, c, k)
    origin = [p.detach().clone() for p in params]
    direction = state.direction(optimizer, 1e-8)
    x = np.cos(np.pi * np.arange(nodes + 1) / nodes)          # Chebyshev-Lobatto on [-1, 1]
    values = []
    for s in upper * (1 - x) / 2:
        _moved(params, origin, direction, s)
        values.append(first_order(model, params, ids, c, k).growth(optimizer, 1e-8))
    _moved(params, origin, direction, 0.0)
    series = chebyshev.chebint(chebyshev.chebfit(-x, values, nodes), lbnd=-1) * upper / 2
    return brentq(lambda s: chebyshev.chebval(2 * s / upper - 1, series) - abs(state.margin),
                  1e-12 * upper, upper)


@pytest.mark.parametrize("optimizer", ["sgd", pytest.param("adamw", marks=pytest.mark.slow)])
def test_ray_length_matches_a_brute_force_quadrature(optimizer):
    """Under LoRA, where the ray sees the A block's growth and S* falls well below the
    linear |m0| / G0."""
    model, params, ids, c, k = _tiny("lora")
    ray = ray_length(model, params, ids, c, k, optimizer)
    assert ray.converged and ray.evaluations <= 10
    linear = abs(first_order(model, params, ids, c, k).margin) / ray.values[0]   # |m0| / G0
    assert ray.length < 0.8 * linear
    exact = _brute_force_ray(model, params, ids, c, k, optimizer, upper=1.5 * ray.length)
    assert ray.length == pytest.approx(exact, rel=2e-3)


@pytest.mark.parametrize("mode, optimizer", [("full", "sgd"), ("lora", "adamw")])
def test_the_measurement_restores_the_parameters_bit_for_bit(mode, optimizer):
    """In the model's own float32, where p0 + s d - s d would not come back exactly."""
    model, params, ids, c, k = _tiny(mode, "tiny-neox", dtype="float32")
    before = {name: t.clone() for name, t in model.state_dict().items()}
    ray = ray_length(model, params, ids, c, k, optimizer, max_evaluations=4)
    assert ray.evaluations == 4 and max(ray.nodes) > 0    # it did move the parameters
    second_order_terms(model, params, ids, c, k, optimizer)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name


def test_drag_growth_is_the_total_derivative_with_the_geometry_moving():
    """Under full fine-tuning of tied tiny-gpt2 the readout moves with the step: the
    drag's change over a small GD step is eta <grad delta, -grad L>, and holding the
    geometry fixed would miss a visible part of it."""
    from phantom_theory import order_parameter as op
    from runner.at_init import drag_of
    from runner.models import readout_matrix

    model, params, ids, c, k = _tiny("full")
    state = first_order(model, params, ids, c, k, drag=True)
    U0 = readout_matrix(model).detach().clone()
    origin = [p.detach().clone() for p in params]
    eta = 1e-6
    _moved(params, origin, state.grad_loss, -eta)
    with torch.no_grad():
        logits = last_logits(model, ids)[0]
        moved = float(drag_of(model, logits, c, k))
        frozen = float(op.drag(logits.softmax(-1), op.bulk_weights(U0, U0[[c, k]]), c, k))
    _moved(params, origin, origin, 0.0)
    total = state.drag_growth("sgd", 1e-8)
    assert (moved - state.drag) / eta == pytest.approx(total, rel=1e-4)
    assert abs((frozen - state.drag) / eta - total) > 1e-3 * abs(total)
