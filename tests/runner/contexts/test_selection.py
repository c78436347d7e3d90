"""Screening and selecting contexts for a model.

``select_contexts`` is tested on small screened Datasets built here, so that its
rules (orientation, the margin window, the order by closeness to target_margin in
log |m0|) are checked on known answers, not on whatever a committed selection
happens to hold. The committed selections are only checked to be readable and
consistent with the pool and with their own [selection] table, not for their order.
"""

import math
import re
import tomllib

import numpy as np
import pytest
import xarray as xr

from phantom_theory.errors import PhantomError
from runner.contexts.pool import Context, data_dir, load_contexts, read_contexts
from runner.contexts.selection import (
    SelectOptions,
    screen_contexts,
    screen_table,
    select_contexts,
    write_selection,
)
from runner.models import load_model
from runner.models.tiny import tiny_contexts

# the per-model selections (the crossed set has tests of its own, test_crossed.py)
SELECTED = sorted(p for p in (data_dir() / "contexts" / "selected").glob("*.toml")
                  if p.stem != "crossed")


def screened(*rows):
    """A screened Dataset shaped like ``screen_contexts``'s, and the pool of its
    contexts. Each row is a dict with the pool's id (``"correct-competitor"``), the
    base margin z_c - z_k and the ranks; the rest has defaults."""
    full = []
    for row in rows:
        correct, competitor = row["id"].split("-")
        r = {"id": row["id"], "correct": correct, "competitor": competitor,
             "correct_tokens": f"['{correct}']", "competitor_tokens": f"['{competitor}']",
             "in_vocabulary": True, "single_token": True, "rank_correct": 2,
             "rank_competitor": 1, "margin": -1.5, "overlap_ck": 0.5, "p_correct": 0.1,
             "p_competitor": 0.4}
        r.update(row)
        full.append(r)
    names = [name for name in full[0] if name != "id"]
    ds = xr.Dataset(
        {name: ("context", np.array([r[name] for r in full],
                                    dtype=object if isinstance(full[0][name], str) else None))
         for name in names},
        coords={"context": [r["id"] for r in full]},
        attrs={"model": "synthetic", "model_revision": "none"})
    ds["competitor_ahead"] = ds.margin < 0
    pool = {r["id"]: Context(r["id"], f"The sentence of {r['id']} is", r["correct"],
                             r["competitor"]) for r in full}
    return ds, pool


def selected_ids(*rows, **options):
    ds, pool = screened(*rows)
    return [row["id"] for row in select_contexts(ds, pool, SelectOptions(**options))]


@pytest.fixture(scope="module")
def tiny_screened():
    loaded = load_model("tiny-neox")
    return loaded, screen_contexts(loaded, list(tiny_contexts().values()))


def test_the_synthetic_screening_has_the_variables_of_a_real_one(tiny_screened):
    _, real = tiny_screened
    synthetic, _ = screened({"id": "a-b"})
    assert set(synthetic.data_vars) == set(real.data_vars)
    for name in real.data_vars:
        assert synthetic[name].dtype.kind == real[name].dtype.kind, name


# -- orientation ------------------------------------------------------------------

def test_a_pair_the_base_model_already_orders_the_pools_way_is_kept():
    ds, pool = screened({"id": "shame-guilt", "margin": -1.2, "rank_correct": 4,
                         "rank_competitor": 1, "p_correct": 0.05, "p_competitor": 0.3,
                         "overlap_ck": 0.61234})
    (row,) = select_contexts(ds, pool)
    assert (row["id"], row["pool_id"], row["reversed"]) == ("shame-guilt", "shame-guilt", False)
    assert (row["correct"], row["competitor"]) == ("shame", "guilt")
    assert (row["rank_correct"], row["rank_competitor"]) == (4, 1)
    assert (row["p_correct"], row["p_competitor"]) == (0.05, 0.3)
    assert row["margin"] == -1.2 and row["overlap_ck"] == 0.6123
    assert row["sentence"] == pool["shame-guilt"].sentence


