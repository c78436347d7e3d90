"""Near-synonym contexts: loading them from data/contexts/*.toml and tokenizing
them for a model.

A context is one sentence plus two candidate next words: the ``correct`` word that
fine-tuning pushes up and its near-synonym ``competitor``. Words are tokenized in
context (sentence + " " + word, minus the sentence's own tokens), so the leading
space is handled the way each tokenizer needs it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from phantom_theory.errors import PhantomError
from phantom_theory.provenance import PACKAGE_ROOT


def data_dir() -> Path:
    """The toolkit's data folder: $PHANTOM_DATA, else data/ beside the packages."""
    path = Path(os.environ.get("PHANTOM_DATA", PACKAGE_ROOT / "data"))
    if not path.is_dir():
        raise PhantomError(
            f"the data folder {path} does not exist; set PHANTOM_DATA to the data/ folder "
            "of a phantom-theory checkout"
        )
    return path


@dataclass(frozen=True)
class Context:
    """One near-synonym context: a sentence, its ``correct`` next word and the
    ``competitor``, with the file it came from."""

    id: str
    sentence: str
    correct: str
    competitor: str
    source: str = ""


def read_contexts(path) -> list[Context]:
    """The [[context]] tables of one TOML file."""
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text())["context"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as error:
        raise PhantomError(f"cannot read contexts from {path}: {error}") from None
    contexts = []
    for table in tables:
        missing = {"id", "sentence", "correct", "competitor"} - set(table)
        if missing:
            raise PhantomError(f"a context in {path} lacks {sorted(missing)}")
        contexts.append(Context(
            id=table["id"], sentence=table["sentence"].rstrip(),
            correct=table["correct"].strip(), competitor=table["competitor"].strip(),
            source=path.name,
        ))
    return contexts


SELECTED = "selected"


def load_contexts(paths=None) -> dict[str, Context]:
    """All contexts by id: the pool (data/contexts/*.toml) and the per-model
    selections (data/contexts/selected/*.toml), or those of the given files. A
    selection repeats pool contexts or reverses them (under the reversed id); an
    id defined two different ways is an error."""
    if paths is None:
        root = data_dir() / "contexts"
        paths = [*sorted(root.glob("*.toml")), *sorted((root / SELECTED).glob("*.toml"))]
    contexts: dict[str, Context] = {}
    for path in paths:
        for context in read_contexts(path):
            known = contexts.get(context.id)
            if known is not None:
                if (known.sentence, known.correct, known.competitor) != (
                        context.sentence, context.correct, context.competitor):
                    raise PhantomError(f"context id {context.id!r} is defined twice, "
                                       f"differently ({known.source} and {path.name})")
                continue
            contexts[context.id] = context
    return contexts


def selected_path(model: str) -> Path:
    """The selection file of ``model``: data/contexts/selected/MODEL.toml, '/' written
    as '--'."""
    return data_dir() / "contexts" / SELECTED / f"{model.replace('/', '--')}.toml"


def selected_contexts(model: str) -> list[str]:
    """The context ids selected for ``model`` (data/contexts/selected/MODEL.toml)."""
    path = selected_path(model)
    if not path.is_file():
        raise PhantomError(f"no contexts are selected for {model!r} ({path} is missing); run "
                           f"`phantom contexts select {model}`")
    return [c.id for c in read_contexts(path)]


def get_context(context_id: str, contexts: dict[str, Context] | None = None) -> Context:
    """The context ``context_id`` from ``contexts`` (default: all of ``load_contexts``)."""
    contexts = load_contexts() if contexts is None else contexts
    if context_id not in contexts:
        known = ", ".join(sorted(contexts)[:12])
        raise PhantomError(
            f"unknown context {context_id!r}; known ids include {known} "
            "(`phantom contexts list` shows them all)"
        )
    return contexts[context_id]


@dataclass(frozen=True)
class TokenizedContext:
    """A context tokenized for one model: the sentence's input ids and the single
    token ids of the two words."""

    context: Context
    input_ids: tuple[int, ...]
    correct_id: int
    competitor_id: int


def word_tokens(tokenizer, sentence: str, word: str) -> list[int]:
    """The token ids ``word`` adds after ``sentence`` (with a separating space)."""
    prefix = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{sentence} {word}", add_special_tokens=False)["input_ids"]
    if full[:len(prefix)] != prefix:
        # The tokenizer merged the word into the sentence's last token; the word's
        # own tokens are then what differs from the shared prefix.
        shared = next((i for i, (a, b) in enumerate(zip(prefix, full, strict=False)) if a != b),
                      len(prefix))
        return full[shared:]
    return full[len(prefix):]


def model_input_ids(tokenizer, sentence: str) -> list[int]:
    """The sentence as the model reads it: with BOS where the tokenizer adds one,
    never with a trailing EOS."""
    ids = list(tokenizer(sentence, add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and len(ids) > 1 and ids[-1] == eos:
        plain = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        if plain and plain[-1] != eos:
            ids = ids[:-1]
    return ids


def describe_tokens(tokenizer, ids) -> str:
    """The tokens of ``ids`` as a printable list of their strings, for error messages."""
    return "[" + ", ".join(repr(t) for t in tokenizer.convert_ids_to_tokens(list(ids))) + "]"


def tokenize_context(tokenizer, context: Context, model_name: str = "this model") -> TokenizedContext:
    """Token ids of the sentence and of both words; a word that is not exactly one
    token is an error that names its tokens."""
    ids = {}
    for role in ("correct", "competitor"):
        word = getattr(context, role)
        tokens = word_tokens(tokenizer, context.sentence, word)
        if len(tokens) != 1:
            raise PhantomError(
                f"context {context.id!r}: the {role} word {word!r} is {len(tokens)} tokens with "
                f"{model_name}'s tokenizer {describe_tokens(tokenizer, tokens)}; "
                "choose a context whose words are single tokens (`phantom contexts check`)"
            )
        if tokens[0] == tokenizer.unk_token_id:
            raise PhantomError(
                f"context {context.id!r}: the {role} word {word!r} is not in {model_name}'s "
                "vocabulary (it maps to the unknown token); choose another context"
            )
        ids[role] = tokens[0]
    if ids["correct"] == ids["competitor"]:
        raise PhantomError(f"context {context.id!r}: both words map to the same token")
    return TokenizedContext(context, tuple(model_input_ids(tokenizer, context.sentence)),
                            ids["correct"], ids["competitor"])
