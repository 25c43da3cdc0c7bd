"""Where a command writes: what the zoo may replace, and what it never touches.

Every command that writes (``train``, ``predict``, ``inputs``, ``plot``, ``export``,
``preset``) checks its target here before it writes anything:

- a target that does not exist is written;
- an existing target is replaced only with ``--overwrite`` (``overwrite=True``), and
  only when the zoo recognises it as its own artifact of the same kind (``kind_of``):
  a preset folder for a preset, a zoo export for an export, a numpy file for
  ``predict``/``inputs``, an image for ``plot``; anything else (a folder of the
  user's files, a finished run, another kind of artifact) is refused in one line;
- a symbolic link is never a target (replacing it would replace the link, and the
  user meant what it points to): it is refused in one line naming both;
- a source (the run read, the input file) is never a target, nor inside one, nor
  holding one; nor is anything inside a run, a preset or an export.

``train`` keeps its own rule (``zoo.rundir.RunDir.prepare``): a folder that is not
empty and not a run of exactly this configuration is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zoo._io import file_kind

__all__ = ["KINDS", "TargetError", "check_target", "kind_of", "mark_onnx", "mark_savedmodel"]

#: What each kind of artifact is called in messages.
KINDS = {
    "run": "a zoo run directory",
    "preset": "a zoo preset folder",
    "savedmodel": "a zoo SavedModel export",
    "onnx": "a zoo ONNX export",
    "arrays": "a numpy .npy/.npz file",
    "image": "an image file",
}
#: The file a zoo SavedModel export carries beside the model (``assets.extra`` is the
#: SavedModel folder for files that libraries add and the graph never loads).
SAVEDMODEL_MARK = Path("assets.extra") / "zoo_export.json"
#: The key of the ONNX ``metadata_props`` entry a zoo ONNX export carries.
ONNX_MARK = "zoo_export"

_IMAGE_HEADS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF", b"<?xml", b"<svg", b"digraph")


class TargetError(ValueError):
    """A target the zoo will not write: the message names it and what to do."""


def _head(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_onnx_export(path: Path) -> bool:
    try:
        import onnx
    except ImportError:  # onnx comes with every export extra that writes ONNX
        return False
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # any file that is not an ONNX model
        return False
    return any(p.key == ONNX_MARK for p in proto.metadata_props)


def kind_of(path: str | os.PathLike) -> str | None:
    """Which zoo artifact ``path`` is (a key of ``KINDS``), or None for anything else.
    A symbolic link is judged by what it points to."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file() and (
            (path / "metrics.json").is_file() or (path / "checkpoint").is_dir()
        ):
            return "run"
        meta = path / "metadata.json"
        if meta.is_file():
            from zoo.factory import PRESET_FORMAT

            try:
                if json.loads(meta.read_text()).get("format") == PRESET_FORMAT:
                    return "preset"
            except (OSError, ValueError, AttributeError):
                return None
        if (path / "saved_model.pb").is_file() and (path / SAVEDMODEL_MARK).is_file():
            return "savedmodel"
        return None
    if not path.is_file():
        return None
    try:
        if file_kind(path) is not None:  # a .npy, or a zip archive as numpy's .npz
            return "arrays"
    except OSError:  # unreadable: not one of the zoo's
        return None
    if _head(path).startswith(_IMAGE_HEADS):
        return "image"
    if path.suffix == ".onnx" and _is_onnx_export(path):
        return "onnx"
    return None


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_target(
    path: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool,
    sources: tuple[str | os.PathLike, ...] = (),
    what: str = "output",
) -> Path:
    """``path`` if a command may write ``kind`` there, else a one-line ``TargetError``
    (``FileExistsError`` for an existing target without ``overwrite``). Nothing is
    written or removed here. ``what`` names the argument in messages."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    path = Path(path)
    shown = str(path)
    if path.is_symlink():
        raise TargetError(
            f"{what} {shown!r} is a symbolic link (to {os.readlink(path)!r}); the zoo does "
            "not write through or replace links: give a real path"
        )
    real = path.resolve()
    for source in sources:
        source_real = Path(source).resolve()
        if _inside(real, source_real) or _inside(source_real, real):
            relation = "is" if real == source_real else "overlaps"
            raise TargetError(
                f"{what} {shown!r} {relation} the source {str(source)!r}; write to a path "
                "outside it"
            )
    for folder in real.parents:
        holder = kind_of(folder)
        if holder in ("run", "preset", "savedmodel"):
            raise TargetError(
                f"{what} {shown!r} is inside {KINDS[holder]} ({str(folder)!r}), whose files "
                "the zoo alone writes; write to a path outside it"
            )
    if not (path.exists() or path.is_symlink()):
        return path
    if not overwrite:
        raise FileExistsError(
            f"{what} {shown!r} exists; choose another, or overwrite it "
            "(--overwrite, or overwrite=True)"
        )
    found = kind_of(path)
    if found != kind:
        it_is = KINDS[found] if found else ("a folder" if path.is_dir() else "a file")
        raise TargetError(
            f"{what} {shown!r} is {it_is}, not {KINDS[kind]}: --overwrite replaces only "
            f"{KINDS[kind]}; choose another path"
        )
    return path


def mark_savedmodel(folder: Path, info: dict) -> None:
    """Marks a SavedModel folder as a zoo export (``SAVEDMODEL_MARK``)."""
    mark = folder / SAVEDMODEL_MARK
    mark.parent.mkdir(exist_ok=True)
    mark.write_text(json.dumps(info, sort_keys=True) + "\n")


def mark_onnx(path: Path, info: dict) -> None:
    """Marks an ONNX file as a zoo export (a ``metadata_props`` entry ``ONNX_MARK``)."""
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_MARK, json.dumps(info, sort_keys=True)
    onnx.save(proto, str(path))
