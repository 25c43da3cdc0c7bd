"""What compiling cost the last time, kept in the user's cache folder, for ``fast="auto"``
to decide mid-run whether compiling pays (``Switch``).

One JSON file, ``compile-costs.json``, in ``$ZOO_CACHE_DIR``, else
``$XDG_CACHE_HOME/keras-model-zoo``, else ``~/.cache/keras-model-zoo``. Each entry is keyed
by what is compiled (a hash of the recorded computation, its shapes, the backend's
version and the device), and holds the seconds the compile took, the step time it gave
and the step time before it. The file is a cache: written atomically, read leniently
(a missing, damaged or unwritable file means "no figure", never a failed run).

Written by hand: neither Keras nor torch keeps a compile's cost (inductor's and XLA's
caches keep the compiled code, which is what makes the next compile cheaper)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Where nothing was measured before: the compile's cost, and what compiling saves per
#: step, at most a share of the step and at most a time per operation of the step (what
#: compiling removes is the per-operation dispatch; the math stays). Torch's inductor
#: compiled the recorded mnist_mlp step (64 aten operations) in 5.4 s from a cold cache,
#: 2.1 s from a warm one, and ran it in 0.27-0.34 ms against 0.72-0.81 ms replayed: about
#: 7 us saved per operation; toy_resnet's step (about 0.1 s, in its convolutions) gained
#: nothing (2026-12-04, this 2-core CPU). A first compile is assumed to cost more than
#: that and to gain less.
DEFAULT_COMPILE_S = 8.0
DEFAULT_COMPILED_SHARE = 0.5
DEFAULT_SAVED_PER_OP_S = 6e-6
#: TensorFlow: XLA's compile of the window's loop, per operation of its graph (the loop's
#: function and those it calls). XLA traced and compiled mnist_mlp's loop (279
#: operations) in about 0.6 s and ticket_router's (1,443) in about 3.4 s, 2.2-2.4 ms
#: each, and ran their steps 44% and 11% faster than the plain graph (2026-12-04, this
#: 2-core CPU).
DEFAULT_XLA_S_PER_OP = 2e-3
#: Compiling must save this many times its cost: the estimates are rough, and a run that
#: compiles and then gains less than it paid is slower than one that never compiled.
MARGIN = 1.25
#: A compile that missed inductor's cache (a cold one) is assumed to cost this share of
#: its measured seconds the next time, when inductor finds its code in the cache: torch's
#: inductor compiled the recorded mnist_mlp step in 5.4 s cold, 2.1 s warm (0.39), and
#: ticket_router's (around its LSTM kernel) in 18.0 s from an empty cache folder and 2.7 s
#: (0.15) (2026-12-05, this 2-core CPU). A warm compile's own seconds replace the
#: assumption once measured; where inductor's cache was emptied since, one compile costs
#: more than assumed, and its seconds are then written down.
WARM_SHARE = 0.4
FILE = "compile-costs.json"


def cache_dir() -> Path:
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras-model-zoo"


def read(key: str) -> dict | None:
    """The entry for ``key``, or None (none yet, or the file unreadable)."""
    try:
        entry = json.loads((cache_dir() / FILE).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) else None


def write(key: str, entry: dict) -> None:
    """Sets ``key``'s entry, atomically (a temporary file renamed over the old one); a
    folder that cannot be written is let be."""
    folder = cache_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads((folder / FILE).read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        table[key] = {**entry, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".compile-costs.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(table, f, indent=1, sort_keys=True)
            os.replace(tmp, folder / FILE)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def record(
    key: str | None,
    compile_s: float,
    step_s: float,
    uncompiled_step_s,
    uncompiled_setup_s=None,
    eager_operations: list[str] | None = None,
    cold: bool = False,
) -> None:
    """Keeps what a compile cost and gave: its seconds, the step time after it and the
    step time before it, and what the uncompiled form cost before its first step (a
    compile from the start saves it; None: not measured) (``key`` None: nothing to keep
    it under); on torch, the operations kept out of the compile and whether it missed
    inductor's cache (``cold``)."""
    if key is not None:
        entry = {"compile_s": compile_s, "step_s": step_s, "uncompiled_step_s": uncompiled_step_s}
        if uncompiled_setup_s is not None:
            entry["uncompiled_setup_s"] = uncompiled_setup_s
        if eager_operations:
            entry["eager_operations"] = list(eager_operations)
        if cold:
            entry["cold"] = True
        write(key, entry)