def test_a_pair_the_base_model_orders_against_the_pool_is_reversed():
    """The target is the word the base model ranks lower: when it prefers the pool's
    `correct` word, the pair flips, with its ranks, probabilities and margin."""
    ds, pool = screened({"id": "shame-guilt", "margin": 2.5, "rank_correct": 1,
                         "rank_competitor": 7, "p_correct": 0.6, "p_competitor": 0.05})
    (row,) = select_contexts(ds, pool)
    assert (row["id"], row["pool_id"], row["reversed"]) == ("guilt-shame", "shame-guilt", True)
    assert (row["correct"], row["competitor"]) == ("guilt", "shame")
    assert (row["rank_correct"], row["rank_competitor"]) == (7, 1)
    assert (row["p_correct"], row["p_competitor"]) == (0.05, 0.6)
    assert row["margin"] == -2.5
    assert row["sentence"] == pool["shame-guilt"].sentence


def test_every_selected_target_starts_behind():
    rows = [{"id": f"w{i}-v{i}", "margin": m, "rank_correct": 1 if m > 0 else 3,
             "rank_competitor": 3 if m > 0 else 1}
            for i, m in enumerate([-0.7, 0.9, -3.0, 4.0, 1.4])]
    ds, pool = screened(*rows)
    selection = select_contexts(ds, pool)
    assert len(selection) == 5
    for row in selection:
        assert row["margin"] < 0 and row["rank_correct"] > row["rank_competitor"]
        assert row["reversed"] == (float(ds.margin.sel(context=row["pool_id"])) > 0)


def test_screening_and_selecting_a_tiny_model_keeps_its_planted_orientation(tiny_screened):
    """The tiny models are built with the competitor ahead on every context: all
    are kept the pool's way round."""
    _, ds = tiny_screened
    selection = select_contexts(ds, tiny_contexts(), SelectOptions(n=len(ds.context)))
    assert {row["id"] for row in selection} == set(ds.context.values)
    assert not any(row["reversed"] for row in selection)


def test_screening_and_selecting_a_tiny_model_reverses_a_pair_given_the_other_way(
        tiny_screened):
    loaded, _ = tiny_screened
    planted = tiny_contexts()["shame-guilt"]
    flipped = Context("guilt-shame", planted.sentence, planted.competitor, planted.correct)
    ds = screen_contexts(loaded, [flipped])
    assert float(ds.margin[0]) > 0
    (row,) = select_contexts(ds, {flipped.id: flipped})
    assert (row["id"], row["pool_id"], row["reversed"]) == ("shame-guilt", "guilt-shame", True)
    assert (row["correct"], row["competitor"]) == ("shame", "guilt")
    assert row["rank_correct"] == int(ds.rank_competitor[0])
    assert row["rank_competitor"] == int(ds.rank_correct[0])
    assert row["p_correct"] == float(ds.p_competitor[0]) < row["p_competitor"]


# -- the window ------------------------------------------------------------------

def test_the_margin_window_keeps_its_ends_and_drops_what_lies_outside():
    rows = [{"id": "in-low", "margin": -0.25}, {"id": "in-high", "margin": -8.0},
            {"id": "too-small", "margin": -0.2499}, {"id": "too-large", "margin": -8.0001},
            {"id": "large-reversed", "margin": 9.0, "rank_correct": 1, "rank_competitor": 2},
            {"id": "small-reversed", "margin": 0.1, "rank_correct": 1, "rank_competitor": 2}]
    assert sorted(selected_ids(*rows)) == ["in-high", "in-low"]


def test_the_margin_window_is_an_option():
    rows = [{"id": f"m{i}-x", "margin": -m} for i, m in enumerate([0.3, 1.0, 3.0, 6.0])]
    assert sorted(selected_ids(*rows, min_margin=0.5, max_margin=4.0)) == ["m1-x", "m2-x"]


