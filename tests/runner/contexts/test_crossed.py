"""The crossed context set: the same pairs on every model, oriented per model, their
margins spread, a few held out, and the error that says why too few qualify.

``select_crossed`` is tested on small screened Datasets with known answers; the
token filter on the tiny models' word-level tokenizer and on a small BPE tokenizer
built here (so that a word really splits); the whole chain (select, write, read,
tokenize per model, a sweep spec) on the two tiny models in a data folder of
their own.
"""

import math
import re
import shutil
import tomllib

import numpy as np
import pytest
import torch
import xarray as xr

from phantom_theory.errors import PhantomError
from runner.contexts.crossed import (
    CrossedOptions,
    check_token_filter,
    held_out_contexts,
    held_out_positions,
    load_tokenizer,
    read_crossed,
    select_crossed,
    select_crossed_set,
    token_problems,
)
from runner.contexts.pool import Context, data_dir, get_context, load_contexts, tokenize_context
from runner.models import last_logits, load_model

MODELS = ("tiny-gpt2", "tiny-neox")


def screen(margins: dict[str, float], ranks: dict | None = None) -> xr.Dataset:
    """A screening shaped like ``screen_contexts``'s: {pool id: z_c - z_k}, the
    preferred word at rank 1 and the other at rank 2 unless ``ranks`` says
    otherwise ({pool id: (rank of correct, rank of competitor)})."""
    ranks = ranks or {}
    rows = []
    for cid, m in margins.items():
        correct, competitor = cid.split("-")
        rc, rk = ranks.get(cid, (1, 2) if m > 0 else (2, 1))
        rows.append({"correct": correct, "competitor": competitor,
                     "correct_tokens": f"['{correct}']", "competitor_tokens": f"['{competitor}']",
                     "in_vocabulary": True, "single_token": True, "rank_correct": rc,
                     "rank_competitor": rk, "margin": m, "overlap_ck": 0.5,
                     "p_correct": 0.3 if m > 0 else 0.1, "p_competitor": 0.1 if m > 0 else 0.3})
    ds = xr.Dataset({name: ("context", np.array([r[name] for r in rows],
                                                dtype=object if isinstance(rows[0][name], str)
                                                else None))
                     for name in rows[0]}, coords={"context": list(margins)})
    ds["competitor_ahead"] = ds.margin < 0
    return ds


def pool_of(*ids) -> dict[str, Context]:
    return {cid: Context(cid, f"The sentence of {cid} is", *cid.split("-")) for cid in ids}


def choose(screens: dict[str, dict[str, float]], **options):
    pool = pool_of(*{cid for margins in screens.values() for cid in margins})
    return select_crossed({m: screen(margins) for m, margins in screens.items()}, pool,
                          CrossedOptions(**{"n_held_out": 0, **options}))


# -- orientation -----------------------------------------------------------------------

def test_each_model_gets_the_word_it_ranks_lower_as_target():
    """Model a prefers 'shame' (z_c - z_k = +2), model b prefers 'guilt' (-1): the
    pair is kept, swapped on a only; m0 < 0 on both, with ranks and p swapped."""
    (row,) = choose({"a": {"shame-guilt": 2.0}, "b": {"shame-guilt": -1.0}}, n=1)
    a, b = row["models"]["a"], row["models"]["b"]
    assert (row["id"], row["correct"], row["competitor"]) == ("shame~guilt", "shame", "guilt")
    assert (a["reversed"], a["correct"], a["competitor"], a["margin"]) == (
        True, "guilt", "shame", -2.0)
    assert (b["reversed"], b["correct"], b["competitor"], b["margin"]) == (
        False, "shame", "guilt", -1.0)
    for oriented in (a, b):
        assert oriented["rank_correct"] == 2 and oriented["rank_competitor"] == 1
        assert oriented["p_correct"] < oriented["p_competitor"]
    assert row["margin_geomean"] == pytest.approx(math.sqrt(2.0), abs=1e-4)


def test_the_orientation_never_drops_a_pair():
    """Every sign pattern over three models survives: orientation is a covariate."""
    signs = {f"w{i}-v{i}": [(-1) ** (i >> j & 1) for j in range(3)] for i in range(8)}
    screens = {m: {cid: 1.5 * s[j] for cid, s in signs.items()} for j, m in enumerate("abc")}
    rows = choose(screens, n=8)
    assert {row["pool_id"] for row in rows} == set(signs)
    for row in rows:
        flips = [row["models"][m]["reversed"] for m in "abc"]
        assert flips == [s > 0 for s in signs[row["pool_id"]]]


