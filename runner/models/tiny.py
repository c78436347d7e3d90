"""Built-in tiny models with a planted near-synonym geometry.

``tiny-gpt2`` (tied embeddings, GPT-2) and ``tiny-neox`` (untied, GPT-NeoX) are
real Hugging Face configurations and model classes, built in memory in well under a
second with no network. Their tokenizer is word level over every word of the
core contexts (data/contexts/core.toml) plus filler "bulk" tokens. Their readout is
planted: for every context the competitor's row sits at overlap 0.80-0.95 with
the correct word's row, and the base model puts the competitor ahead by a
moderate margin. tiny-gpt2's bulk shares one direction (an anisotropic bulk, as
in real GPT-2); tiny-neox's bulk is isotropic, so the two fall on either side of
the bulk-anisotropy question the study asks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedTokenizerFast,
)

from phantom_theory.errors import PhantomError

from ..contexts.pool import Context, data_dir, load_contexts, tokenize_context
from .catalog import TINY_MODELS, TinySpec

SPECIALS = ("<pad>", "<unk>", "<eos>")


def _word_tokenizer(contexts: list[Context], min_vocab: int) -> PreTrainedTokenizerFast:
    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    words = set()
    for context in contexts:
        for text in (context.sentence, context.correct, context.competitor):
            pieces = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
            words.update(piece for piece, _ in pieces)
    vocab_words = [*SPECIALS, *sorted(words)]
    size = max(min_vocab, 64 * math.ceil((len(vocab_words) + 64) / 64))
    vocab_words += [f"▁bulk{i:04d}" for i in range(size - len(vocab_words))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab_words)}, unk_token="<unk>"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                   unk_token="<unk>", eos_token="<eos>")


def _model(spec: TinySpec, tokenizer) -> torch.nn.Module:
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=spec.tied)
    if spec.family == "gpt2":
        config = GPT2Config(n_positions=64, n_embd=spec.d_model, n_layer=spec.n_layer,
                            n_head=spec.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, **common)
        return GPT2LMHeadModel(config)
    config = GPTNeoXConfig(hidden_size=spec.d_model, num_hidden_layers=spec.n_layer,
                           num_attention_heads=spec.n_head, intermediate_size=4 * spec.d_model,
                           max_position_embeddings=64, hidden_dropout=0.0,
                           attention_dropout=0.0, **common)
    return GPTNeoXForCausalLM(config)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _orthogonalise(v: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    for b in basis:
        v = v - (v @ b) * b
    return _unit(v)


def _last_hidden(model, inputs: list[tuple[int, ...]]) -> torch.Tensor:
    """The readout's input h at the last position of every context: (n, d)."""
    captured = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _module, args: captured.append(args[0][0, -1]))
    try:
        with torch.no_grad():
            for ids in inputs:
                model(torch.tensor([ids]))
    finally:
        hook.remove()
    return torch.stack(captured)


