"""Provenance attributes written into every dataset (THEORY.md section 9)."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or "not installed"."""
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
