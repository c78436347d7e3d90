"""Provenance attributes written into every dataset (THEORY.md section 9)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def git_commit() -> str:
    """The commit of the checkout this code runs from, with '+dirty' for local edits."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def provenance(*packages: str) -> dict[str, str]:
    """Toolkit version, git commit, creation time and the versions of ``packages``."""
    attrs = {
        "toolkit": "phantom-theory",
        "toolkit_version": package_version("phantom-theory"),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in ("numpy", "scipy", "xarray", "netCDF4", *packages):
        attrs[f"{name}_version"] = package_version(name)
    return attrs


def to_attr(value):
    """A value netCDF can store as an attribute: bools as 0/1, None as 'none',
    sequences as JSON."""
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return "none"
    if isinstance(value, tuple | list | dict):
        return json.dumps(value)
    return value


def options_attrs(prefix: str, options) -> dict:
    """Flatten a frozen options dataclass into ``{prefix}_{field}`` attributes."""
    return {f"{prefix}_{f.name}": to_attr(getattr(options, f.name))
            for f in dataclasses.fields(options)}


def options_from_attrs(cls, prefix: str, attrs: dict):
    """Rebuild an options dataclass from the attributes ``options_attrs`` wrote."""
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}_{f.name}"
        if key not in attrs:
            continue
        value = attrs[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(default, bool):
            value = bool(value)
        elif value == "none":
            value = None
        elif isinstance(default, tuple) or (isinstance(value, str) and value.startswith("[")):
            value = tuple(json.loads(value))
        values[f.name] = value
    return cls(**values)
