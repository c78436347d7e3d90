"""Writing files so that a crash never leaves half of one: ``atomic_write`` is the
only "temporary file, then rename" in the toolkit (the GGUF staging folder of a
model pull is the one other, a folder rather than a file).

A temporary file sits beside its target as ``.NAME.PID.tmpSUFFIX``: in the same
folder (so the rename is atomic), with the writer's pid (so two processes never
share one), keeping the target's suffix (so matplotlib and netCDF see the format).
It is flushed to disk before the rename and removed if the writer fails. One that
a killed writer left behind is removed by the next write to the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import PhantomError

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp(\.[^.]*)?$")


def check_output_folder(folder) -> Path:
    """Refuse a folder that cannot be created or written, before any work is done."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise PhantomError(f"{probe} is a file, so the folder {folder} cannot be made there; "
                           "choose another output folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PhantomError(f"the folder {probe} is not writable; choose an output folder "
                           "you can write to")
    return folder


def check_output_path(path, overwrite: bool = False) -> Path:
    """Refuse an output path in a missing or unwritable folder, or an existing file
    without ``overwrite``."""
    path = Path(path)
    if str(path) in ("", "."):
        raise PhantomError("the output path is empty; give a file name such as run.nc")
    if path.is_dir():
        raise PhantomError(f"output path {path} is a directory; give a file name such as "
                           f"{path / 'run.nc'}")
    if not path.parent.is_dir():
        raise PhantomError(f"the folder {path.parent} for output {path} does not exist; "
                           "create it first")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PhantomError(f"the folder {path.parent} for output {path} is not writable; "
                           "choose another output path")
    if path.exists() and not overwrite:
        raise PhantomError(f"{path} already exists; pass --overwrite to replace it")
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer is no longer running
    (a killed write); returns what it removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def temporary_path(path) -> Path:
    """Where ``atomic_write`` writes ``path`` before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_write(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, flush it
    to disk and rename it over ``path``. A failure leaves ``path`` as it was and no
    temporary behind. Refuses an existing ``path`` unless ``overwrite``.

    Usage::

        with atomic_write("out/run.nc") as tmp:
            ds.to_netcdf(tmp)
    """
    path = check_output_path(path, overwrite)
    remove_stale_temporaries(path.parent)
    tmp = temporary_path(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"the writer of {path} wrote nothing to {tmp}")
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path, text: str, overwrite: bool = False) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_write(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
