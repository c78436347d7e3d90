"""Every name the toolkit's files share, in one place: the schema of each kind of
file, the dims of a run's identity, the units and long name of every variable, one
``label``, one opener by kind and one writer (THEORY.md section 9).

A file's kind is in its ``phantom_schema`` attribute. ``open_dataset(path, kind)``
refuses a file of another kind, or one whose schema attribute is right but whose
variables are not; ``write_dataset(ds, path, kind)`` labels, stamps and writes
atomically, and refuses an existing file unless ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from .errors import PhantomError
from .io import atomic_write

SCHEMA_ATTR = "phantom_schema"

# kind -> (schema string, what a user calls it, the variables a file of the kind must
# hold, each with the dims it must have at least)
_MC = ("model", "context")
_GROUP = ("model", "context", "mode", "optimizer", "seed")
KINDS = {
    "trajectory": ("phantom-theory/trajectory/1", "trajectory (.nc from `phantom run`)",
                   {**dict.fromkeys(("loss", "phi", "signal", "drag", "step"), ("step",)),
                    **dict.fromkeys(("outcome", "model", "context", "mode", "optimizer", "lr",
                                     "seed"), ())}),
    "sweep": ("phantom-theory/sweep/1", "sweep (sweep.nc from `phantom sweep`)",
              {"eta_c": _GROUP, "eta_c_status": _GROUP, "run_lr": ("run",),
               "run_outcome": ("run",), **{d: (d,) for d in _GROUP}}),
    "quantities": ("phantom-theory/quantities/1", "quantities file (from `phantom quantities`)",
                   {"m0": _MC, "G0": (*_MC, "mode", "optimizer"), "lambda0": (*_MC, "mode"),
                    **{d: (d,) for d in (*_MC, "mode", "optimizer")}}),
    "theory-table": ("phantom-theory/theory-table/1", "theory table",
                     {"eta_c": _MC, "log_q": _MC, "observed": _MC, "model": ("model",),
                      "context": ("context",)}),
    "prediction": ("phantom-theory/prediction/1", "prediction (from `phantom predict`)",
                   {"log_eta_c_draws": ("sample", "context"), "eta_c_median": ("context",),
                    "eta_c_hdi_low": ("context",), "eta_c_hdi_high": ("context",),
                    "anchor_eta_c": ("context",), "context": ("context",),
                    "eta_c_arch_median": ()}),
    "context-prediction": ("phantom-theory/context-prediction/1",
                           "context prediction (from `phantom predict --context`)",
                           {"log_eta_c_draws": ("sample", *_MC), "eta_c_median": _MC,
                            "eta_c_hdi_low": _MC, "eta_c_hdi_high": _MC, "anchor_eta_c": _MC,
                            "context_effect_draws": ("sample", "context"),
                            "model": ("model",), "context": ("context",)}),
    "comparison": ("phantom-theory/comparison/1", "theory comparison (from `phantom compare`)",
                   {"elpd_loao": ("theory",)}),
    "scores": ("phantom-theory/scores/1", "blind-prediction scores (from `phantom loao`)", {}),
    "fit": ("phantom-theory/fit/1", "theory fit (from `phantom fit`)", {}),
}
SCHEMAS = {kind: schema for kind, (schema, _, _) in KINDS.items()}
KIND_OF_SCHEMA = {schema: kind for kind, schema in SCHEMAS.items()}

# The identity of a run. A group is what a critical learning rate belongs to; an
# architecture (with its mode and optimizer) is what runs in one batch and what
# eta_c(a) is averaged for.
GROUP_DIMS = ("model", "context", "mode", "optimizer", "seed")
RUN_DIMS = (*GROUP_DIMS[:4], "lr", "seed")
ARCH_DIMS = ("model", "mode", "optimizer")
GEOMETRIES = ("readout", "input")
# The order parameter is also recorded in the other geometry, suffixed by its name.
SECONDARY = ("phi", "signal", "drag", "overlap_ck")

RUN_COORD_LABELS = {
    "model": ("", "model name"),
    "context": ("", "context id"),
    "mode": ("", "fine-tuning mode (full or lora)"),
    "optimizer": ("", "optimizer (sgd or adamw)"),
    "lr": ("1", "learning rate"),
    "seed": ("1", "random seed"),
}

STEP_VARIABLES = {
    "loss": ("1", "cross-entropy loss -log p_c (nats)"),
    "p_correct": ("1", "probability of the correct token c"),
    "p_competitor": ("1", "probability of the competitor token k"),
    "margin": ("1", "logit margin m = z_c - z_k"),
    "rank_correct": ("1", "rank of c among all tokens (1 = top)"),
    "rank_competitor": ("1", "rank of k among all tokens (1 = top)"),
    "entropy": ("1", "entropy of the predicted distribution (nats)"),
    "bulk_mass": ("1", "probability outside the pair, 1 - p_c - p_k"),
    "phi": ("1", "order parameter Phi = sum_i p_i (S_ci^2 - S_ki^2)"),
    "signal": ("1", "signal sigma = (p_c - p_k)(1 - S_ck^2)"),
    "drag": ("1", "drag delta = sum over the bulk of p_i (S_ci^2 - S_ki^2)"),
    "signal_normalised": ("1", "normalised signal sigma / (1 - S_ck^2) = p_c - p_k"),
    "overlap_ck": ("1", "pair overlap S_ck = u_c . u_k of normalised rows"),
    "pair_distance": ("1", "distance |U_c - U_k| between the pair's rows"),
    "attribution_readout": ("1", "readout part of Phi(t+1) - Phi(t): Phi(p_t+1, S_t) - Phi(p_t, S_t)"),
    "attribution_geometry": ("1", "geometry part of Phi(t+1) - Phi(t): Phi(p_t+1, S_t+1) - Phi(p_t+1, S_t)"),
    "attribution_drag_readout": ("1", "readout part of delta(t+1) - delta(t): delta(p_t+1, S_t) - delta(p_t, S_t)"),
    "attribution_drag_geometry": ("1", "geometry part of delta(t+1) - delta(t): delta(p_t+1, S_t+1) - delta(p_t+1, S_t)"),
    "embedding_sha256": ("", "SHA-256 of the input embedding matrix's bytes"),
    "readout_sha256": ("", "SHA-256 of the readout matrix's bytes"),
}

OUTCOME_VARIABLES = {
    "outcome": ("", "outcome: " + ", ".join(
        ("success", "transient", "kinematic_failure", "structural_failure", "unstable",
         "diverged"))),
    "flipped": ("1", "c overtook k (p_c > p_k) within T steps"),
    "flip_step": ("1", "first step with p_c > p_k (-1: never)"),
    "rank1_step": ("1", "first step with rank(c) = 1 (-1: never)"),
    "ahead_at_end": ("1", "p_c > p_k at the last finite step"),
    "transient": ("1", "outcome transient: flipped within T, no longer ahead at the end"),
    "fell_back": ("1", "flipped, then p_c <= p_k at some later step (recovered or not)"),
    "diverged_step": ("1", "first step with a non-finite value (-1: never)"),
    "drag_change": ("1", "drag at the end minus drag at step 0"),
    "drag_change_readout": ("1", "readout part of the drag's change, summed over the run"),
    "drag_change_geometry": ("1", "geometry part of the drag's change, summed over the run"),
    "drag_variation": ("1", "total variation of the drag over the run, sum |d delta_t|"),
    "drag_worsening": ("1", "-(drag change) / drag total variation, in [-1, 1]"),
    "drag_geometry_share": ("1", "geometry part's share of the drag's change (readout + geometry)"),
    "drag_trend_tau": ("1", "Kendall tau of the drag against step"),
    "drag_trend_p": ("1", "one-sided p-value of a falling drag trend"),
    "structural_kind": ("", "structural failure carried by the geometry part (geometric) or "
                            "not (readout); empty for other outcomes"),
}

JUMP_VARIABLES = {
    "start": ("1", "first increment step of the jump (Phi_t -> Phi_t+1)"),
    "end": ("1", "last increment step of the jump"),
    "size": ("1", "change in Phi over the jump"),
    "readout": ("1", "readout part of the jump's change in Phi"),
    "geometry": ("1", "geometry part of the jump's change in Phi"),
    "readout_share": ("1", "|readout| / (|readout| + |geometry|)"),
    "phantom": ("1", "phantom verdict: readout share >= phantom_share"),
    "sharpness": ("1", "largest |dPhi| / local median |dPhi| in the jump"),
    "overlap_ratio": ("1", "per-step |dS_ck| in the jump / its median over the run"),
    "distance_ratio": ("1", "per-step |d|U_c - U_k|| in the jump / its median over the run"),
    "kind": ("", "kind of jump event: onset, catapult or jump"),
    "loss_spike": ("1", "largest loss / running minimum of the loss in the event and the "
                        "window after it"),
}

RUN_VARIABLES = {
    "outcome": ("", "outcome of the run"),
    "flipped": ("1", "c overtook k within T steps"),
    "flip_step": ("1", "first step with p_c > p_k (-1: never)"),
    "diverged_step": ("1", "first non-finite step (-1: never)"),
    "loss_start": ("1", "loss at step 0 (nats)"),
    "loss_end": ("1", "loss at the last finite step (nats)"),
    "phi_start": ("1", "order parameter at step 0"),
    "phi_end": ("1", "order parameter at the last finite step"),
    "drag_change": ("1", "drag at the end minus drag at step 0"),
    "n_jumps": ("1", "number of jumps in Phi"),
    "n_phantom_jumps": ("1", "number of jumps judged phantoms"),
    **{f"n_jumps_{kind}": ("1", f"number of jumps of kind {kind}")
       for kind in ("onset", "catapult", "jump")},
    **{f"n_phantom_jumps_{kind}": ("1", f"number of jumps of kind {kind} judged phantoms")
       for kind in ("onset", "catapult", "jump")},
    "transient": ("1", "flipped within T, no longer ahead at the end"),
    "structural_kind": ("", "geometric or readout for a structural failure, else empty"),
    "drag_change_readout": ("1", "readout part of the drag's change over the run"),
    "drag_change_geometry": ("1", "geometry part of the drag's change over the run"),
    "margin_start": ("1", "margin m0 = z_c - z_k at step 0"),
    "margin_max": ("1", "eta_c's proxy f: the largest margin over steps 1..T"),
    "margin_end": ("1", "eta_max's proxy g: the margin at the last finite step"),
    "ahead_at_end": ("1", "c ahead of k at the last finite step"),
    "embedding_changes": ("1", "steps whose input-embedding SHA-256 differs from step 0's "
                               "(0 under LoRA: the matrix is byte-frozen)"),
    "readout_changes": ("1", "steps whose readout SHA-256 differs from step 0's"),
    "device": ("", "the torch device the run ran on (cpu, cuda, ...)"),
    "created": ("", "when the run's file was written (ISO time, UTC)"),
    "engine": ("", "the engine that ran it: sequential or batched"),
    "seconds_per_step": ("s", "wall seconds per logged step of the run (a batched run: its "
                              "batch's, shared by its slots)"),
    "file": ("", "trajectory file, relative to the sweep folder"),
}

GROUP_VARIABLES = {
    "eta_c": ("1", "critical learning rate: geometric midpoint of the final bracket"),
    "eta_c_lo": ("1", "largest evaluated lr that did not flip, below eta_c"),
    "eta_c_hi": ("1", "smallest evaluated lr that flipped, above eta_c"),
    "eta_c_status": ("", "resolved, below_bracket, above_bracket or undefined"),
    "eta_max": ("1", "success edge: smallest lr above eta_c that is no success (unstable, "
                     "diverged, or not ahead at T)"),
    "eta_max_lo": ("1", "lower end of the final eta_max bracket"),
    "eta_max_hi": ("1", "upper end of the final eta_max bracket"),
    "eta_max_status": ("", "resolved, below_bracket, above_bracket or undefined"),
    "non_monotone": ("1", "a run below the stability edge failed to flip above a flip"),
    "n_runs": ("1", "runs evaluated for the group"),
    "n_diverged": ("1", "diverged runs in the group"),
    "n_unstable": ("1", "unstable runs in the group"),
    "seed_lr": ("1", "where the root search of eta_c started: the at-init |m0| / (T G0)"),
}

ARCH_VARIABLES = {
    "eta_c_arch": ("1", "architecture critical lr: geometric mean over contexts and seeds"),
    "eta_c_arch_gsd": ("1", "geometric standard deviation of eta_c over contexts and seeds"),
    "eta_c_arch_min": ("1", "smallest resolved eta_c of the architecture"),
    "eta_c_arch_max": ("1", "largest resolved eta_c of the architecture"),
    "eta_c_arch_n": ("1", "number of resolved groups in the geometric mean"),
    "eta_max_arch": ("1", "geometric mean of the resolved eta_max"),
    "eta_max_arch_n": ("1", "number of resolved eta_max in the geometric mean"),
    "n_groups": ("1", "groups of the architecture in the sweep"),
}

QUANTITY_VARIABLES = {
    "m0": ("1", "initial logit margin z_c - z_k"),
    "p_correct0": ("1", "initial probability of c"),
    "p_competitor0": ("1", "initial probability of k"),
    "G0": ("1", "first-step margin growth per unit learning rate: <grad m, update direction>"),
    "lambda0": ("1", "top eigenvalue of the loss Hessian over the trainable parameters"),
    "lambda0_iterations": ("1", "Hessian-vector products used for lambda0"),
    "overlap_ck": ("1", "pair overlap S_ck of normalised readout rows"),
    "distinguishability": ("1", "pair distinguishability 1 - S_ck^2"),
    "b_c": ("1", "bulk anisotropy of c: d * mean over the bulk of S_ci^2"),
    "b_k": ("1", "bulk anisotropy of k: d * mean over the bulk of S_ki^2"),
    "leak_count": ("1", "number of bulk tokens i with u_i.w > u_c.w, w = (U_c - U_k)/|U_c - U_k| "
                        "(a count, not a share)"),
    "leak_weighted": ("1", "probability-weighted leak: bulk probability with S_ci^2 < S_ki^2 "
                           "over the bulk's probability"),
    "drag0": ("1", "drag delta at init, readout geometry"),
    "drag_growth": ("1", "drag's first-order response per unit lr <grad delta, update direction> "
                         "(total derivative: geometry moves where the readout is trainable)"),
    "eta_hat_linear": ("1", "linear at-init predictor of eta_c: |m0| / (T G0), T = attr "
                            "quantities_steps"),
    "second_order_a": ("1", "a = d' H_m d, the margin's curvature along the first update d "
                            "per unit lr (GD: d = -grad L)"),
    "second_order_b": ("1", "b = (grad m)' H_L grad L (GD); 0 for AdamW along its frozen first "
                            "direction (attr quantities_adam_second_order)"),
    "second_order_c": ("1", "C = (a + b) T (T - 1) / 2 + a T / 2: m_T - m_0 = eta T G0 + "
                            "eta^2 C + O(eta^3)"),
    "kappa": ("1", "second order's weight kappa = C |m0| / (T G0)^2 (flip: nu + kappa nu^2 = 1)"),
    "nu_hat2": ("1", "second-order reduced rate at the flip, 2 / (1 + sqrt(1 + 4 kappa))"),
    "eta_hat_second": ("1", "second-order at-init predictor of eta_c: smallest eta with "
                            "eta T G0 + eta^2 C = |m0|"),
    "second_order_no_root": ("1", "1 where eta T G0 + eta^2 C never reaches |m0| "
                                  "(1 + 4 kappa < 0)"),
    "ray_length": ("1", "ray integral's S*: int_0^S* G(theta0 + s d) ds = |m0| along the first "
                        "update direction d"),
    "eta_hat_ray": ("1", "ray-integral at-init predictor of eta_c: S* / T"),
    "ray_evaluations": ("1", "evaluations of the growth G along the ray"),
    "ray_no_root": ("1", "1 where the ray integral stays below |m0| up to the bound "
                         "(attr quantities_ray_bound)"),
    "ray_converged": ("1", "1 where successive estimates of S* agreed to quantities_ray_rtol"),
    "mean_cosine": ("1", "mean pairwise cosine of a seeded sample of rows"),
    "top_pc_share": ("1", "share of the rows' variance along the top principal component"),
    "effective_rank": ("1", "effective rank exp(H(sigma / sum sigma)) of the centred rows"),
    "effective_rank_ratio": ("1", "effective rank / d of the centred rows"),
    "embedding_dim": ("1", "embedding dimension d (columns of the readout matrix)"),
}

THEORY_TABLE_VARIABLES = {
    "eta_c": ("1", "measured critical learning rate (geometric mean over seeds)"),
    "eta_max": ("1", "measured stability edge (geometric mean over seeds)"),
    "resolved": ("1", "eta_c resolved within the sweep's bracket"),
    "m0": ("1", "initial margin"),
    "G0": ("1", "first-step margin growth per unit lr"),
    "lambda0": ("1", "top Hessian eigenvalue at initialisation"),
    "log_scale": ("1", "log eta_c = log Q - log_scale: minus log eta_hat of the table's predictor"),
    "log_q": ("1", "log Q, Q = eta_c / eta_hat of the table's predictor (attribute table_predictor)"),
    **{f"log_scale_{p}": ("1", f"minus log eta_hat of the {p} predictor at the sweep's T")
       for p in ("linear", "second", "ray")},
    **{f"log_q_{p}": ("1", f"log(eta_c / eta_hat), eta_hat the {p} predictor")
       for p in ("linear", "second", "ray")},
    "lora_cost": ("1", "LoRA cost log(eta_c^LoRA / eta_c^full), same optimizer"),
    "class_stat": ("1", "the architecture's class statistic (attribute table_class_statistic)"),
    "held_out_context": ("1", "context held out of every fit (scored, never fitted)"),
    "log_c_sharp": ("1", "log(eta_c * lambda0)"),
    "log_lambda0": ("1", "log lambda0"),
    "log_b": ("1", "log bulk anisotropy, mean of log b_c and log b_k"),
    "lora_success": ("1", "LoRA flips below its stability edge (1), does not (0), not run (NaN)"),
    "observed": ("1", "row enters the likelihoods (resolved eta_c, finite log Q and log c_sharp)"),
    "has_quantities": ("1", "measured-at-init quantities are available"),
}

PREDICTION_VARIABLES = {
    "log_eta_c_draws": ("1", "posterior predictive draws of log eta_c"),
    "eta_c_median": ("1", "predicted eta_c, median"),
    "eta_c_hdi_low": ("1", "predicted eta_c, lower end of the HDI"),
    "eta_c_hdi_high": ("1", "predicted eta_c, upper end of the HDI"),
    "anchor_eta_c": ("1", "catapult anchor 2 / lambda0"),
    "eta_c_arch_draws": ("1", "predictive draws of the architecture's eta_c"),
    "eta_c_arch_median": ("1", "predicted architecture eta_c, median"),
    "eta_c_arch_hdi_low": ("1", "predicted architecture eta_c, HDI low"),
    "eta_c_arch_hdi_high": ("1", "predicted architecture eta_c, HDI high"),
    "anchor_eta_c_arch": ("1", "2 / lambda0, geometric mean over contexts"),
}

CONTEXT_PREDICTION_VARIABLES = {
    "log_eta_c_draws": ("1", "posterior predictive draws of log eta_c on a held-out context"),
    "eta_c_median": ("1", "predicted eta_c on a held-out context, median"),
    "eta_c_hdi_low": ("1", "predicted eta_c on a held-out context, lower end of the HDI"),
    "eta_c_hdi_high": ("1", "predicted eta_c on a held-out context, upper end of the HDI"),
    "anchor_eta_c": ("1", "catapult anchor 2 / lambda0"),
    "context_effect_draws": ("1", "the held-out context's effect gamma, drawn from its "
                                  "population (one draw per posterior sample)"),
}

COMPARISON_VARIABLES = {
    "elpd_loo": ("", "PSIS-LOO expected log predictive density"),
    "elpd_loo_se": ("", "standard error of elpd_loo"),
    "p_loo": ("", "effective number of parameters"),
    "pareto_k_max": ("", "largest Pareto k of the PSIS weights"),
    "n_pareto_k_high": ("", "rows with Pareto k above 0.7 (PSIS unreliable)"),
    "elpd_loao": ("", "exact leave-one-architecture-out elpd"),
    "elpd_loao_se": ("", "standard error of elpd_loao over architectures"),
    "lpd_loao": ("", "log predictive density of the held-out architecture's rows"),
    "stacking_loo": ("", "stacking weight from the PSIS-LOO densities"),
    "stacking_loao": ("", "stacking weight from the LOAO densities"),
    "fits_passed": ("", "the full fit and every fold passed the diagnostics gate"),
    "sampler": ("", "sampler"),
}

TABLES = {
    "trajectory": {**STEP_VARIABLES, **OUTCOME_VARIABLES,
                   **{f"jump_{k}": v for k, v in JUMP_VARIABLES.items()}, **RUN_COORD_LABELS,
                   "step": ("1", "optimizer step"), "jump": ("", "jump event")},
    "sweep": {**{f"run_{k}": v for k, v in RUN_VARIABLES.items()},
              **{f"run_{d}": ("1" if d == "seed" else "", f"{d} of the run") for d in RUN_DIMS},
              "run_lr": ("1", "learning rate of the run"),
              **GROUP_VARIABLES, **ARCH_VARIABLES,
              **{d: ("", d) for d in GROUP_DIMS}},
    "quantities": {**QUANTITY_VARIABLES, **{d: ("", d) for d in
                                            ("model", "context", "mode", "optimizer",
                                             "geometry")}},
    "theory-table": THEORY_TABLE_VARIABLES,
    "prediction": PREDICTION_VARIABLES,
    "context-prediction": CONTEXT_PREDICTION_VARIABLES,
    "comparison": COMPARISON_VARIABLES,
}


def describe(kind: str, name: str) -> tuple[str, str]:
    """(units, long_name) of variable ``name`` in a file of ``kind``; a variable
    recorded in the other geometry carries its base variable's label."""
    table = TABLES.get(kind, {})
    if name in table:
        return table[name]
    base, _, geometry = name.rpartition("_")
    if kind == "trajectory" and base in SECONDARY and geometry in GEOMETRIES:
        units, long_name = STEP_VARIABLES[base]
        return units, f"{long_name}, in the {geometry} geometry"
    raise KeyError(f"no description for {kind} variable {name!r}")


