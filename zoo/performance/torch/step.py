"""The torch train step, once: Keras 3.15's torch ``train_step`` written so that it serves
both the compiled path (dynamo traces the gather, forward, backward, optimizer update and
metrics into one graph) and ``DistributedDataParallel`` (the forward pass through DDP,
whose hooks average the gradients during ``backward``). Also the one compile-with-eager-
fallback helper that the train step and ``predict``'s forward pass share."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras

import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check


def gather(tensors, idx):
    """The batch of rows ``idx`` (a torch int64 tensor) of every tensor in ``tensors``."""
    return keras.tree.map_structure(lambda a: a.index_select(0, idx), tensors)


def keras_train_step(model, forward=None, backward: bool = False) -> Callable:
    """``step(data)``: Keras's torch ``train_step`` (``keras/src/backend/torch/
    trainer.py``): the loss, the optimizer's math and the metrics are Keras's own calls.

    Args:
        model: a compiled Keras model.
        forward: what runs the forward pass (the model, or DDP around it).
        backward: the gradients from ``loss.backward()`` (what DDP averages over the
            processes), else from ``torch.autograd.grad``, which dynamo traces into the
            graph (``backward()`` and reading ``.grad`` break it)."""
    import torch

    forward = forward or model
    training = {"training": True} if "training" in model.call_signature_parameters else {}
    loss_metric = next(m for m in model.metrics if m.name == "loss")  # Keras's loss tracker

    def step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = forward(x, **training)
        if backward:
            model.zero_grad()
        loss = model.compute_loss(x, y, y_pred, sample_weight, training=True)
        loss_metric.update_state(loss, sample_weight=keras.tree.flatten(x)[0].shape[0])
        loss = model.optimizer.scale_loss(loss)
        weights = model.trainable_weights[:]
        if backward:
            loss.backward()
            gradients = [v.value.grad for v in weights]
        else:
            # allow_unused: a weight the loss does not reach gets None, as its .grad stays
            # None in Keras's step (Keras's optimizer skips it, with a warning)
            gradients = list(
                torch.autograd.grad(loss, [v.value for v in weights], allow_unused=True)
            )
        with torch.no_grad():
            model.optimizer.apply(gradients, weights)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return step


def ddp_train_step(model: keras.Model) -> Callable:
    """``step(data)``: ``keras_train_step`` with the forward pass through
    ``DistributedDataParallel`` (built here, once per fit: it broadcasts process 0's
    weights). ``tests/test_distribute.py`` checks that a 2-process run ends with a
    1-process run's metrics."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.cuda.current_device()] if torch.cuda.is_available() else None
    ddp = DistributedDataParallel(model, device_ids=device_ids)
    return keras_train_step(model, forward=ddp, backward=True)


class Compiled:
    """Calls the first of ``candidates`` (``(kind, make)`` pairs, ``make()`` returning the
    compiled function) that runs; when one raises, the next is made, and after the last
    ``eager``, for good, with one warning (compile failures come in many types; the eager
    function re-raises real errors). Calls for which ``eager_if(*args)`` holds run
    ``eager`` directly. ``kind`` says which runs."""

    def __init__(
        self,
        candidates: list[tuple[str, Callable]],
        eager: Callable,
        what: str,
        eager_if: Callable[..., bool] | None = None,
    ):
        self.candidates, self.eager, self.what = list(candidates), eager, what
        self.eager_if = eager_if
        self.kind, self.compiled = None, None
        self._next()

    def _next(self, error: Exception | None = None) -> None:
        if self.candidates:
            self.kind, make = self.candidates.pop(0)
            self.compiled = make()
            return
        self.kind, self.compiled = "eager", None
        if error is not None:
            warnings.warn(
                f"torch.compile could not compile the {self.what} "
                f"({check.error_summary(error)[:250]}); it goes on eagerly",
                stacklevel=3,
            )

    def __call__(self, *args):
        if self.eager_if is None or not self.eager_if(*args):
            while self.compiled is not None:
                try:
                    return self.compiled(*args)
                except Exception as e:
                    self._next(e)
        return self.eager(*args)


def compiled_train_step(model, tensors, batch_size: int) -> Compiled:
    """``step(idx)``: a train step on the batch of rows ``idx`` of ``tensors``, compiled
    with ``torch.compile``, the first that compiles of: the whole step as one graph
    (``keras_train_step``, for models that keep Keras's ``train_step``); Keras's own
    ``train_step``, which dynamo splits at ``loss.backward()``; the eager step. Batches of
    another size (an epoch's partial last batch) run eagerly rather than compile again.
    Run it inside ``keras_patches.patched(traceable=True)`` (the torch window does)."""
    import torch

    def eager(idx):
        return model.train_step(gather(tensors, idx))

    def one_graph():
        train = keras_train_step(model)
        compiled = torch.compile(
            keras_patches.fresh_code(lambda idx: train(gather(tensors, idx))),
            fullgraph=True,
            options={"guard_filter_fn": keras_patches.tensor_guards_only},
        )

        def call(idx):
            with keras_patches.autograd_traced(True):
                return compiled(idx)

        return call

    def keras_step():
        compiled = torch.compile(model.train_step)

        def call(idx):
            with keras_patches.autograd_traced(False):  # Keras's own step raised under it
                return compiled(gather(tensors, idx))

        return call

    candidates = [("keras", keras_step)]
    if type(model).train_step is keras.Model.train_step:
        candidates.insert(0, ("one-graph", one_graph))
    return Compiled(candidates, eager, "train step", eager_if=lambda idx: len(idx) != batch_size)
