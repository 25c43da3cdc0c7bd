"""The run directory: one object owns every file of a training run.

::

    RUN/config.json      what was asked for (model, overrides, dataset, epochs, seed, ...)
    RUN/history.csv      one row per completed epoch (rewritten from the checkpoint)
    RUN/checkpoint/      epoch-NNNN.npz: the last two complete checkpoints, while unfinished
    RUN/model.keras      the trained model
    RUN/metrics.json     test metrics, backend, versions, seed, wall time: the run is finished
    RUN/curves.png       loss and metric curves
    RUN/.lock            held (``flock``) by the one process working on the run

Guarantees, each tested (``tests/test_rundir.py``):

- One process at a time: ``lock()`` takes an exclusive ``flock`` for the whole run; a
  second process gets a one-line error naming the holder's pid. The kernel drops the
  lock of a process that dies, so a stale lock is taken over with no guessing.
- A checkpoint is one file, ``epoch-NNNN.npz``, holding everything a resume needs:
  every model variable (weights and random-seed states), every optimizer variable
  (its step count included), the epoch and the history rows. It is written under a
  temporary name, flushed to disk and renamed; the previous one is kept until the new
  one is in place. On load each is checked (zip CRCs, variable names and shapes); a
  damaged one is reported and the previous one used; when none is usable the error
  names the files and what to do.
- Nothing outside a run is touched: a folder that is not empty and is not a run of
  exactly this configuration is refused before anything is written.
- A full disk (or any write error) leaves the previous checkpoint and every finished
  file as they were.
- One writer: in a multi-process run only the chief opens the run with ``writer=True``;
  the others open it with ``writer=False`` and then write nothing at all (every write
  method returns without touching the disk, no lock is taken) and restore from the
  checkpoints the chief wrote.

Why not Keras's ``BackupAndRestore`` or ``OrbaxCheckpoint``: the first writes its
weights and its metadata as two files one after the other (a kill between them resumed
one epoch off, exit 0) and writes its weights with h5py straight into the run
directory (on a full disk: a segmentation fault and a partial file); the second needs
``orbax-checkpoint`` and so JAX installed on every backend, and restores neither the
epoch nor the history. The unit here is about 100 lines on public Keras APIs.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import re
import shutil
import signal
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo._io import atomic_write, file_kind, fsync_file

__all__ = ["FAULT_HOOK", "RunDir", "RunDirError"]

RUN_FILES = ("config.json", "history.csv", "metrics.json", "model.keras", "curves.png")
KEEP_CHECKPOINTS = 2
_CHECKPOINT = re.compile(r"epoch-(\d{4,})\.npz")

#: Test hook: ``FAULT_HOOK(point, epoch)`` is called at every step of writing a run
#: (``"checkpoint:start"``, ``"checkpoint:written"``, ``"checkpoint:renamed"``,
#: ``"checkpoint:pruned"``, ``"history:written"``, ...). Tests set it to crash the
#: process there; ``ZOO_FAULT=POINT@EPOCH`` in the environment sends this process
#: SIGKILL at that point (for tests that kill a real ``zoo train``).
FAULT_HOOK: Callable[[str, int], None] | None = None


def _fault(point: str, epoch: int) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(point, epoch)
    wanted = os.environ.get("ZOO_FAULT")
    if wanted and wanted == f"{point}@{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


class RunDirError(RuntimeError):
    """A run directory that can't be used as asked; the message names the file and
    what to do."""


def _flat(config: dict, prefix: str = "") -> dict:
    """``config`` with nested dicts as dotted keys (``training.learning_rate``)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _describe_os_error(err: OSError, path: Path | str, doing: str) -> str:
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while {doing} {str(path)!r}; free some space"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {str(path)!r} while {doing} it ({err.strerror})"
    return f"an error while {doing} {str(path)!r} ({err.strerror or err})"


