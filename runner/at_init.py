"""Stage 5, quantities at initialisation that need the model (THEORY.md section 7): the margin
m0, its first-step growth G0 for each optimizer, the top Hessian eigenvalue lambda0
over the trainable parameters of each mode, the drag's first-order response, the
at-init predictors of eta_c (linear, second order, ray integral), plus the geometry
statistics of ``phantom_theory.quantities``.

lambda0 comes from Hessian-vector products (double backward), never from the
Hessian itself: Lanczos (ARPACK's eigsh, largest algebraic) when the parameters
are few enough to keep its basis in memory, power iteration otherwise. The second
order takes two more products (a = g' H_m g, b = (grad m)' H_L g), and the ray
integral a few evaluations of G along the initial update direction; both run in a
float64 copy of the model when it is small enough.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.nn.attention import SDPBackend, sdpa_kernel

from phantom_theory import order_parameter as op
from phantom_theory import quantities as q
from phantom_theory.errors import PhantomError
from phantom_theory.options import options_attrs
from phantom_theory.provenance import provenance
from phantom_theory.schema import SCHEMA_ATTR, SCHEMAS

from .contexts import get_context, tokenize_context
from .models import last_logits, load_model, readout_matrix
from .training.instrument import MATRICES
from .training.lora import trainable_model, trainable_parameters
from .training.optimizers import first_step_direction
from .training.options import OPTIMIZERS, LoraOptions

LANCZOS_MAX_PARAMETERS = 2_000_000
# Power iteration keeps its vectors in float64 up to this many parameters and in
# the parameters' own dtype above: a float64 vector of a 0.5B model is 4 GB, and
# the iteration holds several (a 2-core, 24 GB machine ran out of memory on Qwen).
FLOAT64_POWER_MAX_PARAMETERS = 50_000_000
ADAM_SECOND_ORDER = ("frozen_direction", "none")


@dataclass(frozen=True)
class QuantityOptions:
    """modes, optimizers: which G0 and lambda0 to measure. hessian_method: "auto"
    (Lanczos up to 2M trainable parameters, power iteration above), "lanczos" or
    "power"; hessian_tol: relative tolerance; hessian_max_iter: most
    Hessian-vector products for power iteration. LoRA settings and eps match the
    runs'; seed fixes the LoRA initialisation and the row sample.

    steps: the T that the predicted eta_hat are for (the sweep's, with --spec).
    adam_second_order: what the second order is under AdamW, whose update
    -g / (|g| + eps) has no useful Taylor expansion in eta (where g_i ~ 0, as in
    LoRA's A block at init, its radius is about eps / |H d|): "frozen_direction"
    expands m along the first Adam step kept fixed, C = a T^2 / 2 with
    a = d' H_m d (b = 0: the direction does not respond); "none" stores NaN.
    ray_*: the ray integral's tolerance on S*, its most evaluations of G and the
    longest ray searched in units of the linear |m0| / G0.
    predictor_float64_max_parameters: models with at most this many parameters
    measure a, b and the ray in a float64 copy."""

    modes: tuple[str, ...] = field(default=("full", "lora"),
                                   metadata={"help": "modes to measure G0 and lambda0 in"})
    optimizers: tuple[str, ...] = field(default=("sgd", "adamw"),
                                        metadata={"help": "optimizers to measure G0 for"})
    hessian_method: str = field(default="auto", metadata={
        "help": "auto (Lanczos up to 2M trainable parameters), lanczos or power"})
    hessian_tol: float = field(default=1e-4, metadata={"help": "relative tolerance of lambda0"})
    hessian_max_iter: int = field(default=200, metadata={
        "help": "most Hessian-vector products of power iteration"})
    sample_rows: int = field(default=2048, metadata={
        "help": "rows sampled for the mean pairwise cosine"})
    seed: int = field(default=0, metadata={"help": "seed of the LoRA initialisation and rows"})
    lora: LoraOptions = LoraOptions()
    eps: float = field(default=1e-8, metadata={"help": "Adam epsilon of the first step"})
    tie: str = field(default="auto", metadata={"help": "for registry models stored untied"})
    steps: int = field(default=100, metadata={
        "help": "updates T the predicted eta_hat are for (the spec's steps with --spec)"})
    adam_second_order: str = field(default="frozen_direction", metadata={
        "help": "AdamW's second order: frozen_direction (along the first Adam step, b = 0) "
                "or none (NaN)"})
    ray_rtol: float = field(default=1e-3, metadata={
        "help": "relative tolerance of the ray length S* (successive estimates)"})
    ray_max_evaluations: int = field(default=12, metadata={
        "help": "most evaluations of the growth G along the ray"})
    ray_bound: float = field(default=100.0, metadata={
        "help": "longest ray searched, in units of the linear |m0| / G0 (no root beyond)"})
    predictor_float64_max_parameters: int = field(default=LANCZOS_MAX_PARAMETERS, metadata={
        "help": "models with at most this many parameters take a, b and the ray in float64"})

    def __post_init__(self):
        from .training.options import MAX_STEPS, MODES

        if self.hessian_method not in ("auto", "lanczos", "power"):
            raise PhantomError(f"hessian_method must be auto, lanczos or power, "
                               f"not {self.hessian_method!r}")
        for mode in self.modes:
            if mode not in MODES:
                raise PhantomError(f"modes must be among {MODES}, not {mode!r}")
        for optimizer in self.optimizers:
            if optimizer not in OPTIMIZERS:
                raise PhantomError(f"optimizers must be among {OPTIMIZERS}, not {optimizer!r}")
        if not (self.modes and self.optimizers):
            raise PhantomError("name at least one mode and one optimizer to measure")
        if not (self.hessian_tol > 0 and self.hessian_max_iter >= 1 and self.sample_rows >= 2):
            raise PhantomError(f"the Hessian tolerance must be positive and its iterations and "
                               f"sampled rows at least 1 and 2, not {self.hessian_tol}, "
                               f"{self.hessian_max_iter}, {self.sample_rows}")
        if not 0 < self.steps <= MAX_STEPS:
            raise PhantomError(f"steps must be an integer from 1 to {MAX_STEPS:,}, "
                               f"not {self.steps}")
        if self.adam_second_order not in ADAM_SECOND_ORDER:
            raise PhantomError(f"adam_second_order must be one of {ADAM_SECOND_ORDER}, "
                               f"not {self.adam_second_order!r}")
        if not (0 < self.ray_rtol < 1 and self.ray_max_evaluations >= 2 and self.ray_bound > 1):
            raise PhantomError(f"the ray needs 0 < ray_rtol < 1, ray_max_evaluations >= 2 and "
                               f"ray_bound > 1, not {self.ray_rtol}, "
                               f"{self.ray_max_evaluations}, {self.ray_bound}")
        if self.predictor_float64_max_parameters < 0:
            raise PhantomError(f"predictor_float64_max_parameters must be >= 0, "
                               f"not {self.predictor_float64_max_parameters}")


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector: torch.Tensor, like) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def _dot(xs, ys) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(xs, ys, strict=True)))


def loss_of(logits: torch.Tensor, c: int) -> torch.Tensor:
    """L = -log p_c of one position's logits (V,), in at least float32 (a float64
    model keeps float64)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return -torch.log_softmax(logits, -1)[c]


def drag_of(model, logits: torch.Tensor, c: int, k: int) -> torch.Tensor:
    """The drag delta = sum over the bulk of p_i (S_ci^2 - S_ki^2) (THEORY.md section 3),
    differentiable in the logits and in the readout matrix: where U is trainable
    (full fine-tuning) its gradient is the total derivative, geometry moving with
    the parameters; where U is frozen (LoRA) only p moves."""
    U = readout_matrix(model)
    U = U.to(torch.promote_types(U.dtype, torch.float32))
    weights = op.bulk_weights(U, U[[c, k]])
    p = logits.to(U.dtype).softmax(-1)
    return op.decompose(p, weights, None, c, k)[2]


@dataclass
class FirstOrder:
    """The state at one point of parameter space: margin, loss and drag with their
    gradients over the trainable parameters."""

    margin: float
    drag: float
    grad_loss: tuple[torch.Tensor, ...]
    grad_margin: tuple[torch.Tensor, ...]
    grad_drag: tuple[torch.Tensor, ...] | None

    def direction(self, optimizer: str, eps: float) -> list[torch.Tensor]:
        """The first update per unit lr (``first_step_direction``), computed in float64
        tensor by tensor and kept in the gradients' dtype: for GD the same numbers,
        for Adam rounded once; a float32 model's direction then costs one copy of its
        parameters, not two (a 0.5B model's full fine-tuning quantities needed 17 GB
        with the whole direction in float64)."""
        return [first_step_direction(g, optimizer, eps).to(g.dtype) for g in self.grad_loss]

    def growth(self, optimizer: str, eps: float) -> float:
        """G = <grad m, d>, d the first update per unit lr."""
        return _dot(self.grad_margin, self.direction(optimizer, eps))

    def drag_growth(self, optimizer: str, eps: float) -> float:
        """<grad delta, d>: the drag's first-order response per unit lr."""
        return _dot(self.grad_drag, self.direction(optimizer, eps))


def first_order(model, params, input_ids, c: int, k: int, drag: bool = False) -> FirstOrder:
    """Margin, loss (and drag) and their gradients in one forward pass."""
    logits = last_logits(model, input_ids)[0]
    margin = logits[c] - logits[k]
    outputs = [loss_of(logits, c), margin]
    if drag:
        outputs.append(drag_of(model, logits, c, k))
    grads = [torch.autograd.grad(o, params, retain_graph=i < len(outputs) - 1)
             for i, o in enumerate(outputs)]
    return FirstOrder(float(margin.detach()), float(outputs[2].detach()) if drag else np.nan,
                      grads[0], grads[1], grads[2] if drag else None)


def margin_growth(model, params, input_ids, c: int, k: int, optimizers=OPTIMIZERS,
                  eps: float = 1e-8) -> tuple[float, dict[str, float]]:
    """(m0, {optimizer: G0}): the margin and its first-step growth per unit lr,
    G0 = <grad m, d>, d the optimizer's first update per unit lr
    (``first_step_direction``: -grad L for GD, -grad L / (|grad L| + eps) for Adam).
    """
    state = first_order(model, params, input_ids, c, k)
    return state.margin, {name: state.growth(name, eps) for name in optimizers}


def hessian_vector_product(scalar_fn, params, vector) -> list[torch.Tensor]:
    """H v, H the Hessian of ``scalar_fn()`` over ``params``, by double backward."""
    # The fused attention kernels have no double backward; the math kernel has.
    with sdpa_kernel(SDPBackend.MATH):
        grads = torch.autograd.grad(scalar_fn(), params, create_graph=True)
        pairs = [(g, v.to(g.dtype)) for g, v in zip(grads, vector, strict=True) if g.requires_grad]
        product = torch.autograd.grad([g for g, _ in pairs], params, [v for _, v in pairs],
                                      allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for h, p in zip(product, params, strict=True)]


def top_hessian_eigenvalue(loss_fn, params, method: str = "auto", tol: float = 1e-4,
                           max_iter: int = 200, seed: int = 0,
                           power_dtype: torch.dtype | None = None) -> tuple[float, int]:
    """(lambda_max, Hessian-vector products used) of the loss over ``params``.

    ``loss_fn()`` recomputes the loss. Lanczos finds the largest algebraic
    eigenvalue directly. Power iteration finds the largest in magnitude; if that
    is negative it iterates again on H - lambda I, whose top eigenvalue is then
    lambda_max - lambda.
    """
    n = sum(p.numel() for p in params)
    calls = 0
    if power_dtype is None:
        power_dtype = torch.float64 if n <= FLOAT64_POWER_MAX_PARAMETERS else params[0].dtype

    def hvp(vector: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return _flat(hessian_vector_product(loss_fn, params, _unflat(vector, params))).to(dtype)

    device = params[0].device
    generator = torch.Generator().manual_seed(seed)
    if method == "lanczos" or (method == "auto" and n <= LANCZOS_MAX_PARAMETERS):
        operator = LinearOperator(
            (n, n), dtype=np.float64,
            matvec=lambda v: hvp(torch.as_tensor(np.ravel(v), device=device)).cpu().numpy())
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
        value = eigsh(operator, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0]
        return float(value), calls

    def power(shift: float) -> float:
        v = torch.randn(n, generator=generator, dtype=torch.float64).to(power_dtype).to(device)
        v /= v.norm()
        value = 0.0
        for _ in range(max_iter):
            w = hvp(v, power_dtype)
            if shift:
                w.sub_(v, alpha=shift)
            new = float(v @ w)
            v = w / w.norm()
            if abs(new - value) <= tol * abs(new):
                return new
            value = new
        return value

    largest = power(0.0)
    if largest >= 0:
        return largest, calls
    return power(largest) + largest, calls


def second_order_terms(model, params, input_ids, c: int, k: int, optimizer: str,
                       eps: float = 1e-8, adam_second_order: str = "frozen_direction",
                       state: FirstOrder | None = None) -> tuple[float, float]:
    """(a, b) of the second-order margin m_T - m_0 = eta T G0 + eta^2 C, C =
    (a + b) T (T - 1)/2 + a T/2 (``phantom_theory.quantities.second_order_coefficient``).

    GD: a = g' H_m g and b = (grad m)' H_L g, g = grad L, by two Hessian-vector
    products. AdamW, ``adam_second_order`` = "frozen_direction": a = d' H_m d along
    the first Adam step d = -g / (|g| + eps), b = 0 (the direction held fixed, so
    C = a T^2 / 2); "none": NaN. ``state`` is the first-order state at these
    parameters, if already measured."""
    if optimizer == "adamw" and adam_second_order == "none":
        return np.nan, np.nan
    state = state or first_order(model, params, input_ids, c, k)
    direction = state.direction(optimizer, eps)

    def margin_fn():
        logits = last_logits(model, input_ids)[0]
        return logits[c] - logits[k]

    a = _dot(direction, hessian_vector_product(margin_fn, params, direction))
    if optimizer != "sgd":
        return a, 0.0
    product = hessian_vector_product(lambda: loss_of(last_logits(model, input_ids)[0], c),
                                     params, state.grad_loss)
    return a, _dot(state.grad_margin, product)


def ray_length(model, params, input_ids, c: int, k: int, optimizer: str, eps: float = 1e-8,
               rtol: float = 1e-3, max_evaluations: int = 12, bound: float = 100.0,
               state: FirstOrder | None = None) -> q.RayRoot:
    """The ray integral's S*: int_0^S* G(theta0 + s d) ds = |m0|, d the first update
    per unit lr (-grad L for GD, the first Adam step for AdamW) and G(theta) the
    growth a first step from theta would give, <grad m(theta), d(theta)> (for Adam
    the Adam-normalised growth). eta_hat_ray = S* / T. The trainable parameters are
    moved along the ray and restored exactly (bit for bit) afterwards; under LoRA
    the ray moves B off 0, so G sees the A block's growth."""
    state = state or first_order(model, params, input_ids, c, k)
    G0 = state.growth(optimizer, eps)
    origin = [p.detach().clone() for p in params]
    direction = [d.to(p.dtype) for d, p in zip(state.direction(optimizer, eps), params,
                                                strict=True)]

    def growth(s: float) -> float:
        with torch.no_grad():
            for p, p0, d in zip(params, origin, direction, strict=True):
                torch.add(p0, d, alpha=s, out=p)   # in place: no parameter-sized temporary
        return first_order(model, params, input_ids, c, k).growth(optimizer, eps)

    scale = abs(state.margin) / abs(G0) if G0 != 0 else np.inf
    try:
        return q.ray_root(growth, abs(state.margin), scale, G0, rtol, max_evaluations, bound)
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, origin, strict=True):
                p.copy_(p0)


def _trainable(loaded, mode: str, options: QuantityOptions):
    model, _ = trainable_model(copy.deepcopy(loaded.model), mode, options.lora, options.seed)
    model.eval()
    return model, trainable_parameters(model)


def _predictor_model(model, options: QuantityOptions):
    """The model the second order and the ray are measured on: a float64 copy when it
    has at most ``predictor_float64_max_parameters`` parameters, else itself."""
    parameters = list(model.parameters())
    if (parameters[0].dtype == torch.float64
            or sum(p.numel() for p in parameters) > options.predictor_float64_max_parameters):
        return model, trainable_parameters(model)
    copied = copy.deepcopy(model).double()
    return copied, trainable_parameters(copied)


def linear_predictions(loaded, contexts: list[str], mode: str, optimizer: str, steps: int,
                       lora: LoraOptions = LoraOptions(), seed: int = 0, eps: float = 1e-8,
                       model_name: str = "this model") -> dict[str, tuple[float, float, float]]:
    """{context: (m0, G0, eta_hat)} with the linear theory's flip, eta_hat =
    |m0| / (T G0) (NaN where G0 <= 0): where the eta_c search of each group starts."""
    model, params = _trainable(loaded, mode, QuantityOptions(lora=lora, seed=seed, eps=eps))
    out = {}
    for context in contexts:
        t = tokenize_context(loaded.tokenizer, get_context(context), model_name)
        ids = torch.tensor([t.input_ids], device=params[0].device)
        m0, growth = margin_growth(model, params, ids, t.correct_id, t.competitor_id,
                                   (optimizer,), eps)
        out[context] = (m0, growth[optimizer],
                        float(q.eta_hat_linear(m0, growth[optimizer], steps)))
    return out


PER_CONTEXT = ("m0", "p_correct0", "p_competitor0", "overlap_ck", "distinguishability", "b_c",
               "b_k", "leak_count", "leak_weighted", "drag0")
# measured per (context, mode, optimizer); the predictors follow from them
PER_UPDATE = ("G0", "drag_growth", "second_order_a", "second_order_b", "ray_length",
              "ray_evaluations", "ray_no_root", "ray_converged")
FLAGS = ("ray_no_root", "ray_converged", "second_order_no_root")


def _pair_quantities(U: np.ndarray, logits: torch.Tensor, c: int, k: int) -> dict[str, float]:
    p = logits.softmax(-1).cpu().numpy()
    s_ck = float(op.pair_overlaps(U[[c, k]], 0, 1)[0][1])
    b_c, b_k = q.bulk_anisotropy(U, c, k)
    weights, _ = op.pair_weights(U, c, k)
    return {"m0": float(logits[c] - logits[k]), "p_correct0": float(p[c]),
            "p_competitor0": float(p[k]), "overlap_ck": s_ck, "distinguishability": 1 - s_ck**2,
            "b_c": b_c, "b_k": b_k, "leak_count": q.leak_count(U, c, k),
            "leak_weighted": q.weighted_leak(U, p, c, k), "drag0": float(op.drag(p, weights, c, k))}


def measure_model(model_name: str, contexts: list[str], options: QuantityOptions = QuantityOptions(),
                  revision=None, dtype: str = "float32", device: str = "cpu", bar=None) -> xr.Dataset:
    """The quantities of one model on the given contexts."""
    loaded = load_model(model_name, revision, dtype, device, options.tie)
    U = MATRICES["readout"](loaded.model).detach().double().cpu().numpy()
    tokenized = [tokenize_context(loaded.tokenizer, get_context(c), model_name) for c in contexts]
    inputs = [(torch.tensor([t.input_ids], device=device), t.correct_id, t.competitor_id)
              for t in tokenized]
    per_context = {name: [] for name in PER_CONTEXT}
    for ids, c, k in inputs:
        with torch.no_grad():
            logits = last_logits(loaded.model, ids)[0].double()
        for name, value in _pair_quantities(U, logits, c, k).items():
            per_context[name].append(value)
    shape = (len(contexts), len(options.modes), len(options.optimizers))
    measured = {name: np.full(shape, np.nan) for name in PER_UPDATE}
    lambda0 = np.full(shape[:2], np.nan)
    iterations = np.zeros(shape[:2], dtype=int)
    for i, mode in enumerate(options.modes):
        model, params = _trainable(loaded, mode, options)
        exact, exact_params = _predictor_model(model, options)
        for j, (ids, c, k) in enumerate(inputs):
            state = first_order(model, params, ids, c, k, drag=True)
            for o, optimizer in enumerate(options.optimizers):
                measured["G0"][j, i, o] = state.growth(optimizer, options.eps)
                measured["drag_growth"][j, i, o] = state.drag_growth(optimizer, options.eps)
            # the drag's gradient is done with: free it before the Hessian-vector
            # products and the ray (one parameter-sized vector less at the peak)
            state = dataclasses.replace(state, grad_drag=None)
            exact_state = state if exact is model else first_order(exact, exact_params, ids, c, k)
            for o, optimizer in enumerate(options.optimizers):
                a, b = second_order_terms(exact, exact_params, ids, c, k, optimizer, options.eps,
                                          options.adam_second_order, exact_state)
                ray = ray_length(exact, exact_params, ids, c, k, optimizer, options.eps,
                                 options.ray_rtol, options.ray_max_evaluations,
                                 options.ray_bound, exact_state)
                for name, value in (("second_order_a", a), ("second_order_b", b),
                                    ("ray_length", ray.length),
                                    ("ray_evaluations", ray.evaluations),
                                    ("ray_no_root", ray.no_root),
                                    ("ray_converged", ray.converged)):
                    measured[name][j, i, o] = value
            del state, exact_state

            def loss_fn(model=model, ids=ids, c=c):
                return loss_of(last_logits(model, ids)[0], c)

            lambda0[j, i], iterations[j, i] = top_hessian_eigenvalue(
                loss_fn, params, options.hessian_method, options.hessian_tol,
                options.hessian_max_iter, options.seed)
            if bar is not None:
                bar.update(1)
    per_update = {**measured, **q.predictors(measured, np.array(per_context["m0"])[:, None, None],
                                            options.steps)}
    for name in ("ray_evaluations", *FLAGS):
        per_update[name] = per_update[name].astype(np.int8 if name in FLAGS else int)
    geometries = ("readout", "input")
    stats = [q.embedding_statistics(MATRICES[g](loaded.model).detach().float().cpu().numpy(),
                                    options.sample_rows, options.seed) for g in geometries]
    ds = xr.Dataset(
        {**{name: ("context", np.array(values)) for name, values in per_context.items()},
         **{name: (("context", "mode", "optimizer"), values) for name, values in per_update.items()},
         "lambda0": (("context", "mode"), lambda0),
         "lambda0_iterations": (("context", "mode"), iterations),
         **{name: ("geometry", np.array([s[name] for s in stats]))
            for name in ("mean_cosine", "top_pc_share", "effective_rank")},
         "embedding_dim": ((), U.shape[1])},
        coords={"context": list(contexts), "mode": list(options.modes),
                "optimizer": list(options.optimizers), "geometry": list(geometries)},
    )
    ds = ds.expand_dims(model=[model_name])
    ds.attrs["model_info"] = loaded.info.attrs()
    return ds


def measure_quantities(models: list[str], contexts: list[str] | dict[str, list[str]],
                       options: QuantityOptions = QuantityOptions(), dtype: str = "float32",
                       device: str = "cpu", progress: bool = False,
                       parts=None) -> xr.Dataset:
    """The quantities Dataset of several models (dims model, context, mode,
    optimizer, geometry), labelled and with provenance. ``contexts`` is one list for
    every model, or each model's own list (a real model's selection); a context a
    model does not use is NaN in its row.

    ``parts``, a folder, makes the measurement resumable model by model: each
    model's Dataset is written there as soon as it is measured, and a part made with
    the same contexts, options, dtype and device is read instead of measured again
    (a real model's quantities take minutes to hours; a stop loses at most one)."""
    import json

    from tqdm.auto import tqdm

    per_model = contexts if isinstance(contexts, dict) else dict.fromkeys(models, contexts)
    bar = tqdm(total=sum(len(per_model[m]) for m in models) * len(options.modes),
               disable=not progress, unit="context-mode", desc="quantities")
    parts_, infos = [], {}
    try:
        for name in models:
            key = _part_key(name, list(per_model[name]), options, dtype, device)
            part = _read_part(parts, name, key)
            if part is None:
                part = measure_model(name, list(per_model[name]), options, dtype=dtype,
                                     device=device, bar=bar)
                _write_part(parts, name, key, part)
            else:
                bar.update(len(per_model[name]) * len(options.modes))
            info = part.attrs.pop("model_info")
            infos[name] = json.loads(info) if isinstance(info, str) else info
            part.attrs.pop("part_key", None)
            parts_.append(part)
    finally:
        bar.close()
    ds = xr.concat(parts_, dim="model", join="outer")
    ds.attrs = {SCHEMA_ATTR: SCHEMAS["quantities"],
                **provenance("torch", "transformers", "peft", "scipy"),
                **options_attrs("quantities", options), "dtype": dtype, "device": device,
                "models_json": json.dumps(infos, default=str)}
    return q.label(ds)


# The version of the code that measures the quantities: raise it with any change that
# alters what a part holds for the same options, so that an older part is measured again.
QUANTITIES_VERSION = 2


def _part_key(name, contexts, options, dtype, device) -> str:
    """What makes one model's part reusable: the same contexts, options, dtype and
    device, and the same ``QUANTITIES_VERSION`` of the code."""
    import json

    return json.dumps({"model": name, "contexts": contexts, "dtype": dtype, "device": device,
                       "version": QUANTITIES_VERSION,
                       **{k: str(v) for k, v in options_attrs("quantities", options).items()}},
                      sort_keys=True)


def _part_path(parts, name):
    return Path(parts) / f"{name.replace('/', '--')}.nc"


def _read_part(parts, name, key):
    """The part of ``name`` in ``parts`` made with ``key``, or None."""
    if parts is None or not _part_path(parts, name).is_file():
        return None
    try:
        part = xr.load_dataset(_part_path(parts, name), engine="netcdf4")
    except (OSError, ValueError):
        return None
    if part.attrs.get("part_key") != key:
        return None
    # A part read back keeps its file's encoding (text as characters of this part's
    # width); the whole, written with it, would cut a longer name to that width
    # ("qwen2.5-coder-0.5b" -> "qwen2.5-code"). The whole is encoded afresh.
    return part.drop_encoding()


def _write_part(parts, name, key, part) -> None:
    """Write one model's part atomically (its model_info as JSON)."""
    import json

    from phantom_theory.io import atomic_write

    if parts is None:
        return
    Path(parts).mkdir(parents=True, exist_ok=True)
    copy = part.copy()
    copy.attrs = {"part_key": key, "model_info": json.dumps(part.attrs["model_info"], default=str)}
    with atomic_write(_part_path(parts, name), overwrite=True) as tmp:
        copy.to_netcdf(tmp, engine="netcdf4")
