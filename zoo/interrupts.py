"""Ctrl-C and SIGTERM during a run: stop at the next safe point, keep every checkpoint.

While ``zoo.training.train`` runs (one process), ``handled()`` replaces Python's SIGINT
and SIGTERM handlers:

- the first signal only records itself and says so in one line; the run stops at the
  next safe point (``check``: before fit, at the end of a window or an epoch, after the
  epoch's checkpoint, before the finished files are written) by raising
  ``RunInterrupted``, and the last checkpoint is kept;
- a second signal stops the process at once (``os._exit``): every file the zoo writes is
  written under a temporary name and renamed, so nothing is left half-written.

Written here because Python's default handler raises ``KeyboardInterrupt`` wherever the
main thread is, and Keras 3.15's ``pythonify_logs`` has a bare ``except:`` that swallows
it while JAX waits for a result (a JAX run went on through eight Ctrl-C), and a
``KeyboardInterrupt`` inside JAX's runtime ended in a segfault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import keras

__all__ = ["RunInterrupted", "StopAtSafePoint", "check", "handled"]

_SIGNALS = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
_state: dict = {"signal": None}


class RunInterrupted(KeyboardInterrupt):
    """The run stopped at a safe point after a SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(_SIGNALS.get(signum, f"signal {signum}"))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum, frame):
    if _state["signal"] is None:
        _state["signal"] = signum
        print(
            f"\nzoo: {_SIGNALS[signum]}: stopping at the next safe point (the end of this "
            "window); send it again to stop at once",
            file=sys.stderr,
            flush=True,
        )
        return
    print(f"\nzoo: {_SIGNALS[signum]} again: stopping now", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def check() -> None:
    """Raises ``RunInterrupted`` if a signal came since ``handled()`` began."""
    if _state["signal"] is not None:
        raise RunInterrupted(_state["signal"])


@contextlib.contextmanager
def handled(enabled: bool = True) -> Iterator[None]:
    """The zoo's SIGINT/SIGTERM handlers for the block (only in the main thread, where
    Python delivers signals, and when ``enabled``); the previous handlers after it."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in _SIGNALS}
    _state["signal"] = None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state["signal"] = None


class StopAtSafePoint(keras.callbacks.Callback):
    """Raises ``RunInterrupted`` at the end of a window or an epoch once a signal came;
    last in ``fit``'s callbacks, so an ending epoch is checkpointed first."""

    def on_train_batch_end(self, batch, logs=None):
        check()

    def on_epoch_end(self, epoch, logs=None):
        check()