class StepTimer:
    """A switch's step time: timed runs (windows, or chunks of one) added up until at
    least ``least`` steps and ``least_s`` seconds are timed, then the step time of the
    fastest run, and it starts over. The fastest, not the mean: a run is only ever
    slowed by what else the machine does, and a decision (cached for the next run) must
    not rest on a moment of it (timeit's reasoning)."""

    def __init__(self):
        self.steps, self.seconds, self.best = 0, 0.0, float("inf")

    def add(self, steps: int, seconds: float, least: int, least_s: float = 0.0) -> float | None:
        """The fastest run's step time once ``least`` steps and ``least_s`` seconds are
        timed, else None."""
        self.steps += steps
        self.seconds += seconds
        if steps:
            self.best = min(self.best, seconds / steps)
        if self.steps < least or self.seconds < least_s:
            return None
        best = self.best
        self.__init__()
        return best


@dataclass
class Estimate:
    """What compiling would cost and give: ``compile_s``, the seconds it takes;
    ``step_s``, the step time after it (None: a share of the current one);
    ``uncompiled_step_s``, the step time before it, as measured the last time (None: not
    known); ``fails``: it failed the last time (never tried again with the same
    versions); ``eager_operations``: what the last compile kept out (torch). A compile
    measured cold (it missed inductor's cache) is assumed to cost ``WARM_SHARE`` of its
    seconds the next time."""

    compile_s: float = DEFAULT_COMPILE_S
    step_s: float | None = None
    fails: bool = False
    measured: bool = False
    uncompiled_step_s: float | None = None
    uncompiled_setup_s: float = 0.0
    eager_operations: frozenset = frozenset()

    @classmethod
    def of(cls, key: str | None, compile_s: float = DEFAULT_COMPILE_S) -> Estimate:
        """The entry for ``key`` (None: nothing to look up); ``compile_s``: the cost
        assumed where nothing was measured."""
        entry = read(key) if key is not None else None
        if entry is None:
            return cls(compile_s)
        if entry.get("fails"):
            return cls(fails=True, measured=True)
        try:
            before = entry.get("uncompiled_step_s")
            before = None if before is None else float(before)
            setup = float(entry.get("uncompiled_setup_s", 0.0))
            compile_s = float(entry["compile_s"]) * (WARM_SHARE if entry.get("cold") else 1.0)
            eager = frozenset(str(name) for name in entry.get("eager_operations", ()))
            step_s = float(entry["step_s"])
            return cls(compile_s, step_s, False, True, before, setup, eager)
        except (KeyError, TypeError, ValueError):
            return cls(compile_s)

    def pays_from_start(self, planned_steps: int) -> bool:
        """Whether compiling before the first step pays, from the last time's figures
        alone (both step times measured): what the uncompiled form costs before its
        first step (``uncompiled_setup_s``: TensorFlow's graph trace and first run) is
        saved too."""
        known = self.measured and self.uncompiled_step_s is not None
        setup = self.uncompiled_setup_s
        return known and self.pays(planned_steps, self.uncompiled_step_s, avoided_s=setup)

    def pays(
        self, remaining_steps: int, step_s: float, ops: int | None = None, avoided_s: float = 0.0
    ) -> bool:
        """Whether compiling now saves more than ``MARGIN`` times its cost over the
        ``remaining_steps``, which run at ``step_s`` seconds each uncompiled, in ``ops``
        operations each (None: not known); ``avoided_s``: seconds the uncompiled form
        would still spend that compiling avoids."""
        if self.fails or remaining_steps <= 0:
            return False
        if self.step_s is not None:
            saved = step_s - self.step_s
        else:
            saved = step_s * DEFAULT_COMPILED_SHARE
            if ops is not None:
                saved = min(saved, ops * DEFAULT_SAVED_PER_OP_S)
        return remaining_steps * saved + avoided_s > MARGIN * self.compile_s
