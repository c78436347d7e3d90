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
