"""The torch window: a Python loop over a window's steps (torch has no compiled loop),
each gathering its batch from torch tensors in memory, in the epoch's ``(seed, epoch)``
order, without Keras's per-step callbacks and iterator."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import zoo.performance.heap as heap
import zoo.performance.keras_patches as keras_patches
from zoo import distribute
from zoo.performance.feed import Batches, EpochHooks, Window
from zoo.performance.torch.capture import CapturedStep
from zoo.performance.torch.step import compiled_train_step, ddp_train_step, gather
from zoo.performance.torch.switch import Switch


def _window_functions(model, window: Window, step: Callable):
    """``(train_function, test_function)`` for Keras's ``fit``: a window of ``step(idx)``
    calls, and evaluation batch by batch under ``no_grad``."""
    import torch

    feed = window.feed

    def train_function(data):  # the window's batches come from the order, not `data`
        begin, _, _ = window.take()
        # trace_autograd_ops set once around the window's steps (not per step: costly)
        traced = getattr(step, "kind", None) == "one-graph"
        if hasattr(step, "check"):
            step.check()
        start = time.perf_counter()
        with keras_patches.autograd_traced(True) if traced else contextlib.nullcontext():
            for idx in _window_batches(feed, begin, window.next_step):
                logs = step(idx)
        if isinstance(step, Switch):
            step.window_done(window.next_step - begin, time.perf_counter() - start)
        return model.get_metrics_result() if logs is None else logs  # None: a replayed step

    def test_function(data):
        with torch.no_grad():
            for one in data:
                logs = model.test_step(one)
        return logs

    return train_function, test_function


def _window_batches(feed: Batches, begin: int, end: int):
    """The row indices (int64 tensors) of steps ``begin`` to ``end`` of the epoch: views
    of one tensor made for the window (a process's share of each batch under DDP: one
    per step), not a numpy slice, copy and tensor per step (6 us of mnist_mlp's 0.4 ms
    compiled step on this CPU)."""
    import torch

    if feed.shard is not None or end <= begin:  # (`split` of no rows gives one empty batch)
        return [torch.from_numpy(feed.indices(i).astype("int64")) for i in range(begin, end)]
    size = feed.batch_size
    rows = torch.from_numpy(feed.order[begin * size : end * size].astype("int64"))
    return rows.split(size)  # the epoch's last batch as short as ``feed.indices`` makes it


def steps_only(feed: Batches):
    """What ``fit`` iterates on the torch window: one item per step, each the epoch's
    first batch (Keras reads the first to build the model's loss and metrics; the window
    gathers the real batches itself), as a torch ``DataLoader``, which Keras's torch
    trainer takes as it is. Keras's epoch iterator takes one item per step from it; this
    one's iterator repeats the first batch (``itertools.repeat``) where a DataLoader
    fetches, converts and profiles each item (17 us a step, as much as 4% of mnist_mlp's
    compiled step on this CPU)."""
    import itertools

    import torch

    first = feed[0]

    class Steps(torch.utils.data.Dataset):
        def __len__(self):
            return len(feed)

        def __getitem__(self, i):
            return first

    class Repeat(torch.utils.data.DataLoader):
        def __iter__(self):
            return itertools.repeat(first, len(feed))

    return Repeat(Steps(), batch_size=None)


def targets_like_outputs(model, y):
    """Targets given as a dict by output name, as a list in the order of the model's outputs
    where the model returns a list (such as ticket_router). Keras's loss makes the same
    list on every step after its structure check raises, which broke the compiled step's
    graph; the torch feed makes it once instead."""
    names = list(getattr(model, "output_names", None) or ())
    if not isinstance(y, dict) or set(y) != set(names):
        return y
    try:
        outputs = model.output
    except (AttributeError, ValueError):  # a model never called on a symbolic input
        return y
    return [y[name] for name in names] if isinstance(outputs, (list, tuple)) else y


def _one_step_evaluation(model) -> None:
    """Keras reads ``steps_per_execution`` when it makes an epoch iterator: fit's own is
    made by now, and evaluation's (made later) then runs batch by batch, since its
    batches rarely divide into the training windows."""
    model.steps_per_execution = 1


def install(model, window: Window, settings, stack: contextlib.ExitStack):
    """Sets the torch window as ``model``'s train and test functions; returns ``(data,
    callbacks)`` for ``fit``. Keras's torch functions are swapped (``keras_patches``)
    until ``stack`` closes."""
    feed = window.feed
    tensors = (feed.x, feed.y)
    if settings.ddp:
        ddp_step = ddp_train_step(model)
        step = lambda idx: ddp_step(gather(tensors, idx))  # noqa: E731
    else:
        batch = len(feed.indices(0))
        captured = CapturedStep(model, tensors, batch)
        if settings.torch_compile:  # the recording compiled at once; else Keras's step
            step = Switch(
                captured,
                settings.planned_steps,
                at_once=True,
                otherwise=lambda: compiled_train_step(model, tensors, batch),
            )
        elif settings.compile_when_pays:
            step = Switch(captured, settings.planned_steps)
        else:
            step = captured
    keras_patches.set_train_function(model, *_window_functions(model, window, step))
    hooks = [EpochHooks(window.set_epoch, at_train_begin=lambda: _one_step_evaluation(model))]
    if settings.ddp:
        hooks.append(distribute.SumMetricsOverProcesses())
    if settings.held_heap:
        stack.enter_context(heap.held())
    stack.enter_context(
        keras_patches.patched(
            traceable=settings.torch_compile,
            fused_lstm=settings.fused_lstm,
            channels_last=settings.channels_last,
        )
    )
    return steps_only(feed), hooks
