"""Contexts from TOML and their tokens in context: a bad context is one clear error
that names the word and its tokens."""

import pytest

from phantom_theory.errors import PhantomError
from runner.contexts.pool import Context, load_contexts, read_contexts, tokenize_context
from runner.models import load_model


@pytest.fixture(scope="module")
def tokenizer():
    return load_model("tiny-gpt2").tokenizer


def test_a_core_context_tokenizes_to_one_token_per_word(tokenizer):
    context = load_contexts()["shame-guilt"]
    tokens = tokenize_context(tokenizer, context, "tiny-gpt2")
    assert tokens.correct_id != tokens.competitor_id
    assert tokenizer.convert_ids_to_tokens(tokens.correct_id).lstrip("Ġ▁ ") == "shame"


def test_a_word_outside_the_vocabulary_is_named(tokenizer):
    context = Context("x", "The weather today is", "zzyzx", "sunny")
    with pytest.raises(PhantomError, match="'zzyzx'"):
        tokenize_context(tokenizer, context, "tiny-gpt2")


def test_two_words_of_one_token_are_refused(tokenizer):
    context = Context("x", "I feel a deep sense of", "shame", "shame")
    with pytest.raises(PhantomError, match="same token"):
        tokenize_context(tokenizer, context, "tiny-gpt2")


def test_a_context_file_lacking_a_field_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[context]]\nid = "a"\nsentence = "s"\ncorrect = "x"\n')
    with pytest.raises(PhantomError, match="competitor"):
        read_contexts(path)


def test_an_id_defined_twice_differently_is_refused(tmp_path):
    for name, word in (("a.toml", "x"), ("b.toml", "y")):
        (tmp_path / name).write_text(f'[[context]]\nid = "a"\nsentence = "s"\ncorrect = "{word}"\n'
                                     'competitor = "z"\n')
    with pytest.raises(PhantomError, match="defined twice"):
        load_contexts([tmp_path / "a.toml", tmp_path / "b.toml"])


# -- the pool's shape --------------------------------------------------------------------

def test_the_pool_holds_many_distinct_pairs_named_by_their_words():
    """At least 150 pairs in core.toml and pool.toml, each unordered word pair once (a
    pair written both ways would clash with the reversed ids of the selections)."""
    from runner.contexts.pool import pool_paths

    contexts = [c for path in pool_paths() for c in read_contexts(path)]
    assert len(contexts) >= 150
    pairs = [frozenset((c.correct, c.competitor)) for c in contexts]
    assert len(set(pairs)) == len(pairs)
    for c in contexts:
        assert c.id == f"{c.correct}-{c.competitor}", c
        assert not any(ch.isspace() for ch in c.correct + c.competitor), c
        assert c.sentence == c.sentence.strip() and (c.sentence[-1].isalpha()
                                                     or c.sentence[-1] == ","), c


# -- orientation per model ---------------------------------------------------------------

def test_an_oriented_context_swaps_its_words_for_the_models_that_prefer_the_correct_one():
    context = Context("shame~guilt", "She felt a deep sense of", "shame", "guilt",
                      orientation=(("a", True), ("b", False)))
    a, b = context.for_model("a"), context.for_model("b")
    assert (a.correct, a.competitor, a.id, a.orientation) == ("guilt", "shame", "shame~guilt", ())
    assert (b.correct, b.competitor) == ("shame", "guilt")
    assert a.for_model("c") == a   # oriented once, it is plain
    with pytest.raises(PhantomError, match="not for 'c'"):
        context.for_model("c")


def test_tokenizing_an_oriented_context_targets_the_models_own_word(tokenizer):
    context = Context("shame~guilt", "She felt a deep sense of", "shame", "guilt",
                      orientation=(("tiny-gpt2", True),))
    tokens = tokenize_context(tokenizer, context, "tiny-gpt2")
    assert tokenizer.convert_ids_to_tokens(tokens.correct_id).lstrip("▁") == "guilt"
    assert tokens.context.correct == "guilt"


def test_a_context_file_records_the_orientation_per_model(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[context]]\nid = "a~b"\nsentence = "s"\ncorrect = "a"\ncompetitor = "b"\n'
                    '[context.models."m-1.5b"]\nreversed = true\n[context.models.n]\n'
                    'reversed = false\n')
    (context,) = read_contexts(path)
    assert context.orientation == (("m-1.5b", True), ("n", False))
    path.write_text(path.read_text().replace("reversed = false", 'reversed = "no"'))
    with pytest.raises(PhantomError, match="reversed = true or false"):
        read_contexts(path)


# -- contexts given on the command line --------------------------------------------------

def test_extra_contexts_are_known_inside_their_block_only():
    from runner.contexts.pool import extra_contexts, get_context

    extra = Context("glad-happy-x", "I am so", "glad", "happy", source="x.toml")
    with extra_contexts([extra]) as ids:
        assert ids == ["glad-happy-x"] and get_context("glad-happy-x") == extra
    with pytest.raises(PhantomError, match="unknown context 'glad-happy-x'"):
        get_context("glad-happy-x")


def test_an_extra_context_clashing_with_a_known_id_is_refused():
    from runner.contexts.pool import extra_contexts

    clash = Context("shame-guilt", "Another sentence", "shame", "guilt", source="x.toml")
    with pytest.raises(PhantomError, match="defined twice"), extra_contexts([clash]):
        pass


def test_an_adhoc_contexts_id_depends_on_its_sentence_and_words_only():
    from runner.contexts.pool import adhoc_context

    one = adhoc_context("The movie was so", "funny", "hilarious")
    assert one == adhoc_context("The movie was so ", " funny", "hilarious ")
    assert one.id != adhoc_context("The film was so", "funny", "hilarious").id
    assert one.id != adhoc_context("The movie was so", "hilarious", "funny").id