def _plant(model, tokenizer, contexts: list[Context], spec: TinySpec, gen: torch.Generator):
    U = model.get_output_embeddings().weight
    V, d = U.shape
    a = spec.bulk_alignment
    shared = _unit(torch.randn(d, generator=gen))
    perp = math.sqrt(1 - a * a)

    def along_shared(unit_perp):
        return spec.row_norm * (a * shared + perp * unit_perp)

    bulk = torch.randn(V, d, generator=gen)
    if a > 0:
        bulk = bulk - (bulk @ shared)[:, None] * shared
    with torch.no_grad():
        U.copy_(along_shared(_unit(bulk)))

    tokenized, planted_words = [], set()
    for context in contexts:
        try:
            t = tokenize_context(tokenizer, context, "tiny")
        except PhantomError:
            continue  # a multi-token word cannot be planted; `run` reports it
        if {t.correct_id, t.competitor_id} & planted_words:
            continue  # one row cannot serve two pairs; the first context wins
        planted_words |= {t.correct_id, t.competitor_id}
        tokenized.append(t)
    pairs = [(t.correct_id, t.competitor_id) for t in tokenized]
    lo, hi = spec.overlap_range
    overlaps = lo + (hi - lo) * torch.rand(len(pairs), generator=gen)
    lo, hi = spec.margin_range
    margins = lo + (hi - lo) * torch.rand(len(pairs), generator=gen)
    raw_frames = torch.randn(len(pairs), 2, d, generator=gen)

    # The pair rows feed back into the hidden states when a planted word also
    # appears inside a sentence (tied model), so plant until the states settle.
    for _ in range(8):
        hidden = _last_hidden(model, [t.input_ids for t in tokenized])
        with torch.no_grad():
            for (c, k), h, s_ck, m0, raw in zip(pairs, hidden, overlaps, margins, raw_frames, strict=True):
                h_perp = h - (h @ shared) * shared if a > 0 else h
                basis = [shared] if a > 0 else []
                h_hat = _orthogonalise(h_perp, basis)
                e = _orthogonalise(raw[0], [*basis, h_hat])
                f = _orthogonalise(raw[1], [*basis, h_hat, e])
                scale = spec.row_norm * perp * h_perp.norm()
                kappa_k = min(spec.competitor_lead / scale, 0.9)
                kappa_c = kappa_k - m0 / scale
                s_perp = (s_ck - a * a) / (1 - a * a)
                beta = (s_perp - kappa_c * kappa_k) / math.sqrt(1 - kappa_k**2)
                gamma2 = 1 - kappa_c**2 - beta**2
                if gamma2 < 0:
                    raise RuntimeError("planted overlap and margin are not compatible")
                u_k = kappa_k * h_hat + math.sqrt(1 - kappa_k**2) * e
                u_c = kappa_c * h_hat + beta * e + torch.sqrt(gamma2) * f
                U[k] = along_shared(u_k)
                U[c] = along_shared(u_c)
        settled = _last_hidden(model, [t.input_ids for t in tokenized])
        if torch.allclose(settled, hidden, atol=1e-6):
            break
    _verify(model, tokenized)


def _verify(model, tokenized):
    hidden = _last_hidden(model, [t.input_ids for t in tokenized])
    U = model.get_output_embeddings().weight.detach()
    unit = _unit(U)
    for t, h in zip(tokenized, hidden, strict=True):
        logits = U @ h
        s_ck = float(unit[t.correct_id] @ unit[t.competitor_id])
        if not logits[t.competitor_id] > logits[t.correct_id] or not 0.79 < s_ck < 0.96:
            raise RuntimeError(f"planting failed for context {t.context.id}")


def weights_digest(model) -> str:
    """SHA-256 over the state dict's names and bytes: the built model's revision."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# The tiny models' vocabulary and planted pairs come from these files of the pool,
# so that growing the pool for real models leaves the tiny models as they are.
TINY_CONTEXT_FILES = ("core.toml",)


@functools.cache
def _built(name: str, contexts: tuple[Context, ...]):
    spec = TINY_MODELS[name]
    tokenizer = _word_tokenizer(list(contexts), spec.min_vocab)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = _model(spec, tokenizer).eval()
    _plant(model, tokenizer, list(contexts), spec, torch.Generator().manual_seed(spec.seed))
    model.name_or_path = name
    return model, tokenizer, weights_digest(model)


def tiny_contexts() -> dict[str, Context]:
    """The contexts the tiny models are built on (their vocabulary and planted pairs)."""
    files = [data_dir() / "contexts" / f for f in TINY_CONTEXT_FILES]
    return load_contexts([f for f in files if f.is_file()])


def build_tiny(name: str):
    """A fresh copy of the built-in tiny model ``name``: (model, tokenizer, digest)."""
    model, tokenizer, digest = _built(name, tuple(tiny_contexts().values()))
    return copy.deepcopy(model), tokenizer, digest
