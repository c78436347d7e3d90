"""The built-in tiny models: real HF classes, a planted near-synonym geometry."""

import pytest

from runner.contexts.selection import screen_contexts
from runner.models import is_tied, load_model
from runner.models.tiny import _built, build_tiny, tiny_contexts

MODELS = ["tiny-gpt2", "tiny-neox"]


@pytest.fixture(scope="module", params=MODELS)
def screened(request):
    loaded = load_model(request.param)
    return loaded, screen_contexts(loaded, list(tiny_contexts().values()))


def test_tiny_gpt2_is_tied_and_tiny_neox_is_not():
    assert is_tied(load_model("tiny-gpt2").model)
    assert not is_tied(load_model("tiny-neox").model)


def test_the_classes_are_real_transformers_models():
    assert type(load_model("tiny-gpt2").model).__name__ == "GPT2LMHeadModel"
    assert type(load_model("tiny-neox").model).__name__ == "GPTNeoXForCausalLM"


def test_every_context_word_is_one_token(screened):
    _, ds = screened
    assert ds.single_token.all()


def test_the_base_model_ranks_the_competitor_first_on_every_context(screened):
    _, ds = screened
    assert (ds.rank_competitor < ds.rank_correct).all()


def test_planted_pair_overlaps_lie_in_the_near_synonym_band(screened):
    _, ds = screened
    assert ((ds.overlap_ck > 0.8) & (ds.overlap_ck < 0.95)).all()


def test_the_base_margins_are_moderate(screened):
    _, ds = screened
    assert ((ds.margin < -0.3) & (ds.margin > -2.0)).all()


def test_the_build_is_deterministic():
    first = build_tiny("tiny-neox")[2]
    _built.cache_clear()
    assert build_tiny("tiny-neox")[2] == first


@pytest.mark.parametrize("model", MODELS)
def test_a_planted_context_starts_failing(run_of, model):
    ds = run_of(model, "lora")
    assert ds.p_competitor[0] > ds.p_correct[0] and ds.phi[0] < 0
