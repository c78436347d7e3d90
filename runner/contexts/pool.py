"""Near-synonym contexts: loading them from data/contexts/*.toml and tokenizing
them for a model.

A context is one sentence plus two candidate next words: the ``correct`` word that
fine-tuning pushes up and its near-synonym ``competitor``. Words are tokenized in
context (sentence + " " + word, minus the sentence's own tokens), so the leading
space is handled the way each tokenizer needs it.

A context of the crossed set (data/contexts/selected/crossed.toml) is the same
sentence and word pair on every model, oriented per model: each model's target is
the word that model ranks lower. Its ``orientation`` records, per model, whether
the words are swapped, and ``tokenize_context`` applies it for the model at hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tomllib
from dataclasses import dataclass, replace
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
    ``competitor``, with the file it came from. ``orientation`` is empty for a
    context trained as written, and ((model, reversed), ...) for one oriented per
    model (the crossed set)."""

    id: str
    sentence: str
    correct: str
    competitor: str
    source: str = ""
    orientation: tuple[tuple[str, bool], ...] = ()

    def for_model(self, model: str) -> Context:
        """The context as ``model`` trains it: a context oriented per model has its
        words swapped where ``model`` ranks the written ``correct`` word higher;
        any other context is returned as it is."""
        if not self.orientation:
            return self
        reversed_ = dict(self.orientation)
        if model not in reversed_:
            raise PhantomError(
                f"context {self.id!r} is oriented per model ({self.source}) for "
                f"{', '.join(reversed_)}, not for {model!r}; re-select the crossed set with "
                f"{model} among its models (`phantom contexts select --crossed "
                f"{' '.join([*reversed_, model])} --overwrite`)")
        correct, competitor = ((self.competitor, self.correct) if reversed_[model]
                               else (self.correct, self.competitor))
        return replace(self, correct=correct, competitor=competitor, orientation=())


CONTEXT_FIELDS = ("id", "sentence", "correct", "competitor")
SCHEMA_HINT = ("each context is a [[context]] table with the strings id, sentence, correct "
               "and competitor (see data/contexts/pool.toml)")


def _parse_context(table, path: Path, index: int) -> Context:
    if not isinstance(table, dict):
        raise PhantomError(f"context {index + 1} in {path} is not a table; {SCHEMA_HINT}")
    missing = [name for name in CONTEXT_FIELDS if name not in table]
    if missing:
        raise PhantomError(f"a context in {path} lacks {missing}; {SCHEMA_HINT}")
    for name in CONTEXT_FIELDS:
        if not isinstance(table[name], str) or not table[name].strip():
            raise PhantomError(f"the {name} of context {index + 1} in {path} must be a "
                               f"non-empty string, not {table[name]!r}")
    context = Context(id=table["id"].strip(), sentence=table["sentence"].rstrip(),
                      correct=table["correct"].strip(), competitor=table["competitor"].strip(),
                      source=path.name)
    if context.correct == context.competitor:
        raise PhantomError(f"context {context.id!r} in {path}: the correct and the competitor "
                           f"word are both {context.correct!r}; give two different words")
    models = table.get("models", {})
    if not isinstance(models, dict) or not all(
            isinstance(m, dict) and isinstance(m.get("reversed"), bool) for m in models.values()):
        raise PhantomError(f"context {context.id!r} in {path}: each [context.models.MODEL] "
                           "table needs reversed = true or false")
    return replace(context, orientation=tuple((name, m["reversed"]) for name, m in models.items()))