def test_a_preferred_word_ranked_past_max_rank_drops_the_pair():
    """max_rank bounds the rank of the word the base model prefers (the selected
    competitor): for a reversed pair that is the pool's `correct` word."""
    rows = [{"id": "top-kept", "rank_correct": 150, "rank_competitor": 100},
            {"id": "deep-dropped", "rank_correct": 150, "rank_competitor": 101},
            {"id": "reversed-dropped", "margin": 1.5, "rank_correct": 101,
             "rank_competitor": 150},
            {"id": "reversed-kept", "margin": 1.5, "rank_correct": 100, "rank_competitor": 150}]
    assert sorted(selected_ids(*rows)) == ["kept-reversed", "top-kept"]
    assert len(selected_ids(*rows, max_rank=101)) == 4


@pytest.mark.parametrize("change", [{"single_token": False}, {"margin": np.nan},
                                    {"margin": 0.0}])
def test_a_multi_token_unscored_or_tied_row_is_skipped(change):
    """A row that is not single-token (its margin is then NaN in a real screening,
    but even a finite one must not count), has no margin, or has no orientation."""
    assert selected_ids({"id": "skip-me", **change}, {"id": "keep-me"}) == ["keep-me"]


def test_a_row_outside_the_vocabulary_is_skipped(tiny_screened):
    """Screening marks a pool word outside the tiny vocabulary as no single token;
    selection then has nothing to choose from it."""
    loaded, _ = tiny_screened
    outside = [c for cid, c in load_contexts().items() if cid not in tiny_contexts()][:5]
    ds = screen_contexts(loaded, outside)
    selection = select_contexts(ds, {c.id: c for c in outside}, SelectOptions(n=len(outside)))
    unknown = set(ds.context.values[~ds.in_vocabulary.values])
    assert unknown and not unknown & {row["pool_id"] for row in selection}


def test_a_pool_word_outside_the_tiny_vocabulary_is_not_a_single_token():
    """Pool contexts the tiny models were not built on map to <unk>: screening must
    say so instead of counting them as single-token pairs."""
    pool = load_contexts()
    outside = [c for cid, c in pool.items() if cid not in tiny_contexts()]
    loaded = load_model("tiny-gpt2")
    ds = screen_contexts(loaded, outside[:5])
    unknown = ~ds.in_vocabulary
    assert unknown.any() and not ds.single_token.values[unknown.values].any()
    assert "not in the vocabulary" in screen_table(ds)


# -- the order -------------------------------------------------------------------

def test_the_selection_is_ordered_by_closeness_to_target_margin_in_log_margin():
    """|log(|m0| / 1.5)|: 1.6 (0.065), 1.4 (0.069), 2.4 (0.47), 0.8 (0.63), 6 (1.39).
    In plain |m0| 0.8 (0.7 away) would come before 2.4 (0.9 away)."""
    margins = {"a-x": -6.0, "b-x": -0.8, "c-x": -1.4, "d-x": 2.4, "e-x": -1.6}
    rows = [{"id": cid, "margin": m, **({"rank_correct": 1, "rank_competitor": 2} if m > 0
                                        else {})} for cid, m in margins.items()]
    assert selected_ids(*rows) == ["e-x", "c-x", "x-d", "b-x", "a-x"]
    assert selected_ids(*rows, n=2) == ["e-x", "c-x"]


def test_target_margin_moves_the_order():
    rows = [{"id": f"m{m}-x", "margin": -m} for m in (0.5, 1.5, 4.0)]
    assert selected_ids(*rows, target_margin=4.0) == ["m4.0-x", "m1.5-x", "m0.5-x"]
    assert selected_ids(*rows, target_margin=0.5) == ["m0.5-x", "m1.5-x", "m4.0-x"]


def test_the_selection_holds_at_most_n_rows():
    rows = [{"id": f"w{i}-x", "margin": -1.0 - 0.1 * i} for i in range(12)]
    assert len(selected_ids(*rows)) == 10
    assert len(selected_ids(*rows, n=3)) == 3
    assert len(selected_ids(*rows, n=50)) == 12


# -- the options -----------------------------------------------------------------

