"""Options objects: one frozen dataclass per stage, filled from the command line, a
TOML table or dataset attributes, under one naming scheme.

A nested options field is flattened with an underscore: ``RunOptions.lora.rank`` is
``lora_rank`` in a spec's ``[run]`` table, ``--lora-rank`` on the command line and
``run_lora_rank`` in a dataset's attributes. Values are checked against the field's
annotation where they enter (a float given for an int, a list for a string), so a
wrong type is one clear error instead of a silent conversion. A field's help text
lives in its metadata (``field(metadata={"help": ...})``), beside its default.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing

from .errors import PhantomError

NESTED_SEPARATOR = "_"


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def is_options(value) -> bool:
    """True for an options dataclass class or instance."""
    return dataclasses.is_dataclass(value)


def flat_fields(cls, prefix: str = "") -> list[tuple[str, tuple[str, ...], dataclasses.Field, object]]:
    """(flat name, path, field, annotation) of every leaf field of ``cls``."""
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        name = f"{prefix}{f.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += [(flat, (f.name, *path), leaf, leaf_hint)
                    for flat, path, leaf, leaf_hint in flat_fields(hint, name + NESTED_SEPARATOR)]
        else:
            out.append((name, (f.name,), f, hint))
    return out


def _kind(hint) -> tuple[object, bool]:
    """(the annotation without None, whether None is allowed)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        allows_none = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else hint), allows_none
    return hint, False


def coerce(value, hint, name: str, where: str):
    """``value`` checked against the annotation ``hint`` (lists become tuples); a
    mismatch is a PhantomError naming the key and what it takes."""
    hint, allows_none = _kind(hint)
    if value is None or (allows_none and value == "none"):
        if allows_none:
            return None
        raise PhantomError(f"{name} in {where} may not be empty")
    origin = typing.get_origin(hint)

    def bad(expected: str):
        return PhantomError(f"{name} in {where} must be {expected}, not {value!r}")

    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad("true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise bad("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str):
            raise bad(f"a list ({'of ' + _describe(args[0]) if args else 'values'})")
        try:
            items = list(value)
        except TypeError:
            raise bad("a list") from None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], name, where) for v in items)
        if len(items) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(coerce(v, a, name, where) for v, a in zip(items, args, strict=True))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad("a table")
        return value
    return value


def _describe(hint) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, "values")


def options_from_flat(cls, table: dict, where: str, base=None):
    """Build ``cls`` from a flat table (``lora_rank = 4``) or a nested one
    (``lora = {rank = 4}``), checking every key and type; unnamed fields keep
    ``base``'s values (or the defaults)."""
    if not isinstance(table, dict):
        raise PhantomError(f"{where} must be a table of options, not {table!r}")
    flat = {}
    for key, value in table.items():
        hint = _hints(cls).get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            flat.update({f"{key}{NESTED_SEPARATOR}{k}": v for k, v in value.items()})
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            flat.update({f"{key}{NESTED_SEPARATOR}{k}": v
                         for k, v in flat_values(value).items()})
        else:
            flat[key] = value
    leaves = {name: (path, hint) for name, path, _, hint in flat_fields(cls)}
    unknown = sorted(set(flat) - set(leaves))
    if unknown:
        raise PhantomError(f"unknown key(s) {unknown} in {where}; allowed: "
                           f"{', '.join(sorted(leaves))}")
    values = flat_values(base) if base is not None else {}
    values.update({k: coerce(v, leaves[k][1], k, where) for k, v in flat.items()})
    return _build(cls, values)


def flat_values(options) -> dict:
    """The leaf values of an options object by flat name."""
    out = {}
    for name, path, _, _ in flat_fields(type(options)):
        value = options
        for part in path:
            value = getattr(value, part)
        out[name] = value
    return out


def _build(cls, flat: dict):
    """``cls`` from leaf values by flat name; nested options are built from their
    leaves, and a field without a value keeps its default."""
    values: dict[tuple[str, ...], object] = {}
    for name, path, _, _ in flat_fields(cls):
        if name in flat:
            values[path] = flat[name]
    return _construct(cls, values)


def _construct(cls, values: dict[tuple[str, ...], object]):
    kwargs, nested = {}, {}
    for path, value in values.items():
        if len(path) == 1:
            kwargs[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1:]] = value
    hints = _hints(cls)
    for name, leaves in nested.items():
        kwargs[name] = _construct(hints[name], leaves)
    return cls(**kwargs)


def to_attr(value):
    """A value netCDF can store as an attribute: bools as 0/1, None as 'none',
    sequences and tables as JSON."""
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return "none"
    if isinstance(value, tuple | list | dict):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def options_attrs(prefix: str, options) -> dict:
    """Flatten an options dataclass into ``{prefix}_{flat name}`` attributes."""
    return {f"{prefix}_{name}": to_attr(value) for name, value in flat_values(options).items()}


def help_of(f: dataclasses.Field) -> str:
    """The help text a field carries in its metadata ('' if none)."""
    return f.metadata.get("help", "")


def add_option_arguments(parser, cls, skip=(), defaults: dict | None = None) -> None:
    """Add one ``--flat-name`` argument per leaf field of ``cls`` (except ``skip``),
    with the field's help text and default. Values arrive as strings or lists and
    are checked by ``options_from_args``."""
    defaults = defaults or {}
    for name, _, f, hint in flat_fields(cls):
        if name in skip:
            continue
        hint, _ = _kind(hint)
        default = defaults.get(name, f.default if f.default is not dataclasses.MISSING
                               else f.default_factory() if f.default_factory
                               is not dataclasses.MISSING else None)
        flag = "--" + name.replace("_", "-")
        text = help_of(f)
        if hint is bool:
            parser.add_argument(flag, dest=name, action="store_true" if not default else
                                "store_false", help=text or None)
            continue
        if default is not None:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        parser.add_argument(flag, dest=name, default=None, metavar=name.split("_")[-1].upper(),
                            nargs="+" if typing.get_origin(hint) is tuple else None,
                            help=text.replace("%", "%%"))


def _parse_scalar(text: str, hint):
    hint, _ = _kind(hint)
    if hint is int:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)   # coerce() then names the non-integer
            except ValueError:
                return text
    if hint is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def options_from_args(cls, args, where: str = "the command line", base=None, skip=()):
    """Build ``cls`` from the parsed arguments ``add_option_arguments`` added."""
    table = {}
    for name, _, f, hint in flat_fields(cls):
        if name in skip or not hasattr(args, name):
            continue
        value = getattr(args, name)
        kind, _ = _kind(hint)
        if kind is bool:
            default = f.default if f.default is not dataclasses.MISSING else False
            if value != default:
                table[name] = value
            continue
        if value is None:
            continue
        if typing.get_origin(kind) is tuple:
            items = [piece for v in value for piece in str(v).split(",") if piece != ""]
            args_ = typing.get_args(kind)
            table[name] = [_parse_scalar(v, args_[0] if args_ else str) for v in items]
        else:
            table[name] = _parse_scalar(value, hint)
    flag_where = where
    try:
        return options_from_flat(cls, table, flag_where, base=base)
    except PhantomError as error:
        # name the flag, not the field
        message = str(error)
        for name in table:
            message = message.replace(f"{name} in {flag_where}", f"--{name.replace('_', '-')}")
        raise PhantomError(message) from None
