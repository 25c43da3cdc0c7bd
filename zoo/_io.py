"""File helpers: atomic writes, file hashes, and where Keras keeps its cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Calls ``write(tmp)`` on a temporary path beside ``path`` (same suffix, so tools
    that go by the suffix, like Keras's ``.keras`` saving, accept it), flushes it to
    disk and renames it to ``path``. An error or interruption (a full disk included)
    leaves ``path`` as it was and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        with errors_name(path):
            write(tmp)
            fsync_file(tmp)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this
            tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def errors_name(path: str | os.PathLike):
    """An ``OSError`` raised in the block (while writing a temporary file beside ``path``)
    names ``path``, the user's, not the temporary name."""
    try:
        yield
    except OSError as e:
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None


def fsync_file(path: str | os.PathLike) -> None:
    """Flushes a written file's data to disk (so a rename after it never exposes an
    empty or partial file after a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_kind(path: str | os.PathLike) -> str | None:
    """``"npy"`` or ``"zip"`` (a .npz, .keras or checkpoint archive) from the file's first
    bytes, or None for anything else (text, an empty or truncated file)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return None


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """The hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def keras_home() -> Path:
    """Keras's cache folder: ``$KERAS_HOME``, default ``~/.keras`` (datasets/ and
    models/ below it)."""
    return Path(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"))


def replace_checked(new: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Moves ``new`` (a file or folder) to ``target``; an existing ``target`` (already
    checked as replaceable, ``zoo.targets.check_target``) is first moved aside under a
    fresh temporary name of its own, and removed only once ``new`` is in place (put back
    if that fails). Nothing else beside ``target`` is touched: the aside name is made
    new here, never a fixed name that could be a user's file."""
    import shutil
    import tempfile

    new, target = Path(new), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return target
    make = tempfile.mkdtemp if target.is_dir() else tempfile.mkstemp
    made = make(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
    if isinstance(made, tuple):  # mkstemp: (fd, path)
        os.close(made[0])
        made = made[1]
    aside = Path(made)
    os.replace(target, aside)  # a folder onto the new empty folder, a file onto the new file
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
    return target