# -- the window ----------------------------------------------------------------------

def test_the_window_applies_on_every_model_and_keeps_its_ends():
    screens = {"a": {"in-low": -0.3, "in-high": 6.0, "low-b": 1.0, "high-b": 1.0},
               "b": {"in-low": 1.0, "in-high": -1.0, "low-b": -0.2999, "high-b": 6.0001}}
    assert sorted(r["pool_id"] for r in choose(screens, n=2)) == ["in-high", "in-low"]
    with pytest.raises(PhantomError, match=r"only 2 pool pair\(s\) qualify"):
        choose(screens, n=3)


def test_a_tie_cannot_be_oriented_and_is_dropped():
    with pytest.raises(PhantomError, match="outside"):
        choose({"a": {"tie-x": 0.0}, "b": {"tie-x": 1.0}}, n=1)


def test_a_preferred_word_past_max_rank_on_one_model_drops_the_pair():
    pool = pool_of("deep-x", "kept-x")
    screens = {"a": screen({"deep-x": -1.0, "kept-x": -1.0}, {"deep-x": (150, 101)}),
               "b": screen({"deep-x": -1.0, "kept-x": -1.0})}
    rows = select_crossed(screens, pool, CrossedOptions(n=1, n_held_out=0))
    assert [r["pool_id"] for r in rows] == ["kept-x"]
    with pytest.raises(PhantomError, match="past rank 100 on 1"):
        select_crossed(screens, pool, CrossedOptions(n=2, n_held_out=0))


# -- the spread ----------------------------------------------------------------------

def test_the_choice_spreads_log_g_from_the_smallest_to_the_largest():
    """30 candidates with |m0| evenly spaced in log over [0.3, 6]; 5 chosen: the two
    ends and three between, their log gaps within one candidate step of equal."""
    margins = np.exp(np.linspace(math.log(0.3), math.log(6.0), 30))
    ids = [f"w{i:02d}-x" for i in range(30)]
    rows = choose({"a": dict(zip(ids, -margins, strict=True)),
                   "b": dict(zip(ids, -margins, strict=True))}, n=5)
    g = np.log([r["margin_geomean"] for r in rows])
    assert g[0] == pytest.approx(math.log(0.3), abs=1e-3)
    assert g[-1] == pytest.approx(math.log(6.0), abs=1e-3)
    step = (math.log(6.0) - math.log(0.3)) / 29
    assert np.ptp(np.diff(g)) <= step * 1.01   # g is written to 4 decimals


def test_a_dense_middle_does_not_crowd_out_the_tails():
    """Twenty pairs near |m0| = 1.5 and one each at 0.4 and 5: both tails are taken
    (choosing by closeness to one target margin would take neither)."""
    margins = {f"mid{i:02d}-x": -(1.4 + 0.01 * i) for i in range(20)}
    margins.update({"low-x": -0.4, "high-x": -5.0})
    rows = choose({"a": margins, "b": margins}, n=4)
    ids = [r["pool_id"] for r in rows]
    assert ids[0] == "low-x" and ids[-1] == "high-x"


def test_g_is_the_geometric_mean_over_the_models():
    (row,) = choose({"a": {"p-q": -0.5}, "b": {"p-q": 2.0}, "c": {"p-q": -4.0}}, n=1)
    assert row["margin_geomean"] == pytest.approx(round((0.5 * 2 * 4) ** (1 / 3), 4))


def test_the_choice_does_not_depend_on_the_order_of_the_screening():
    rng = np.random.default_rng(0)
    margins = {f"w{i:02d}-x": float(-np.exp(rng.uniform(-1.2, 1.8))) for i in range(25)}
    shuffled = dict(sorted(margins.items(), key=lambda kv: rng.uniform()))
    first = choose({"a": margins, "b": margins}, n=8, n_held_out=2)
    again = choose({"a": shuffled, "b": shuffled}, n=8, n_held_out=2)
    assert first == again


# -- the held-out pairs ----------------------------------------------------------------

