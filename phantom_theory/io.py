"""Writing files so that a crash never leaves half of one: ``atomic_write`` is the
only "temporary file, then rename" in the toolkit, and ``atomic_folder`` its
counterpart for a folder written as a unit (a ``phantom loao`` results folder; the
GGUF staging folder of a model pull is the one other).

A temporary file sits beside its target as ``.NAME.PID.tmpSUFFIX``: in the same
folder (so the rename is atomic), with the writer's pid (so two processes never
share one), keeping the target's suffix (so matplotlib and netCDF see the format).
It is flushed to disk before the rename and removed if the writer fails. One that
a killed writer left behind (a file, or a folder ``.NAME.PID.tmp``) is removed by the
next write to the same folder.

The one overwrite rule: an existing output is never replaced without
``overwrite``, and an output's folder is checked for writability (by writing to
it) before any work starts. A folder that one process writes over a long time (a
sweep) is held with ``FolderLock``; a folder written at once records a manifest of
its files (``write_manifest``), which ``check_manifest`` verifies.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import PhantomError

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp(\.[^.]*)?$")
LOCK_NAME = ".phantom.lock"
MANIFEST_NAME = "manifest.json"


def writable(folder) -> bool:
    """Whether this process can create a file in ``folder``: tried, not inferred from
    the mode bits (which do not bind root, and say nothing of a read-only mount)."""
    probe = Path(folder) / f".write-probe.{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return True
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def check_output_folder(folder, overwrite: bool | None = None) -> Path:
    """Refuse a folder that cannot be created or written, before any work is done.
    With ``overwrite=False``, also refuse one that exists and is not empty (None:
    the caller decides what an existing folder means, as a resumable sweep does)."""
    folder = Path(folder)
    if str(folder) in ("", "."):
        raise PhantomError("the output folder is empty; give a folder name such as results")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise PhantomError(f"{probe} is a file, so the folder {folder} cannot be made there; "
                           "choose another output folder")
    if not writable(probe):
        raise PhantomError(f"the folder {probe} is not writable; choose an output folder "
                           "you can write to")
    if overwrite is False and folder.is_dir() and any(
            p.name != LOCK_NAME for p in folder.iterdir()):
        raise PhantomError(f"the folder {folder} already exists and is not empty; pass "
                           "--overwrite to replace it, or choose another output folder")
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
    if not writable(path.parent):
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
    """Delete the temporary files and folders in ``folder`` whose writer is no
    longer running (a killed write); returns what it removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if not match or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
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


# -- folders ------------------------------------------------------------------------

_RENAME_EXCHANGE = 2


def exchange_folders(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE);
    False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def publish_folder(staging: Path, target: Path, overwrite: bool = False) -> None:
    """Put the finished folder ``staging`` at ``target`` in one step: a rename where
    ``target`` is absent or empty, else (with ``overwrite``) an atomic exchange, after
    which the old folder is deleted. Never a folder holding some of each."""
    staging, target = Path(staging), Path(target)
    try:
        os.rename(staging, target)
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not overwrite:
        raise PhantomError(f"{target} was written by another process while this one worked; "
                           "pass --overwrite to replace it, or choose another output folder")
    if exchange_folders(staging, target):
        shutil.rmtree(staging)   # now the old folder
        return
    # No atomic exchange here: move the old folder aside under a temporary name (the
    # next write to the parent removes it if this process dies before it does).
    aside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_folder(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; once the block has filled it,
    put it at ``path`` in one step (``publish_folder``). A failure leaves ``path``
    as it was. Refuses an existing, non-empty ``path`` unless ``overwrite``."""
    path = check_output_folder(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        publish_folder(staging, path, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_sha256(path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder, run_id: str, command: str) -> Path:
    """Record every file under ``folder``, with its SHA-256, as written by the run
    ``run_id`` of ``command``: ``manifest.json``, the last file written."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)}
    record = {"command": command, "run_id": run_id, "files": files,
              "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    return write_text(folder / MANIFEST_NAME, json.dumps(record, indent=1, sort_keys=True) + "\n")


def check_manifest(folder) -> dict:
    """The manifest of ``folder``, once every file it lists is there with its
    recorded SHA-256 and no other file is: else a PhantomError naming the file (a
    folder mixing the output of two runs, or changed since)."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    try:
        record = json.loads(path.read_text())
        files, run_id, command = record["files"], record["run_id"], record["command"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PhantomError(f"{path} is not a readable manifest ({error}); write the folder "
                           "again") from None
    fix = f"rerun `phantom {command} --overwrite` to write {folder} as a whole"
    for name, digest in sorted(files.items()):
        if not (folder / name).is_file():
            raise PhantomError(f"{folder} is incomplete: {name}, written by {command} run "
                               f"{run_id}, is missing; {fix}")
        if file_sha256(folder / name) != digest:
            raise PhantomError(f"{folder} is mixed: {name} is not the file {command} run "
                               f"{run_id} wrote (its SHA-256 differs); {fix}")
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)
                   and not _TEMPORARY.match(p.name) and str(p.relative_to(folder)) not in files)
    if extra:
        raise PhantomError(f"{folder} is mixed: {extra[0]} was not written by {command} run "
                           f"{run_id} (it is not in {MANIFEST_NAME}); {fix}")
    return record


class FolderLock:
    """An exclusive lock on a folder (``flock`` on the folder itself), held by one
    process at a time and released when it ends, however it ends. Taking it writes
    nothing; ``announce`` records the holder's pid and start time in the folder's
    ``.phantom.lock`` for the error a second process gets."""

    def __init__(self, folder, what: str = "phantom process"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return "another process"
        match = re.match(r"pid (\d+),", text)
        return text if match and _alive(int(match.group(1))) else "another process"

    def acquire(self) -> FolderLock:
        """Take the lock, or raise a PhantomError naming the process that holds it."""
        while True:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PhantomError(
                    f"{self.folder} is in use by another {self.what} ({self._holder()}); wait "
                    "for it to finish, or choose another output folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.folder).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return self
            os.close(fd)   # the folder was replaced meanwhile: lock the one there now

    def announce(self) -> None:
        """Record this process as the holder (pid and start time)."""
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.path.write_text(f"pid {os.getpid()}, since {started}\n")

    def release(self) -> None:
        """Let the lock go (closing the folder's descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        self.acquire()
        self.announce()
        return self

    def __exit__(self, *exc):
        self.release()