class RunDir:
    """The files of one training run, and the lock and checkpoints that keep them whole.

    Args:
        path: the run directory (it need not exist yet).
        writer: False for the processes of a multi-process run other than the chief:
            they only read the checkpoints (``restore``); every write is skipped.

    Example:
        >>> run = RunDir("runs/example")
        >>> with run.lock():  # doctest: +SKIP
        ...     run.prepare({"model": "mnist_mlp", "epochs": 2})
    """

    def __init__(self, path: str | os.PathLike, *, writer: bool = True):
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise RunDirError(f"out must name a directory, got {str(path)!r}")
        self.path = Path(path)
        self.writer = writer
        self.checkpoint_dir = self.path / "checkpoint"
        self._lock_fd: int | None = None
        #: the callbacks' state in the checkpoint ``restore`` loaded ({}: none, or no such state)
        self.restored_callbacks: dict[str, dict] = {}

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    config_path = property(lambda self: self.path / "config.json")
    history_path = property(lambda self: self.path / "history.csv")
    metrics_path = property(lambda self: self.path / "metrics.json")
    model_path = property(lambda self: self.path / "model.keras")
    curves_path = property(lambda self: self.path / "curves.png")

    # -- the lock --------------------------------------------------------------------------
    def _make_dir(self) -> None:
        parent = next((p for p in self.path.parents if p.exists()), None)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(
                f"out {str(self.path)!r} is a file, not a directory; choose another --out"
            )
        if parent is not None and not parent.is_dir():
            raise RunDirError(
                f"out {str(self.path)!r} can't be created: {str(parent)!r} is a file; "
                "choose another --out"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(
                _describe_os_error(e, self.path, "creating") + "; choose another --out"
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Holds the run's exclusive lock (creating the directory) for the ``with`` block.

        A reader (``writer=False``) takes no lock and creates nothing.

        Raises:
            RunDirError: another live process holds it (named by pid), or the directory
                can't be created or written.
        """
        if not self.writer:
            yield self
            return
        self._make_dir()
        lock_path = self.path / ".lock"
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RunDirError(
                    _describe_os_error(e, lock_path, "creating") + "; choose another --out"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RunDirError(
                    f"run directory {str(self.path)!r} is in use by process {holder} (another "
                    "zoo train); wait for it to end, or choose another --out"
                ) from None
            # The lock file may have been unlinked by its last holder between our open and
            # our flock: then we hold a lock on a file no one else sees. Check and retry.
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            yield self
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()  # while still holding it (see the check above)
            os.close(fd)
            self._lock_fd = None

    def _writes(self) -> bool:
        """False for a reader, which writes nothing; a writer must hold the lock."""
        if not self.writer:
            return False
        if self._lock_fd is None:
            raise RuntimeError(f"{self!r}: hold run.lock() before writing the run")
        return True

    # -- what the folder holds ---------------------------------------------------------------
    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(
                f"{str(path)!r} is damaged ({type(e).__name__}: {e}); delete the run directory "
                f"{str(self.path)!r} to start it over, or choose another --out"
            ) from None

    def _remove_leftovers(self) -> None:
        """Temporary files of writes a kill interrupted (ours: we hold the lock)."""
        for folder in (self.path, self.checkpoint_dir):
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.name.startswith(".") and ".tmp" in p.name:
                        p.unlink(missing_ok=True)

    def prepare(self, config: dict[str, Any]) -> str:
        """Checks that the folder is empty or a run of exactly ``config``, and writes
        ``config.json`` for a new run. Returns ``"new"`` or ``"resume"``.

        Raises:
            RunDirError: the folder holds something else, another run, or a finished run.
        """
        if not self._writes():
            return "reader"
        config = json.loads(json.dumps(config, default=str))
        if not self.config_path.exists():
            others = sorted(
                p.name for p in self.path.iterdir() if p.name != ".lock" and ".tmp" not in p.name
            )
            if others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise RunDirError(
                    f"out {str(self.path)!r} is not empty and is not a zoo run (it holds "
                    f"{shown}); choose an empty or new --out"
                )
            self._remove_leftovers()
            self._write_json(self.config_path, config)
            return "new"
        previous = self._read_json(self.config_path)
        if previous != config:
            was, now = _flat(previous), _flat(config)
            differ = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            said = "; ".join(f"{k}: {was.get(k)!r} there, {now.get(k)!r} now" for k in differ)
            raise RunDirError(
                f"out {str(self.path)!r} holds another run (it differs in {said}); choose "
                "another --out, or repeat that run's arguments to resume it"
            )
        if self.metrics_path.exists():
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)  # a finish interrupted
            raise RunDirError(
                f"out {str(self.path)!r} holds a finished run; choose another --out "
                f"(zoo evaluate {str(self.path)!r} reads it)"
            )
        self._remove_leftovers()
        return "resume"

    def finished_record(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(config, metrics)`` of a finished run, or a one-line ``RunDirError``."""
        needed = [self.config_path, self.metrics_path, self.model_path]
        missing = [p.name for p in needed if not p.is_file()]
        if not self.path.is_dir() or missing:
            raise RunDirError(
                f"run {str(self.path)!r} is not a finished zoo run (missing "
                f"{missing if self.path.is_dir() else 'the folder'}); pass the --out of a "
                "zoo train that ended"
            )
        return self._read_json(self.config_path), self._read_json(self.metrics_path)

    def finished_model(self, *, compile: bool = False):
        """``(config, metrics, model)`` of a finished run: its model.keras loaded by
        ``zoo.load_model`` (one-line errors for a missing or damaged file)."""
        from zoo.factory import load_model

        config, metrics = self.finished_record()
        return config, metrics, load_model(self.model_path, compile=compile)

    def config(self) -> dict[str, Any]:
        """The run's config.json (for a finished or an unfinished run)."""
        if not self.config_path.is_file():
            raise RunDirError(
                f"run {str(self.path)!r} has no config.json: it is not a zoo run directory"
            )
        return self._read_json(self.config_path)

    # -- small files -------------------------------------------------------------------------
    def _write(self, path: Path, write: Callable[[Path], object]) -> None:
        try:
            atomic_write(path, write)
        except OSError as e:
            raise RunDirError(
                _describe_os_error(e, path, "writing")
                + "; then run the same command again: it resumes from its last checkpoint"
            ) from None

    def _write_json(self, path: Path, data: Any) -> None:
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        self._write(path, lambda p: p.write_text(text))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Writes metrics.json: from here on the run is finished."""
        if not self._writes():
            return
        self._write_json(self.metrics_path, metrics)
        _fault("metrics:written", -1)

    def write_model(self, model) -> None:
        if not self._writes():
            return
        self._write(self.model_path, lambda p: model.save(p))
        _fault("model:written", -1)

    def write_curves(self, draw: Callable[[Path], object]) -> None:
        if not self._writes():
            return
        self._write(self.curves_path, draw)

    def finish(self) -> None:
        """Removes the checkpoints once metrics.json is written."""
        if not self._writes():
            return
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    def read_history(self) -> list[dict[str, float]]:
        """The rows of history.csv: ``epoch`` as an int (0-based), metrics as floats."""
        if not self.history_path.exists():
            return []
        with open(self.history_path, newline="") as f:
            return [
                {k: int(v) if k == "epoch" else float(v) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]

    def write_history(self, rows: list[dict[str, float]]) -> None:
        if not self._writes():
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)

        if rows:
            self._write(self.history_path, write)
        else:
            self.history_path.unlink(missing_ok=True)

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """The complete checkpoint files, newest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.iterdir() if _CHECKPOINT.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(_CHECKPOINT.fullmatch(p.name)[1]), reverse=True)

    def checkpointed_epochs(self) -> int:
        """How many epochs the newest checkpoint file holds by its name (0: none)."""
        found = self.checkpoints()
        return int(_CHECKPOINT.fullmatch(found[0].name)[1]) if found else 0

    @staticmethod
    def _variables(model) -> tuple[list, list]:
        optimizer = getattr(model, "optimizer", None)
        return list(model.variables), list(optimizer.variables) if optimizer else []

    def save_checkpoint(
        self, model, epoch: int, history: list[dict[str, float]], callbacks: dict | None = None
    ) -> Path:
        """Writes ``epoch-NNNN.npz`` (``epoch`` epochs done) as one atomic unit, keeps the
        previous one, and rewrites history.csv from ``history``. ``callbacks``: the
        callbacks' own state, JSON (``zoo.control.Resumable``), which ``restore`` puts in
        ``restored_callbacks``. A reader writes nothing (and returns the path the chief
        writes)."""
        if not self._writes():
            return self.checkpoint_dir / f"epoch-{epoch:04d}.npz"
        _fault("checkpoint:start", epoch)
        model_vars, optimizer_vars = self._variables(model)
        state = {
            "epoch": epoch,
            "history": history,
            "callbacks": callbacks or {},
            # names, not paths: a path carries a per-process unique prefix (adam_1/...)
            "model_variables": [v.name for v in model_vars],
            "optimizer_variables": [v.name for v in optimizer_vars],
        }
        arrays = {"state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)}
        arrays.update({f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(model_vars)})
        arrays.update(
            {f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer_vars)}
        )
        path = self.checkpoint_dir / f"epoch-{epoch:04d}.npz"
        tmp = self.checkpoint_dir / f".{path.name}.{os.getpid()}.tmp"
        try:
            self.checkpoint_dir.mkdir(exist_ok=True)
            with open(tmp, "wb") as f:  # plain Python I/O: a full disk is an OSError here
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            _fault("checkpoint:written", epoch)
            os.replace(tmp, path)
            with contextlib.suppress(OSError):  # not every file system syncs a folder
                fsync_file(self.checkpoint_dir)  # the rename itself, on disk
        except OSError as e:
            tmp.unlink(missing_ok=True)
            kept = self.checkpoints()
            raise RunDirError(
                _describe_os_error(e, path, "writing")
                + "; then run the same command again: it resumes from "
                + (f"{kept[0].name}" if kept else "the start")
            ) from None
        _fault("checkpoint:renamed", epoch)
        for old in self.checkpoints()[KEEP_CHECKPOINTS:]:
            old.unlink(missing_ok=True)
        _fault("checkpoint:pruned", epoch)
        self.write_history(history)
        _fault("history:written", epoch)
        return path

    def _load_one(self, path: Path, model) -> tuple[int, list[dict[str, float]]]:
        if file_kind(path) != "zip":
            raise ValueError("not a checkpoint archive (damaged or truncated)")
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            state = json.loads(bytes(archive["state"]).decode())
            model_vars, optimizer_vars = self._variables(model)
            for prefix, variables in (("model", model_vars), ("optimizer", optimizer_vars)):
                names = state[f"{prefix}_variables"]
                if names != [v.name for v in variables]:
                    raise ValueError(f"its {prefix} variables are not this model's")
                values = [archive[f"{prefix}/{i}"] for i in range(len(variables))]
                bad = [v.path for v, a in zip(variables, values, strict=True) if v.shape != a.shape]
                if bad:
                    raise ValueError(f"shapes differ for {bad[:3]}")
                for v, a in zip(variables, values, strict=True):
                    v.assign(a)
        epoch = int(state["epoch"])
        history = state["history"]
        if len(history) != epoch:
            raise ValueError(f"it holds {len(history)} history rows for {epoch} epochs")
        self.restored_callbacks = state.get("callbacks", {})  # none before the option
        return epoch, history

    def restore(self, model) -> tuple[int, list[dict[str, float]]]:
        """Loads the newest usable checkpoint into the compiled ``model`` (weights and
        optimizer state) and returns ``(epochs_done, history_rows)``; ``(0, [])`` when
        there is none. history.csv is rewritten from the checkpoint it resumes.

        Raises:
            RunDirError: there are checkpoints, and none of them is usable.
        """
        self._writes()  # a writer must hold the lock; a reader only reads here
        found = self.checkpoints()
        if not found:
            self.write_history([])  # a history.csv without a checkpoint is from no epoch
            return 0, []
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its variables, to load into
        problems = []
        for path in found:
            try:
                epoch, history = self._load_one(path, model)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                problems.append(f"{path.name}: {type(e).__name__}: {str(e)[:120]}")
                continue
            if problems:
                warnings.warn(
                    f"checkpoint(s) in {str(self.checkpoint_dir)!r} damaged "
                    f"({'; '.join(problems)}); resuming from {path.name} instead",
                    stacklevel=2,
                )
            self.write_history(history)
            return epoch, history
        raise RunDirError(
            f"no usable checkpoint in {str(self.checkpoint_dir)!r} ({'; '.join(problems)}); "
            f"delete {str(self.checkpoint_dir)!r} to train again from epoch 1, "
            "or choose another --out"
        )