def test_held_out_positions_are_the_middles_of_equal_slices():
    assert held_out_positions(15, 3) == {2, 7, 12}
    assert held_out_positions(12, 3) == {2, 6, 10}
    assert held_out_positions(10, 0) == set()
    for n in range(2, 30):
        for h in range(n):
            assert len(held_out_positions(n, h)) == h and max(held_out_positions(n, h) | {0}) < n


def test_the_held_out_pairs_sit_at_their_positions_in_order_of_g():
    margins = {f"w{i:02d}-x": -0.3 * 1.2 ** i for i in range(17)}
    rows = choose({"a": margins, "b": margins}, n=15, n_held_out=3)
    assert len(rows) == 15
    g = [r["margin_geomean"] for r in rows]
    assert g == sorted(g)
    assert {i for i, r in enumerate(rows) if r["held_out"]} == {2, 7, 12}


@pytest.mark.parametrize("options,message", [
    ({"n": 0}, "at least 1, not 0"),
    ({"n": 5, "n_held_out": 5}, "below n = 5"),
    ({"n_held_out": -1}, "not -1"),
    ({"min_margin": 0.0}, "0 < min_margin < max_margin"),
    ({"min_margin": 3.0, "max_margin": 2.0}, "0 < min_margin < max_margin"),
    ({"max_rank": 0}, "max_rank must be at least 1"),
])
def test_bad_crossed_options_are_a_clear_error(options, message):
    with pytest.raises(PhantomError, match=re.escape(message)):
        CrossedOptions(**options)


# -- the token filter ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE tokenizer trained here on a few sentences: 'funny' is one
    token, 'hilarious' (never seen whole) splits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = ["The movie was so funny and the food was so good"] * 50 + ["hilar ious"]
    backend.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_a_word_that_splits_is_named_with_its_tokens(bpe_tokenizer):
    contexts = [Context("funny-good", "The movie was so", "funny", "good"),
                Context("funny-hilarious", "The movie was so", "funny", "hilarious")]
    problems = token_problems(bpe_tokenizer, contexts)
    assert list(problems) == ["funny-hilarious"]
    assert re.fullmatch(r"'hilarious' is \d tokens \['Ġ.*'\]", problems["funny-hilarious"])


def test_too_few_single_token_pairs_say_which_tokenizer_split_which_words(bpe_tokenizer):
    """Word level (tiny-gpt2): a pool word outside its vocabulary; BPE: a split."""
    tiny = load_model("tiny-gpt2").tokenizer
    contexts = [Context("shame-guilt", "She felt a deep sense of", "shame", "guilt"),
                Context("funny-hilarious", "The movie was so", "funny", "hilarious")]
    problems = {"tiny-gpt2": token_problems(tiny, contexts),
                "bpe": token_problems(bpe_tokenizer, contexts)}
    with pytest.raises(PhantomError) as error:
        check_token_filter(contexts, problems, CrossedOptions(n=2, n_held_out=0))
    message = str(error.value)
    assert "only 0 pool pair(s) are single tokens in every tokenizer" in message
    assert "fewer than the 2 asked for" in message
    assert "tiny-gpt2 splits 1 pair(s)" in message and "'funny' is not in the vocabulary" in message
    assert "bpe splits 2 pair(s)" in message and "'hilarious' is" in message
    assert "'shame' is" in message   # BPE never saw it: bytes


