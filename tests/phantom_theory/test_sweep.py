"""The sweep Dataset: the architecture level of the eta_c table, and the outcomes and
jumps reported per band of lr / eta_c, never pooled (THEORY.md sections 4 to 6)."""

import math

import numpy as np
import pytest

from phantom_theory.errors import PhantomError
from phantom_theory.schema import GROUP_VARIABLES, RUN_VARIABLES
from phantom_theory.sweep import (
    BandOptions,
    band_tables,
    build_sweep,
    jump_counts,
    outcome_counts,
    run_ratios,
    sweep_table,
)


def test_the_architecture_eta_c_is_the_geometric_mean_over_contexts(small_sweep):
    _, _, ds = small_sweep
    values = ds.eta_c.sel(model="tiny-neox", mode="lora", optimizer="sgd").values.ravel()
    expected = np.exp(np.log(values).mean())
    assert float(ds.eta_c_arch.sel(model="tiny-neox", mode="lora", optimizer="sgd")) == \
        pytest.approx(expected)


def test_the_tables_of_a_real_sweep_print(small_sweep):
    _, _, ds = small_sweep
    text = sweep_table(ds)
    assert "outcomes per group and band" in text and "jumps by kind and band" in text


# -- a synthetic sweep with known counts ---------------------------------------------

ETA_C = {"full": 1e-3, "lora": 1e-2}


def record(mode, ratio, outcome, kind="", jumps=(), context="ctx", ahead=None, **extra):
    """A run record at lr = ratio * eta_c; ``jumps`` holds (kind, phantom) pairs."""
    eta_c = ETA_C[mode] if context == "ctx" else 1e-3
    r = {name: math.nan for name in RUN_VARIABLES}
    flipped = outcome in ("success", "transient")
    r.update(model="m", context=context, mode=mode, optimizer="sgd", seed=0,
             lr=ratio * eta_c, outcome=outcome, flipped=flipped, structural_kind=kind,
             ahead_at_end=(outcome == "success") if ahead is None else ahead,
             transient=outcome == "transient", file="", n_jumps=len(jumps),
             n_phantom_jumps=sum(p for _, p in jumps))
    for k in ("onset", "catapult", "jump"):
        r[f"n_jumps_{k}"] = sum(j == k for j, _ in jumps)
        r[f"n_phantom_jumps_{k}"] = sum(j == k and p for j, p in jumps)
    r.update(extra)
    return r


def group(eta_c, status="resolved"):
    summary = {name: math.nan for name in GROUP_VARIABLES}
    summary.update(eta_c=eta_c, eta_c_status=status, eta_max_status="undefined",
                   non_monotone=False, n_runs=1, n_diverged=0, n_unstable=0)
    return summary


RUNS = [
    record("full", 0.5, "kinematic_failure"),
    record("full", 0.7, "structural_failure", "readout"),
    record("full", 2.0, "success"),
    record("full", 5.0, "structural_failure", "geometric", [("jump", False)]),
    record("full", 10.0, "transient", jumps=[("catapult", True)]),
    record("full", 100.0, "success", jumps=[("onset", True)]),
    record("full", 300.0, "success", jumps=[("onset", False), ("jump", False)]),
    record("full", 1000.0, "diverged"),
    record("lora", 2.0, "success", jumps=[("onset", True)]),
    record("lora", 50.0, "unstable"),
    record("full", 3.0, "success", context="unresolved", jumps=[("onset", True)]),
]
GROUPS = {("m", "ctx", "full", "sgd", 0): group(ETA_C["full"]),
          ("m", "ctx", "lora", "sgd", 0): group(ETA_C["lora"]),
          ("m", "unresolved", "full", "sgd", 0): group(math.nan, "above_bracket")}


@pytest.fixture(scope="module")
def synthetic():
    return build_sweep(RUNS, GROUPS, {})


def test_each_run_is_scaled_by_its_own_groups_eta_c(synthetic):
    ratios = run_ratios(synthetic)
    lora = synthetic.run_mode.values == "lora"
    assert sorted(np.round(ratios[lora], 9)) == [2.0, 50.0]
    assert sorted(np.round(ratios[~lora & np.isfinite(ratios)], 9)) == \
        [0.5, 0.7, 2.0, 5.0, 10.0, 100.0, 300.0, 1000.0]
    assert np.isnan(ratios[synthetic.run_context.values == "unresolved"]).all()


