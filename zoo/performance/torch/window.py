"""The torch window: a Python loop over a window's steps, each gathering its batch from
torch tensors in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from zoo.performance.feed import _Batches, _Window


def _torch_window(model, window: _Window, step: Callable):
    """On torch the window is a Python loop over its steps (torch has no compiled loop),
    each ``step(idx)`` gathering its batch from the torch tensors in memory, in the
    epoch's ``(seed, epoch)`` order. What it saves is Keras's per-step callbacks and
    iterator (about 0.15-0.25 ms a step, measured: its PyDataset adapter, conversion and
    DataLoader); ``fit`` iterates ``_steps_only`` instead. ``step`` is the train step,
    compiled or not."""
    import torch

    feed = window.feed
    tracing = getattr(step, "tracing", contextlib.nullcontext)

    def train_function(data):  # the window's batches come from the order, not `data`
        begin, _, _ = window.take()
        with tracing():
            for i in range(begin, window.next_step):
                logs = step(torch.from_numpy(feed.indices(i).astype("int64")))
        return logs

    def test_function(data):
        with torch.no_grad():
            for one in data:
                logs = model.test_step(one)
        return logs

    return train_function, test_function


def _steps_only(feed: _Batches):
    """What ``fit`` iterates on the torch window: one item per step, each the epoch's
    first batch (Keras reads the first to build the model's loss and metrics; the
    window gathers the real batches itself), through a torch ``DataLoader``, which
    Keras's torch trainer iterates as it is (about 10 us a step, against 26 us for a
    PyDataset of the same item, measured)."""
    import torch

    first = feed[0]

    class Steps(torch.utils.data.Dataset):
        def __len__(self):
            return len(feed)

        def __getitem__(self, i):
            return first

    return torch.utils.data.DataLoader(Steps(), batch_size=None)


def _targets_like_outputs(model, y):
    """Targets given as a dict by output name, as a list in the order of the model's outputs
    where the model returns a list (a functional model built with a list of outputs, such as
    ticket_router). Keras's loss makes the same list on every step, after its structure
    check fails with an exception (``CompileLoss.call``); under ``torch.compile`` that
    exception broke the train step's graph, so the torch feed makes it once instead."""
    names = list(getattr(model, "output_names", None) or ())
    if not isinstance(y, dict) or set(y) != set(names):
        return y
    try:
        outputs = model.output
    except (AttributeError, ValueError):  # a model never called on a symbolic input
        return y
    return [y[name] for name in names] if isinstance(outputs, (list, tuple)) else y
