"""``fast="auto"`` on torch: the captured step (``capture``), compiled mid-run with
``torch.compile`` once the measured step time and the compile's cost (``costs``: what it
cost the last time, else an assumed figure) say that compiling saves more than it costs
over the steps left. The compiled step's first result is checked against the replay's
on the same batch before it is kept; a compile that fails, or computes otherwise, is
recorded as failing (not tried again), and the replay goes on. An operation inductor
cannot compile (torch's CPU LSTM kernel) is kept out of the compiled step, which then
compiles around it, in parts."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import zoo.performance.costs as costs
import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check
from zoo.performance.torch.capture import CapturedStep, put, rng_state, set_rng_state
from zoo.performance.torch.passes import kept_eager, named_operations, operations

#: Steps the replay is timed over before the decision, and the compiled step after it.
MIN_TIMED_STEPS = 32
#: How far the compiled step's first update may be from the replay's (relative to the
#: variable's largest value): inductor reorders sums, it must not change the math.
COMPILED_RTOL = 1e-4
#: aten operations inductor cannot compile, kept out of the compiled step from the start
#: (an operation a compile fails on by name is kept out too, and written down with the
#: compile's cost): torch 2.13's CPU LSTM kernels ("expected Tensor() for op:
#: torch.ops.aten.mkldnn_rnn_layer.default", ticket_router's step; its backward kernel
#: compiles). Compiled around it, ticket_router's step took 6.9 ms against 8.5 ms
#: replayed on this 2-core CPU (the optimizer's passes over the embeddings fused).
EAGER_OPERATIONS = frozenset({"aten.mkldnn_rnn_layer.default"})


class Switch:
    """``step(idx)``, with ``window_done(steps, seconds)`` called by the window after each
    of its windows. ``phase``: ``"timing"`` the replay, ``"compiling"`` (the next full
    batch compiles), ``"timing-compiled"``, then ``"done"``. ``compiled_at``: the step
    of this fit from which the compiled step ran; ``estimate``: what was assumed.

    ``fast="on"``: ``at_once`` compiles the recording as soon as it is made, without
    timing the replay or weighing the cost (a compile that failed before, as written in
    the cost cache, is not tried again); ``otherwise()`` makes what runs where the step
    cannot be recorded (Keras's step compiled: ``step.compiled_train_step``)."""

    def __init__(
        self,
        captured: CapturedStep,
        planned_steps: int,
        at_once: bool = False,
        otherwise: Callable[[], Callable] | None = None,
    ):
        self.captured, self.remaining = captured, planned_steps
        self.at_once, self.otherwise, self._otherwise = at_once, otherwise, None
        self.phase, self.compiled, self.compiled_at, self.estimate = "timing", None, None, None
        self.done, self.timer = 0, costs.StepTimer()
        self.replay_step_s = self.compile_s = None
        self.eager_operations = set()  # kept out of the compiled step (``kept_eager``)
        self._cold = False  # the compile missed inductor's cache (``costs.Estimate``)
        self._overhead_steps, self._overhead_s = 0, 0.0

    @property
    def kind(self) -> str:
        if self._otherwise is not None:
            return getattr(self._otherwise, "kind", "otherwise")
        return "compiled" if self.compiled is not None else self.captured.kind

    def __call__(self, idx):
        if self.compiled is None or len(idx) != self.captured.batch_size:
            if self.otherwise is not None and self.captured.kind == "eager":
                if self._otherwise is None:
                    self._otherwise = self.otherwise()
                return self._otherwise(idx)
            logs = self.captured(idx)
            if self.at_once and self.phase == "timing" and self.captured.kind == "captured":
                self._compile_at_once()
            return logs
        if self.phase == "compiling":
            return self._first_compiled_call(idx)
        return self.compiled(idx)

    def check(self) -> None:
        """Before each window: a recording dropped (``CapturedStep.check``) drops the
        compiled step with it, and the decision is made again."""
        if self.captured.check():
            self.compiled, self.compiled_at, self.phase = None, None, "timing"
            self.timer = costs.StepTimer()

    def window_done(self, steps: int, seconds: float) -> None:
        self.done += steps
        self.remaining -= steps
        # the steps that were not replayed or run compiled (recording, compiling, checks,
        # eager steps) are left out, both their seconds and their count: the step time is
        # the fastest window's (``StepTimer``), which a count with them would bias low
        overhead = self.captured.overhead_s + self._overhead_s
        untimed = self.captured.overhead_steps + self._overhead_steps
        self.captured.overhead_s = self._overhead_s = 0.0
        self.captured.overhead_steps = self._overhead_steps = 0
        if self.phase not in ("timing", "timing-compiled") or self.captured.kind != "captured":
            return
        if steps - untimed <= 0:
            return
        step_s = self.timer.add(steps - untimed, max(seconds - overhead, 0.0), MIN_TIMED_STEPS)
        if step_s is None:
            return
        if self.phase == "timing-compiled":
            costs.record(
                self.captured.key,
                self.compile_s,
                step_s,
                self.replay_step_s,
                eager_operations=sorted(self.eager_operations),
                cold=self._cold,
            )
            self.phase = "done"
            return
        self.replay_step_s = step_s
        self.estimate = costs.Estimate.of(self.captured.key)
        if self.remaining > 0 and self.estimate.pays(self.remaining, step_s, self.captured.ops):
            self._start_compiling(self.done)
        else:
            self.phase = "done"

    def _compile_at_once(self) -> None:
        """``fast="on"``, the step just recorded: compiled from the next full batch (the
        steps so far in this window are not timed), unless it failed before."""
        self.estimate = costs.Estimate.of(self.captured.key)
        if not self.estimate.fails:
            self._start_compiling(self.done + self.captured.overhead_steps)
            return
        self.phase = "done"
        _warn(
            f"failed on this train step before (as {costs.cache_dir() / costs.FILE} says; "
            "delete it to try again)"
        )

    def _start_compiling(self, at: int) -> None:
        """The next full batch compiles (``_first_compiled_call``); ``at``: its step."""
        present = operations(self.captured.graph)
        self.eager_operations = (EAGER_OPERATIONS | self.estimate.eager_operations) & present
        self.compiled, self.compiled_at = self._compile(), at
        self.phase = "compiling"

    def _first_compiled_call(self, idx):
        """Compiles (the first call), checks the result against the replay's on the same
        batch, and keeps the compile's cost; on a failure or another result the replay's
        result stands and compiling is recorded as failing."""
        checked = time.perf_counter()
        state = self.captured.state()
        before = [v.value.detach().clone() for v in state]
        rng = rng_state()
        self.captured.replay(idx)
        replayed, after = [v.value.detach().clone() for v in state], rng_state()
        put(state, before)
        set_rng_state(rng)  # the same draws for both (inductor's own differ: refused)
        start, misses = time.perf_counter(), keras_patches.inductor_cache_misses()
        while True:
            try:
                self.compiled(idx)
                worst = max(
                    (_difference(v.value, r) for v, r in zip(state, replayed, strict=True)),
                    default=0.0,
                )
                why = None if worst <= COMPILED_RTOL else f"another result (relative {worst:.1e})"
                break
            except Exception as e:  # inductor raises many types; the replay's result stands
                why = check.error_summary(e)[:200]
                named = named_operations(self.captured.graph, str(e)) - self.eager_operations
                if not named:
                    break
                # an operation it cannot compile: kept out, and compiled again around it
                # (from the same state: a compile in parts may have run its first parts)
                put(state, before)
                set_rng_state(rng)
                self.eager_operations |= named
                try:
                    self.compiled = self._compile()
                except Exception as again:  # copying or wrapping the recording failed
                    why = check.error_summary(again)[:200]
                    break
        self._cold = keras_patches.inductor_cache_misses() > misses
        same = why is None
        self.compile_s = time.perf_counter() - start
        self._overhead_steps += 1
        self._overhead_s += time.perf_counter() - checked
        self.phase = "timing-compiled"
        if not same:
            put(state, replayed)
            set_rng_state(after)
            self.compiled, self.compiled_at, self.phase = None, None, "done"
            costs.write(self.captured.key, {"fails": True, "why": why})
            if self.at_once:  # asked for (``fast="on"``); under "auto" not the user's concern
                _warn(f"could not compile the train step ({why})")
        return None

    def _compile(self):
        """The recording compiled: as one graph, or around ``eager_operations``."""
        graph = self.captured.graph
        if self.eager_operations:
            return _compile(kept_eager(graph, self.eager_operations).forward, one_graph=False)
        return _compile(graph.forward)


def _warn(what: str) -> None:
    warnings.warn(
        f"torch.compile {what}; it runs uncompiled (Keras's step, replayed)", stacklevel=4
    )


def _difference(value, expected) -> float:
    """The largest difference, relative to the larger of 1e-6 and the largest value."""
    value, expected = value.detach().double(), expected.detach().double()
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-6)
    return float((value - expected).abs().max()) / scale if expected.numel() else 0.0


def _compile(replay, one_graph: bool = True):
    import torch

    return torch.compile(
        replay,
        fullgraph=one_graph,
        dynamic=False,
        options={"guard_filter_fn": keras_patches.tensor_guards_only},
    )