def test_outcomes_are_counted_per_group_and_band(synthetic):
    counts = outcome_counts(synthetic)
    full = counts.sel(model="m", context="ctx", mode="full", optimizer="sgd", seed=0)
    assert full.sel(band="<1").sel(outcome_class=["kinematic_failure", "structural_readout"]
                                   ).values.tolist() == [1, 1]
    assert full.sel(band="[1, 3)", outcome_class="success") == 1
    in_3_30 = full.sel(band="[3, 30)")
    assert (int(in_3_30.sel(outcome_class="structural_geometric")),
            int(in_3_30.sel(outcome_class="transient")), int(in_3_30.sum())) == (1, 1, 2)
    top = full.sel(band=">=30")
    assert (int(top.sel(outcome_class="success")), int(top.sel(outcome_class="diverged"))) == (2, 1)
    lora = counts.sel(model="m", context="ctx", mode="lora", optimizer="sgd", seed=0)
    assert int(lora.sel(band="<1").sum()) == 0 and int(lora.sel(band=">=30",
                                                               outcome_class="unstable")) == 1
    # the unresolved group's run is in no band
    assert int(counts.sel(context="unresolved").sum()) == 0
    assert int(counts.sum()) == len(RUNS) - 1


def test_the_phantom_share_is_per_kind_band_and_mode_never_pooled(synthetic):
    jumps = jump_counts(synthetic).sel(model="m", optimizer="sgd")
    full, lora = jumps.sel(mode="full"), jumps.sel(mode="lora")
    assert full.phantom_share.sel(band=">=30", kind="onset") == 0.5
    assert full.phantom_share.sel(band="[3, 30)", kind="catapult") == 1.0
    assert full.phantom_share.sel(band="[3, 30)", kind="jump") == 0.0
    assert full.phantom_share.sel(band=">=30", kind="jump") == 0.0
    assert np.isnan(float(full.phantom_share.sel(band="<1", kind="onset")))
    assert lora.phantom_share.sel(band="[1, 3)", kind="onset") == 1.0
    # pooled over modes the onsets would read 2 of 3; the table never says that
    assert int(jumps.jumps.sel(kind="onset").sum()) == 3
    assert full.runs.sel(band=">=30") == 3 and lora.runs.sel(band=">=30") == 1


def test_the_band_below_one_is_shown_only_where_runs_are(synthetic):
    text = band_tables(synthetic)
    rows = [line.split() for line in text.splitlines() if line.startswith("m ")]
    full_bands = [row[5] for row in rows if row[2] == "full" and row[1] == "ctx"]
    lora_bands = [row[5] for row in rows if row[2] == "lora" and row[1] == "ctx"]
    assert full_bands == ["<1", "[1,", "[3,", ">=30"]
    assert "<1" not in lora_bands
    assert "(1 runs of groups without a resolved eta_c are in no band)" in text
    assert "1/2 (50%)" in text


def test_the_band_edges_are_an_option(synthetic):
    bands = BandOptions(band_edges=(10.0,))
    assert bands.labels == ["<10", ">=10"]
    counts = outcome_counts(synthetic, bands).sel(mode="full", context="ctx", model="m",
                                                   optimizer="sgd", seed=0)
    assert counts.sum("outcome_class").values.tolist() == [4, 4]


@pytest.mark.parametrize("edges", [(), (3.0, 1.0), (0.0, 1.0), (1.0, float("inf"))])
def test_bad_band_edges_are_refused(edges):
    with pytest.raises(PhantomError, match="band_edges"):
        BandOptions(band_edges=edges)


def test_records_written_before_the_end_state_and_the_kinds_are_read_honestly():
    """An old record: a 'success' no longer ahead at T is counted transient, a
    structural failure without its sub-label is 'unknown', and a run without jump
    kinds is left out of the jump table."""
    old = [{k: v for k, v in r.items() if k not in ("structural_kind", "transient")
            and not k.startswith(("n_jumps_", "n_phantom_jumps_"))}
           for r in (record("full", 2.0, "success", ahead=False),
                     record("full", 0.5, "structural_failure"))]
    ds = build_sweep(old, {("m", "ctx", "full", "sgd", 0): group(ETA_C["full"])}, {})
    counts = outcome_counts(ds).sel(model="m", context="ctx", mode="full", optimizer="sgd",
                                    seed=0)
    assert int(counts.sel(band="[1, 3)", outcome_class="transient")) == 1
    assert int(counts.sel(band="<1", outcome_class="structural_unknown")) == 1
    assert bool(ds.run_transient.values[ds.run_lr.values == 2e-3][0])
    assert int(jump_counts(ds).runs.sum()) == 0
    assert "2 runs were recorded without jump kinds" in band_tables(ds)
    # a sweep table written before the variables existed reads the same
    thin = ds.drop_vars([v for v in ds.variables if str(v).startswith(
        ("run_structural_kind", "run_transient", "run_n_jumps_", "run_n_phantom_jumps_"))])
    assert "run_structural_kind" not in thin and "run_n_phantom_jumps" in thin
    assert outcome_counts(thin).equals(outcome_counts(ds))
    assert band_tables(thin) == band_tables(ds)