def labelled(values, dims, kind: str, name: str) -> xr.Variable:
    """An xarray Variable carrying the units and long name of ``name``."""
    units, long_name = describe(kind, name)
    return xr.Variable(dims, values, {"long_name": long_name, **({"units": units} if units else {})})


def label(ds: xr.Dataset, kind: str) -> xr.Dataset:
    """Attach units and long names from ``kind``'s table to every variable and
    coordinate of ``ds`` that it describes (in place; returns ``ds``)."""
    for name, var in ds.variables.items():
        try:
            units, long_name = describe(kind, str(name))
        except KeyError:
            continue
        var.attrs.update(long_name=long_name, **({"units": units} if units else {}))
    return ds


def schema_of(path) -> str:
    """The ``phantom_schema`` attribute of a netCDF file ('' if unreadable or none)."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return str(ds.attrs.get(SCHEMA_ATTR, ""))
    except (OSError, ValueError):
        return ""


def open_dataset(path, kind: str, group: str | None = None) -> xr.Dataset:
    """Load a file of ``kind`` written by this toolkit into memory, checking its
    schema attribute and the variables the kind must hold."""
    schema, what, required = KINDS[kind]
    path = Path(path)
    if path.is_dir():
        raise PhantomError(f"{path} is a folder; give the {what}")
    if not path.is_file():
        raise PhantomError(f"no such file: {path}")
    try:
        ds = xr.load_dataset(path, engine="netcdf4", group=group)
    except Exception as error:  # netCDF4 raises OSError, RuntimeError or ValueError
        raise PhantomError(
            f"{path} is not a readable netCDF file ({type(error).__name__}: {error}); "
            f"give a {what} written by phantom") from None
    found = ds.attrs.get(SCHEMA_ATTR)
    if found != schema:
        raise PhantomError(f"{path} is not a phantom-theory {what} (its {SCHEMA_ATTR} "
                           f"attribute is {found!r}, expected {schema!r})")
    missing = [name for name in required if name not in ds.variables]
    if missing:
        raise PhantomError(f"{path} says it is a {what} but lacks {', '.join(missing)}; it was "
                           "not written by phantom or was changed since: write it again")
    for name, dims in required.items():
        if not set(dims) <= set(ds[name].dims):
            raise PhantomError(f"{path} says it is a {what} but its {name} has dims "
                               f"{ds[name].dims}, not {dims}; it was not written by phantom or "
                               "was changed since: write it again")
    return ds


def _encoding(ds: xr.Dataset) -> dict:
    return {name: {"zlib": True, "complevel": 4} for name, var in ds.variables.items()
            if var.dtype.kind in "fiub" and var.ndim > 0}


def write_dataset(ds: xr.Dataset, path, kind: str, overwrite: bool = False) -> Path:
    """Stamp ``ds`` with ``kind``'s schema, label it, and write it atomically;
    refuses an existing file unless ``overwrite``."""
    ds = ds.copy()
    ds.attrs[SCHEMA_ATTR] = SCHEMAS[kind]
    label(ds, kind)
    with atomic_write(path, overwrite) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds))
    return Path(path)