def test_a_word_merged_into_the_sentence_is_no_single_token():
    """A tokenizer whose tokens cross the space: the sentence's tokens are then no
    prefix of sentence + word, and the word does not count as one token."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "so": 1, " ": 2, "funny": 3, "so funny": 4, "good": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(
        pattern=Regex("so funny|so|funny|good| "), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    problems = token_problems(tokenizer, [Context("funny-good", "so", "funny", "good")])
    assert "merges into the sentence" in problems["funny-good"]
    with pytest.raises(PhantomError, match="merges into the sentence"):
        tokenize_context(tokenizer, Context("funny-good", "so", "funny", "good"), "merger")


# -- the whole chain on the tiny models ---------------------------------------------------

@pytest.fixture(scope="module")
def crossed_data(tmp_path_factory):
    """A data folder whose pool is core.toml plus the pair 'guilt-shame' (the core
    pair shame-guilt written the other way round), and the crossed set the two tiny
    models select from it: (folder, rows)."""
    root = tmp_path_factory.mktemp("crossed-data")
    (root / "contexts" / "selected").mkdir(parents=True)
    shutil.copy(data_dir() / "contexts" / "core.toml", root / "contexts")
    core = tomllib.loads((root / "contexts" / "core.toml").read_text())["context"]
    shame = next(c for c in core if c["id"] == "shame-guilt")
    (root / "contexts" / "pool.toml").write_text(
        f'[[context]]\nid = "guilt-shame"\nsentence = "{shame["sentence"]}"\n'
        'correct = "guilt"\ncompetitor = "shame"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHANTOM_DATA", str(root))
        rows, report = select_crossed_set(list(MODELS), CrossedOptions(
            n=6, n_held_out=2, min_margin=0.1), root / "contexts" / "selected" / "crossed.toml")
    return root, rows, report


@pytest.fixture
def in_crossed_data(crossed_data, monkeypatch):
    monkeypatch.setenv("PHANTOM_DATA", str(crossed_data[0]))
    return crossed_data


def test_the_tiny_crossed_set_reads_back_as_written(in_crossed_data):
    _, rows, report = in_crossed_data
    crossed = read_crossed()
    assert crossed.models == MODELS
    assert crossed.contexts == tuple(r["id"] for r in rows)
    assert crossed.held_out == held_out_contexts() == tuple(r["id"] for r in rows if r["held_out"])
    assert len(crossed.held_out) == 2 and set(crossed.fitted()) | set(crossed.held_out) == set(
        crossed.contexts)
    assert "tiny-gpt2" in report and "held" in report
    table = tomllib.loads(crossed.path.read_text())
    assert table["selection"]["pool"] == 11 and table["selection"]["single_token_in_all"] == 11
    for model in MODELS:
        assert table["model"][model]["revision"].startswith("builtin-sha256:")
        for row in table["context"]:
            oriented = row["models"][model]
            assert oriented["margin"] < 0 and oriented["rank_correct"] > oriented[
                "rank_competitor"]


def test_a_crossed_context_is_tokenized_in_each_models_own_orientation(in_crossed_data):
    """The tiny models plant the competitor ahead: 'shame~guilt' keeps the pool's
    order and 'guilt~shame' (if chosen) is reversed, the target 'shame' either way;
    the tokenized target is the word the model ranks lower."""
    _, rows, _ = in_crossed_data
    for model in MODELS:
        loaded = load_model(model)
        for row in rows:
            t = tokenize_context(loaded.tokenizer, get_context(row["id"]), model)
            oriented = row["models"][model]
            assert t.context.correct == oriented["correct"]
            assert (oriented["reversed"], t.context.correct) in ((False, row["correct"]),
                                                                 (True, row["competitor"]))
            with torch.no_grad():
                z = last_logits(loaded.model, torch.tensor([t.input_ids]))[0]
            assert float(z[t.correct_id] - z[t.competitor_id]) == pytest.approx(
                oriented["margin"], abs=1e-3)


def test_a_model_outside_the_crossed_set_is_told_how_to_add_it(in_crossed_data):
    _, rows, _ = in_crossed_data
    context = get_context(rows[0]["id"])
    with pytest.raises(PhantomError, match="--crossed tiny-gpt2 tiny-neox tiny-gpt2-deep"):
        context.for_model("tiny-gpt2-deep")
    with pytest.raises(PhantomError, match="covers tiny-gpt2, tiny-neox, not smollm2-135m"):
        read_crossed().check_models(["tiny-gpt2", "smollm2-135m"])


def test_a_sweep_spec_takes_the_crossed_set_and_records_its_held_out_pairs(in_crossed_data,
                                                                           tmp_path):
    from runner.sweep.spec import SweepSpec, load_spec

    path = tmp_path / "crossed.toml"
    path.write_text('models = ["tiny-gpt2", "tiny-neox"]\ncontexts = "crossed"\nmodes = ["lora"]\n'
                    'optimizers = ["sgd"]\nsteps = 5\n')
    spec = load_spec(path)
    crossed = read_crossed()
    assert spec.contexts == crossed.contexts
    assert all(spec.contexts_of(m) == crossed.contexts for m in MODELS)   # crossed: the same
    assert spec.held_out == crossed.held_out and len(spec.held_out) == 2
    assert spec.crossed["orientation"] == crossed.orientation
    assert SweepSpec.from_json(spec.to_json()) == spec
    path.write_text(path.read_text().replace('"tiny-neox"', '"tiny-gpt2-deep"'))
    with pytest.raises(PhantomError, match="not tiny-gpt2-deep"):
        load_spec(path)


def test_a_spec_without_a_crossed_set_keeps_its_json():
    from runner.sweep.spec import SweepSpec

    spec = SweepSpec(name="x", models=("tiny-gpt2",), contexts=("start-begin",))
    assert '"crossed"' not in spec.to_json() and spec.held_out == ()


def test_a_broken_crossed_file_fails_only_where_it_is_needed(in_crossed_data, tmp_path,
                                                             monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(in_crossed_data[0], root)
    (root / "contexts" / "selected" / "crossed.toml").write_text("[selection]\nkind = 1\n")
    monkeypatch.setenv("PHANTOM_DATA", str(root))
    assert "shame-guilt" in load_contexts()           # everything else still loads
    with pytest.raises(PhantomError, match="crossed.toml cannot be used.*--crossed"):
        read_crossed()
    with pytest.raises(PhantomError, match="crossed.toml was skipped"):
        get_context("shame~guilt")


# -- the committed crossed set -------------------------------------------------------------

def test_the_committed_crossed_set_is_consistent_with_the_pool_and_its_own_rules():
    """data/contexts/selected/crossed.toml: at least 12 pairs and 3 held out, over at
    least three registry models; every pair a pool pair with the pool's sentence,
    oriented per model with m0 < 0 inside the window it was made with, g the
    geometric mean of the per-model |m0|, the held-out pairs at their positions."""
    from runner.contexts.crossed import crossed_path
    from runner.contexts.pool import pool_paths
    from runner.models import REGISTRY

    path = crossed_path()
    table = tomllib.loads(path.read_text())
    selection, rows = table["selection"], table["context"]
    options = CrossedOptions(**{k: selection[k] for k in
                                ("n", "n_held_out", "min_margin", "max_margin", "max_rank")})
    crossed = read_crossed(path)
    assert len(crossed.models) >= 3 and set(crossed.models) <= set(REGISTRY)
    assert len(rows) == options.n >= 12 and options.n_held_out >= 3
    assert len(crossed.held_out) == options.n_held_out and len(crossed.fitted()) >= 10
    pool = load_contexts(pool_paths())
    g = [row["margin_geomean"] for row in rows]
    assert g == sorted(g)
    assert {i for i, row in enumerate(rows) if row["held_out"]} == held_out_positions(
        options.n, options.n_held_out)
    assert [row["id"] for row in rows if row["held_out"]] == list(crossed.held_out)
    for model in crossed.models:
        assert table["model"][model]["gguf_sha256"] == REGISTRY[model].gguf_sha256
    for row in rows:
        source = pool[row["pool_id"]]
        assert (source.sentence, source.correct, source.competitor) == (
            row["sentence"], row["correct"], row["competitor"])
        assert row["id"] == f"{row['correct']}~{row['competitor']}"
        sizes = []
        for model in crossed.models:
            m = row["models"][model]
            words = ((row["competitor"], row["correct"]) if m["reversed"]
                     else (row["correct"], row["competitor"]))
            assert (m["correct"], m["competitor"]) == words, (row["id"], model)
            assert options.min_margin <= -m["margin"] <= options.max_margin, (row["id"], model)
            assert 1 <= m["rank_competitor"] < m["rank_correct"], (row["id"], model)
            assert m["rank_competitor"] <= options.max_rank
            assert 0 < m["p_correct"] < m["p_competitor"] < 1
            assert -1 <= m["overlap_ck"] <= 1
            sizes.append(-m["margin"])
        assert row["margin_geomean"] == pytest.approx(math.prod(sizes) ** (1 / len(sizes)),
                                                      abs=2e-4)


@pytest.mark.real
def test_the_committed_crossed_set_is_single_token_and_oriented_for_each_pulled_model():
    """Needs the pulled models: every word is one token in its sentence, and each
    model's tokenized target is the word it was oriented to."""
    from runner.models.gguf import is_cached

    crossed = read_crossed()
    pulled = [m for m in crossed.models if is_cached(m)]
    if not pulled:
        pytest.skip("none of the crossed set's models is pulled")
    for model in pulled:
        tokenizer = load_tokenizer(model)
        for cid in crossed.contexts:
            t = tokenize_context(tokenizer, get_context(cid), model)
            reversed_ = crossed.orientation[model][cid]
            assert t.context.correct == (cid.split("~")[1] if reversed_ else cid.split("~")[0])
