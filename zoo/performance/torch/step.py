"""The compiled torch train step: forward, backward, Keras's optimizer update and the
metrics as one graph."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import keras

from zoo import _validation as check
from zoo.performance.torch.keras_patches import dynamo_traces_keras


def _gather(tensors, idx):
    """The batch of rows ``idx`` (a torch int64 tensor) of every tensor in ``tensors``."""
    return keras.tree.map_structure(lambda a: a.index_select(0, idx), tensors)


def _one_graph_train_step(model, tensors) -> Callable:
    """``step(idx)``: Keras 3.15's torch ``train_step`` (``keras/src/backend/torch/
    trainer.py``) on the batch of rows ``idx`` of ``tensors``, written so that dynamo
    traces all of it (the gather, forward, backward, optimizer update and metrics) into
    one graph: the gradients come from ``torch.autograd.grad``, which dynamo traces under
    ``trace_autograd_ops``, where Keras's step calls ``zero_grad`` and ``loss.backward()``
    and reads ``.grad`` (a graph break; and with ``trace_autograd_ops`` Keras's own step
    raised inside the traced model call, measured with torch 2.13). The loss, the
    optimizer's math and the metrics are Keras's own calls, as in
    ``zoo.distribute.ddp_train_step``."""
    import torch

    training = {"training": True} if "training" in model.call_signature_parameters else {}

    def step(idx):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(_gather(tensors, idx))
        y_pred = model(x, **training)
        # private, as in Keras's own train_step: _compute_loss adds the layers' losses,
        # _loss_tracker is the "loss" metric (no public handle on either in Keras 3.15)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
        model._loss_tracker.update_state(loss, sample_weight=idx.shape[0])
        loss = model.optimizer.scale_loss(loss)
        weights = model.trainable_weights
        # allow_unused: a weight the loss does not reach gets None, as its .grad stays None
        # in Keras's step (Keras's optimizer skips it, with a warning)
        gradients = torch.autograd.grad(loss, [v.value for v in weights], allow_unused=True)
        with torch.no_grad():
            model.optimizer.apply(list(gradients), weights)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return step


def _tensor_guards_only(entries) -> list[bool]:
    """dynamo's guards to keep on the one-graph step: the global state (grad mode and
    the like) and the step's own inputs' shapes and dtypes. Checking every guard dynamo
    sets on a Keras model (about 1,700 on mnist_mlp: its layers' attributes, Keras's
    modules) took longer than the step itself (measured: 41,000-44,000 -> 88,000-104,000
    samples/s without them). Dropping them is safe here because the compiled function
    is new for every fit (``_fresh``) and one graph (``fullgraph``: no frame of Keras's
    own gets compiled code with these guards), and what a callback may change during a
    fit (weight values, metric states, the learning rate: all tensors; a frozen layer:
    ``requires_grad``) is read from the kept tensor guards and inputs. Other Python
    changes to the model take effect at the next ``fit``, as with Keras's compiled train
    functions on TensorFlow and JAX."""
    return [
        e.guard_type in ("GLOBAL_STATE", "SHAPE_ENV")
        or (e.guard_type == "TENSOR_MATCH" and not e.is_global)
        for e in entries
    ]


def _fresh(function: Callable) -> Callable:
    """``function`` with a code object of its own: dynamo keeps its compiled code on the
    code object, which every closure made by the same ``def`` shares, so that with fewer
    guards a second model's step could run the first model's graph."""
    import types

    code = function.__code__.replace()
    return types.FunctionType(
        code, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )


def _compiled_torch_step(model, tensors, batch_size: int) -> Callable:
    """``step(idx)``: a train step on the batch of rows ``idx`` of ``tensors``, compiled
    with ``torch.compile``; the first that compiles of:

    1. the whole step as one graph (``_one_graph_train_step``), for models that keep
       Keras's ``train_step``; dynamo compiles it again when a weight's ``requires_grad``
       changes (a callback freezing a layer: Keras sets it), from the guards kept;
    2. Keras's own ``train_step``, which dynamo splits at ``loss.backward()``;
    3. the eager step, for good, with a warning.

    Batches of another size (an epoch's last, partial batch) run eagerly instead of
    compiling the step again for them."""
    import torch

    dynamo_traces_keras()
    kinds = ["keras"]
    if type(model).train_step is keras.Model.train_step:
        kinds.insert(0, "one-graph")
    state = {"kind": None, "compiled": None}
    # dynamo reads trace_autograd_ops when it traces (the first call, and again where a
    # kept guard fails), not when it runs a compiled graph. Each step sets it only if it
    # is not set: the torch window sets it once around its steps (`step.tracing`), since
    # `config.patch` around every call built a class each time (cProfile, mnist_mlp:
    # 0.04 s of an epoch's 0.44 s). Keras's own step is traced with it off: it raised
    # under it (_one_graph_train_step's docstring)
    config = torch._dynamo.config

    def traced_with(on: bool, compiled: Callable) -> Callable:
        """``compiled`` called with trace_autograd_ops ``on``, patched only if it is not."""

        def call(idx):
            if config.trace_autograd_ops == on:
                return compiled(idx)
            with config.patch(trace_autograd_ops=on):
                return compiled(idx)

        return call

    def compile_next():
        kind = kinds.pop(0) if kinds else "eager"
        state["kind"] = kind
        if kind == "one-graph":
            one_graph = torch.compile(
                _fresh(_one_graph_train_step(model, tensors)),
                fullgraph=True,
                options={"guard_filter_fn": _tensor_guards_only},
            )
            state["compiled"] = traced_with(True, one_graph)
        elif kind == "keras":
            keras_step = torch.compile(model.train_step)
            # off also inside a window that set it (above)
            state["compiled"] = traced_with(False, lambda idx: keras_step(_gather(tensors, idx)))
        else:
            state["compiled"] = None

    compile_next()

    def step(idx):
        if state["compiled"] is None or len(idx) != batch_size:
            return model.train_step(_gather(tensors, idx))
        try:
            return state["compiled"](idx)
        except Exception as e:  # compile failures come in many types; eager re-raises real errors
            compile_next()
            if state["kind"] == "eager":
                warnings.warn(
                    f"torch.compile could not compile the train step "
                    f"({check.error_summary(e)[:250]}); training goes on with the eager step",
                    stacklevel=2,
                )
            return step(idx)

    def tracing():
        """What the torch window runs its steps in: trace_autograd_ops set for the
        one-graph step."""
        if state["kind"] == "one-graph":
            return config.patch(trace_autograd_ops=True)
        return contextlib.nullcontext()

    step.state = state  # the kind of step running, for tests
    step.tracing = tracing
    return step
