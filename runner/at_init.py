"""Stage 5, quantities at initialisation that need the model (THEORY.md section 7): the margin
m0, its first-step growth G0 for each optimizer, and the top Hessian eigenvalue
lambda0 over the trainable parameters of each mode, plus the geometry statistics
of ``phantom_theory.quantities``.

lambda0 comes from Hessian-vector products (double backward), never from the
Hessian itself: Lanczos (ARPACK's eigsh, largest algebraic) when the parameters
are few enough to keep its basis in memory, power iteration otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.nn.attention import SDPBackend, sdpa_kernel

from phantom_theory import quantities as q
from phantom_theory.errors import PhantomError
from phantom_theory.options import options_attrs
from phantom_theory.provenance import provenance
from phantom_theory.schema import SCHEMA_ATTR, SCHEMAS

from .contexts import get_context, tokenize_context
from .models import last_logits, load_model
from .training.instrument import MATRICES
from .training.lora import trainable_model, trainable_parameters
from .training.optimizers import first_step_direction
from .training.options import OPTIMIZERS, LoraOptions

LANCZOS_MAX_PARAMETERS = 2_000_000
# Power iteration keeps its vectors in float64 up to this many parameters and in
# the parameters' own dtype above: a float64 vector of a 0.5B model is 4 GB, and
# the iteration holds several (a 2-core, 24 GB machine ran out of memory on Qwen).
FLOAT64_POWER_MAX_PARAMETERS = 50_000_000


@dataclass(frozen=True)
class QuantityOptions:
    """modes, optimizers: which G0 and lambda0 to measure. hessian_method: "auto"
    (Lanczos up to 2M trainable parameters, power iteration above), "lanczos" or
    "power"; hessian_tol: relative tolerance; hessian_max_iter: most
    Hessian-vector products for power iteration. LoRA settings and eps match the
    runs'; seed fixes the LoRA initialisation and the row sample."""

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

    def __post_init__(self):
        from .training.options import MODES

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


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector: torch.Tensor, like) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def margin_growth(model, params, input_ids, c: int, k: int, optimizers=OPTIMIZERS,
                  eps: float = 1e-8) -> tuple[float, dict[str, float]]:
    """(m0, {optimizer: G0}): the margin and its first-step growth per unit lr,
    G0 = <grad m, d>, d the optimizer's first update per unit lr
    (``first_step_direction``: -grad L for GD, -grad L / (|grad L| + eps) for Adam).
    """
    logits = last_logits(model, input_ids)[0]
    margin = logits[c] - logits[k]
    loss = F.cross_entropy(logits[None].float(), torch.tensor([c], device=logits.device))
    grad_loss = torch.autograd.grad(loss, params, retain_graph=True)
    grad_margin = torch.autograd.grad(margin, params)
    growth = {name: float(sum((gm.double() * first_step_direction(gl, name, eps)).sum()
                              for gm, gl in zip(grad_margin, grad_loss, strict=True)))
              for name in optimizers}
    return float(margin.detach()), growth


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
        # The fused attention kernels have no double backward; the math kernel has.
        with sdpa_kernel(SDPBackend.MATH):
            loss = loss_fn()
            grads = torch.autograd.grad(loss, params, create_graph=True)
            product = torch.autograd.grad(grads, params,
                                          _unflat(vector.to(params[0].dtype), params))
        return _flat(product).to(dtype)

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


def _trainable(loaded, mode: str, options: QuantityOptions):
    model, _ = trainable_model(copy.deepcopy(loaded.model), mode, options.lora, options.seed)
    model.eval()
    return model, trainable_parameters(model)


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
        G0 = growth[optimizer]
        out[context] = (m0, G0, abs(m0) / (steps * G0) if G0 > 0 else float("nan"))
    return out