def read_contexts(path) -> list[Context]:
    """The [[context]] tables of one TOML file; a missing, empty or malformed file is
    an error naming it."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PhantomError(f"no such contexts file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PhantomError(f"cannot read contexts from {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise PhantomError(f"{path} is not valid TOML: {error}") from None
    tables = table.get("context")
    if not isinstance(tables, list) or not tables:
        raise PhantomError(f"{path} holds no contexts; {SCHEMA_HINT}")
    contexts = [_parse_context(t, path, i) for i, t in enumerate(tables)]
    seen = set()
    for context in contexts:
        if context.id in seen:
            raise PhantomError(f"context id {context.id!r} appears twice in {path}")
        seen.add(context.id)
    return contexts


SELECTED = "selected"
_EXTRA: dict[str, Context] = {}   # contexts of the command line (``extra_contexts``)


def _merge(contexts: dict[str, Context], new: list[Context]) -> None:
    for context in new:
        known = contexts.get(context.id)
        if known is not None:
            if (known.sentence, known.correct, known.competitor, known.orientation) != (
                    context.sentence, context.correct, context.competitor, context.orientation):
                raise PhantomError(f"context id {context.id!r} is defined twice, "
                                   f"differently ({known.source} and {context.source})")
            continue
        contexts[context.id] = context


def pool_paths() -> list[Path]:
    """The pool files: data/contexts/*.toml."""
    return sorted((data_dir() / "contexts").glob("*.toml"))


def selection_paths() -> list[Path]:
    """The selection files: data/contexts/selected/*.toml."""
    return sorted((data_dir() / "contexts" / SELECTED).glob("*.toml"))


def broken_selections() -> dict[Path, str]:
    """The selection files that cannot be read, with why: ``load_contexts`` leaves
    them out, so that one bad file fails only the commands that need it."""
    contexts = load_contexts(pool_paths())
    broken = {}
    for path in selection_paths():
        try:
            _merge(dict(contexts), read_contexts(path))
        except PhantomError as error:
            broken[path] = str(error)
    return broken


def load_contexts(paths=None) -> dict[str, Context]:
    """All contexts by id: the pool (data/contexts/*.toml), the selections
    (data/contexts/selected/*.toml) and those of ``extra_contexts``, or those of the
    given files. A selection repeats pool contexts or reverses them (under the
    reversed id); an id defined two different ways is an error. A selection file
    that cannot be read is left out (``broken_selections`` says why)."""
    contexts: dict[str, Context] = {}
    if paths is not None:
        for path in paths:
            _merge(contexts, read_contexts(path))
        return contexts
    for path in pool_paths():
        _merge(contexts, read_contexts(path))
    for path in selection_paths():
        try:
            trial = dict(contexts)
            _merge(trial, read_contexts(path))
        except PhantomError:
            continue
        contexts = trial
    _merge(contexts, list(_EXTRA.values()))
    return contexts


@contextlib.contextmanager
def extra_contexts(contexts):
    """Make ``contexts`` (a custom file's, or one given on the command line) known to
    ``load_contexts`` and so to every command that resolves a context id, for the
    duration of the block. A clash with a known id is an error."""
    added = {c.id: c for c in contexts}
    _merge(dict(load_contexts()), list(added.values()))   # a clash fails here, early
    saved = dict(_EXTRA)
    _EXTRA.update(added)
    try:
        yield list(added)
    finally:
        _EXTRA.clear()
        _EXTRA.update(saved)


def adhoc_context(sentence: str, correct: str, competitor: str) -> Context:
    """One context given on the command line. Its id is derived from what it holds,
    ``correct-competitor-HASH`` (the first 8 hex digits of the SHA-256 of the
    sentence), so the same context gets the same id in every run."""
    sentence = (sentence or "").rstrip()
    if not sentence.strip():
        raise PhantomError("the sentence is empty; give the text before the next word, "
                           "e.g. --sentence \"The movie was so\"")
    words = {"correct": (correct or "").strip(), "competitor": (competitor or "").strip()}
    for role, word in words.items():
        if not word or any(ch.isspace() for ch in word):
            raise PhantomError(f"the {role} word must be one word without spaces, not "
                               f"{word!r} (--{role})")
    if words["correct"] == words["competitor"]:
        raise PhantomError(f"the correct and the competitor word are both {correct!r}; give "
                           "two different words")
    digest = hashlib.sha256(sentence.encode()).hexdigest()[:8]
    return Context(f"{words['correct']}-{words['competitor']}-{digest}", sentence,
                   words["correct"], words["competitor"], source="command line")


def command_line_contexts(contexts_file=None, sentence=None, correct=None, competitor=None,
                          context_id=None) -> tuple[list[Context], str | None]:
    """The contexts a one-run command is given beyond the data folder's, and the id it
    should run: a --contexts-file's contexts (the one it holds, or --context among
    them), or one ad-hoc context from --sentence, --correct and --competitor. With
    neither: no contexts, and the id is --context's (None: the default)."""
    adhoc = {"--sentence": sentence, "--correct": correct, "--competitor": competitor}
    if any(value is not None for value in adhoc.values()):
        if contexts_file is not None:
            raise PhantomError("give either --contexts-file or --sentence, --correct and "
                               "--competitor, not both")
        if context_id is not None:
            raise PhantomError("--sentence, --correct and --competitor define the context; "
                               f"drop --context {context_id}")
        missing = [flag for flag, value in adhoc.items() if value is None]
        if missing:
            raise PhantomError(f"an ad-hoc context needs --sentence, --correct and "
                               f"--competitor; {', '.join(missing)} missing")
        context = adhoc_context(sentence, correct, competitor)
        return [context], context.id
    if contexts_file is None:
        return [], context_id
    contexts = read_contexts(contexts_file)
    if context_id is None:
        if len(contexts) > 1:
            raise PhantomError(f"{contexts_file} holds {len(contexts)} contexts; name the one "
                               f"to run with --context ({', '.join(c.id for c in contexts)})")
        context_id = contexts[0].id
    return contexts, context_id


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
    try:
        return [c.id for c in read_contexts(path)]
    except PhantomError as error:
        raise PhantomError(f"the selection of {model!r} cannot be used ({error}); re-select "
                           f"with `phantom contexts select {model} --overwrite`") from None


def get_context(context_id: str, contexts: dict[str, Context] | None = None) -> Context:
    """The context ``context_id`` from ``contexts`` (default: all of ``load_contexts``)."""
    given = contexts is not None
    contexts = load_contexts() if contexts is None else contexts
    if context_id not in contexts:
        known = ", ".join(sorted(contexts)[:12])
        broken = "" if given else "".join(
            f"; {path} was skipped ({reason})" for path, reason in broken_selections().items())
        raise PhantomError(
            f"unknown context {context_id!r}; known ids include {known} "
            f"(`phantom contexts list` shows them all){broken}"
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


def word_pieces(tokenizer, sentence: str, word: str) -> tuple[list[int], bool]:
    """(the token ids ``word`` adds after ``sentence`` with a separating space,
    whether the sentence's own tokens are a prefix of the whole). Where they are not,
    the tokenizer merged the word into the sentence, and the ids returned are what
    differs from the shared prefix."""
    prefix = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{sentence} {word}", add_special_tokens=False)["input_ids"]
    if full[:len(prefix)] != prefix:
        shared = next((i for i, (a, b) in enumerate(zip(prefix, full, strict=False)) if a != b),
                      len(prefix))
        return full[shared:], False
    return full[len(prefix):], True


def word_tokens(tokenizer, sentence: str, word: str) -> list[int]:
    """The token ids ``word`` adds after ``sentence`` (with a separating space)."""
    return word_pieces(tokenizer, sentence, word)[0]


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


def word_problem(tokenizer, sentence: str, word: str) -> str | None:
    """Why ``word`` after ``sentence`` is no usable single token, in a few words
    (None when it is one): several tokens, the unknown token, or a merge into the
    sentence's last token."""
    tokens, prefix = word_pieces(tokenizer, sentence, word)
    if not prefix:
        return f"{word!r} merges into the sentence {describe_tokens(tokenizer, tokens)}"
    if len(tokens) != 1:
        return f"{word!r} is {len(tokens)} tokens {describe_tokens(tokenizer, tokens)}"
    if tokens[0] == tokenizer.unk_token_id:
        return f"{word!r} is not in the vocabulary"
    return None


def tokenize_context(tokenizer, context: Context, model_name: str = "this model") -> TokenizedContext:
    """Token ids of the sentence and of both words, the words oriented for
    ``model_name`` where the context is oriented per model; a word that is not
    exactly one token is an error that names its tokens."""
    context = context.for_model(model_name)
    ids = {}
    for role in ("correct", "competitor"):
        word = getattr(context, role)
        tokens, prefix = word_pieces(tokenizer, context.sentence, word)
        if len(tokens) != 1:
            raise PhantomError(
                f"context {context.id!r}: the {role} word {word!r} is {len(tokens)} tokens with "
                f"{model_name}'s tokenizer {describe_tokens(tokenizer, tokens)}; "
                "choose a context whose words are single tokens (`phantom contexts check`)"
            )
        if not prefix:
            raise PhantomError(
                f"context {context.id!r}: with {model_name}'s tokenizer the {role} word {word!r} "
                f"merges into the sentence's last token {describe_tokens(tokenizer, tokens)}; "
                "choose another context")
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