@pytest.mark.parametrize("options,message", [
    ({"n": 0}, "the number of contexts to select must be at least 1, not 0"),
    ({"n": -3}, "at least 1, not -3"),
    ({"min_margin": 2.0, "max_margin": 1.0}, "0 <= min_margin < max_margin"),
    ({"min_margin": -0.1}, "0 <= min_margin < max_margin"),
    ({"target_margin": 0.0}, "target_margin must be positive"),
    ({"max_rank": 0}, "max_rank must be at least 1"),
])
def test_bad_select_options_are_a_clear_error(options, message):
    with pytest.raises(PhantomError, match=re.escape(message)):
        SelectOptions(**options)


# -- the written and the committed selections --------------------------------------

def test_a_written_selection_reads_back_in_its_order(tiny_screened, tmp_path):
    loaded, ds = tiny_screened
    options = SelectOptions(n=4)
    rows = select_contexts(ds, tiny_contexts(), options)
    path = write_selection(rows, loaded.info, options, tmp_path / "tiny-neox.toml",
                           n_screened=ds.sizes["context"])
    assert [c.id for c in read_contexts(path)] == [row["id"] for row in rows]
    table = tomllib.loads(path.read_text())
    assert table["selection"]["n"] == 4 and table["selection"]["screened"] == ds.sizes["context"]
    assert [c["reversed"] for c in table["context"]] == [row["reversed"] for row in rows]
    with pytest.raises(PhantomError, match="overwrite"):
        write_selection(rows, loaded.info, options, path, n_screened=1)


def test_there_are_committed_selections():
    assert SELECTED, "data/contexts/selected/ holds no selection"


@pytest.mark.parametrize("path", SELECTED, ids=[p.stem for p in SELECTED])
def test_a_committed_selection_is_readable_and_consistent(path):
    """Readable, unique ids, each an oriented pool context that passes the window
    the file says it was selected with. Not its order: that is the rule's, tested
    above, and a re-selection may change it."""
    table = tomllib.loads(path.read_text())
    selection, rows = table["selection"], table["context"]
    options = SelectOptions(**{k: selection[k] for k in
                               ("n", "target_margin", "min_margin", "max_margin", "max_rank")})
    assert selection["model"].replace("/", "--") == path.stem
    assert [c.id for c in read_contexts(path)] == [row["id"] for row in rows]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) and 1 <= len(ids) <= options.n
    pool = load_contexts(sorted((data_dir() / "contexts").glob("*.toml")))
    everything = load_contexts()   # pool and selections together: no id defined twice
    for row in rows:
        for word in (row["correct"], row["competitor"]):
            assert word and word == word.strip() and not any(ch.isspace() for ch in word), row
        assert row["correct"] != row["competitor"]
        assert row["id"] == f"{row['correct']}-{row['competitor']}"
        source = pool[row["pool_id"]]
        assert source.sentence == row["sentence"] == everything[row["id"]].sentence
        expected = ((source.competitor, source.correct) if row["reversed"]
                    else (source.correct, source.competitor))
        assert (row["correct"], row["competitor"]) == expected, row
        assert options.min_margin <= -row["margin"] <= options.max_margin, row
        assert 1 <= row["rank_competitor"] < row["rank_correct"], row
        assert row["rank_competitor"] <= options.max_rank, row
        assert 0 < row["p_correct"] < row["p_competitor"] < 1, row
        assert math.isfinite(row["overlap_ck"]) and -1 <= row["overlap_ck"] <= 1, row


@pytest.mark.real
@pytest.mark.parametrize("path", SELECTED, ids=[p.stem for p in SELECTED])
def test_a_committed_selection_is_single_token_for_its_model(path):
    """Needs the pulled model: every selected word is one token of its tokenizer,
    in its sentence."""
    from runner.contexts.pool import tokenize_context
    from runner.models.gguf import is_cached

    model = tomllib.loads(path.read_text())["selection"]["model"]
    if not is_cached(model):
        pytest.skip(f"{model} is not pulled (phantom models pull {model})")
    tokenizer = load_model(model).tokenizer
    for context in read_contexts(path):
        tokenize_context(tokenizer, context, model)   # a PhantomError names the tokens
