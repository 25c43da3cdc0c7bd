"""Files that are never half-written: write to a temporary name, then rename."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Calls ``write(tmp)`` on a temporary path beside ``path`` (same suffix, so tools
    that go by the suffix, like Keras's ``.keras`` saving, accept it), then renames
    it to ``path``. An error or interruption leaves ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