def measure_model(model_name: str, contexts: list[str], options: QuantityOptions = QuantityOptions(),
                  revision=None, dtype: str = "float32", device: str = "cpu", bar=None) -> xr.Dataset:
    """The quantities of one model on the given contexts."""
    loaded = load_model(model_name, revision, dtype, device, options.tie)
    U = MATRICES["readout"](loaded.model).detach().float().cpu().numpy()
    per_context = {name: [] for name in ("m0", "p_correct0", "p_competitor0", "overlap_ck",
                                         "distinguishability", "b_c", "b_k", "leak_fraction")}
    G0 = np.full((len(contexts), len(options.modes), len(options.optimizers)), np.nan)
    lambda0 = np.full((len(contexts), len(options.modes)), np.nan)
    iterations = np.zeros((len(contexts), len(options.modes)), dtype=int)
    tokenized = [tokenize_context(loaded.tokenizer, get_context(c), model_name) for c in contexts]
    for j, t in enumerate(tokenized):
        c, k = t.correct_id, t.competitor_id
        ids = torch.tensor([t.input_ids], device=device)
        with torch.no_grad():
            logits = last_logits(loaded.model, ids)[0].double()
        p = logits.softmax(-1)
        s_ck = float(q.pair_overlaps(U[[c, k]].astype(np.float64), 0, 1)[0][1])
        b_c, b_k = q.bulk_anisotropy(U, c, k)
        for name, value in (("m0", float(logits[c] - logits[k])), ("p_correct0", float(p[c])),
                            ("p_competitor0", float(p[k])), ("overlap_ck", s_ck),
                            ("distinguishability", 1 - s_ck**2), ("b_c", b_c), ("b_k", b_k),
                            ("leak_fraction", q.leak_fraction(U, c, k))):
            per_context[name].append(value)
        for i, mode in enumerate(options.modes):
            model, params = _trainable(loaded, mode, options)
            _, growth = margin_growth(model, params, ids, c, k, options.optimizers, options.eps)
            G0[j, i] = [growth[o] for o in options.optimizers]
            target = torch.tensor([c], device=device)

            def loss_fn(model=model, ids=ids, target=target):
                return F.cross_entropy(last_logits(model, ids)[0][None].float(), target)

            lambda0[j, i], iterations[j, i] = top_hessian_eigenvalue(
                loss_fn, params, options.hessian_method, options.hessian_tol,
                options.hessian_max_iter, options.seed)
            if bar is not None:
                bar.update(1)
    geometries = ("readout", "input")
    stats = [q.embedding_statistics(MATRICES[g](loaded.model).detach().float().cpu().numpy(),
                                    options.sample_rows, options.seed) for g in geometries]
    ds = xr.Dataset(
        {**{name: ("context", np.array(values)) for name, values in per_context.items()},
         "G0": (("context", "mode", "optimizer"), G0),
         "lambda0": (("context", "mode"), lambda0),
         "lambda0_iterations": (("context", "mode"), iterations),
         **{name: ("geometry", np.array([s[name] for s in stats]))
            for name in ("mean_cosine", "top_pc_share", "effective_rank")}},
        coords={"context": list(contexts), "mode": list(options.modes),
                "optimizer": list(options.optimizers), "geometry": list(geometries)},
    )
    ds = ds.expand_dims(model=[model_name])
    ds.attrs["model_info"] = loaded.info.attrs()
    return ds


def measure_quantities(models: list[str], contexts: list[str] | dict[str, list[str]],
                       options: QuantityOptions = QuantityOptions(), dtype: str = "float32",
                       device: str = "cpu", progress: bool = False) -> xr.Dataset:
    """The quantities Dataset of several models (dims model, context, mode,
    optimizer, geometry), labelled and with provenance. ``contexts`` is one list for
    every model, or each model's own list (a real model's selection); a context a
    model does not use is NaN in its row."""
    import json

    from tqdm.auto import tqdm

    per_model = contexts if isinstance(contexts, dict) else dict.fromkeys(models, contexts)
    bar = tqdm(total=sum(len(per_model[m]) for m in models) * len(options.modes),
               disable=not progress, unit="context-mode", desc="quantities")
    parts, infos = [], {}
    try:
        for name in models:
            part = measure_model(name, list(per_model[name]), options, dtype=dtype,
                                 device=device, bar=bar)
            infos[name] = part.attrs.pop("model_info")
            parts.append(part)
    finally:
        bar.close()
    ds = xr.concat(parts, dim="model", join="outer")
    ds.attrs = {SCHEMA_ATTR: SCHEMAS["quantities"],
                **provenance("torch", "transformers", "peft", "scipy"),
                **options_attrs("quantities", options), "dtype": dtype, "device": device,
                "models_json": json.dumps(infos, default=str)}
    return q.label(ds)
