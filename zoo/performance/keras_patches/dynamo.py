"""The door to ``torch.compile``'s and torch's internals: dynamo's switches and guards,
and what an aten operation is (see the package's docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


# -- torch.compile ------------------------------------------------------------------------
@contextlib.contextmanager
def autograd_traced(on: bool = True) -> Iterator[None]:
    """dynamo's ``trace_autograd_ops`` set to ``on`` for the block, if it is not already
    (``config.patch`` builds a class each call: costly per step). torch 2.13:
    ``torch._dynamo.config``; public replacement: none (it is dynamo's own switch for
    tracing ``torch.autograd.grad`` into the graph)."""
    import torch._dynamo

    config = torch._dynamo.config
    if config.trace_autograd_ops == on:
        yield
        return
    with config.patch(trace_autograd_ops=on):
        yield


def tensor_guards_only(entries) -> list[bool]:
    """dynamo's guards to keep on the zoo's compiled step and forward pass (a
    ``guard_filter_fn``): the global state and the inputs' own shapes and dtypes. Checking
    every guard dynamo sets on a Keras model cost more than the step itself. Safe because
    each compiled function is new per fit (``fresh_code``) and one graph (``fullgraph``),
    and what a callback may change during a fit (weights, metrics, learning rate, a
    frozen layer's ``requires_grad``) is read from the kept tensor guards. The entries'
    fields are torch 2.13's ``GuardFilterEntry``."""
    return [
        e.guard_type in ("GLOBAL_STATE", "SHAPE_ENV")
        or (e.guard_type == "TENSOR_MATCH" and not e.is_global)
        for e in entries
    ]


def aten_view(target) -> bool:
    """Whether an aten op returns a view of its input (schema ``Tensor(a) -> Tensor(a)``),
    for ``torch.capture``. Private: ``OpOverload._schema`` (torch 2.13); public: none."""
    schema = str(getattr(target, "_schema", ""))
    return "Tensor(a)" in schema and "Tensor(a!)" not in schema


def aten_fresh(target) -> bool:
    """Whether an aten op's results are all new tensors: no result aliases an input (a
    view, an update in place), for ``torch.passes``. Private: ``OpOverload._schema``
    (torch 2.13); public: none."""
    import torch

    if not isinstance(target, torch._ops.OpOverload):
        return False
    schema = target._schema
    return not schema.is_mutable and all(r.alias_info is None for r in schema.returns)


def fresh_code(function: Callable) -> Callable:
    """``function`` with a code object of its own: dynamo keeps its compiled code on the
    code object, which every closure made by the same ``def`` shares, so that with fewer
    guards a second model's step could run the first model's graph."""
    import types

    code = function.__code__.replace()
    return types.FunctionType(
        code, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )


@contextlib.contextmanager
def one_fake_mode() -> Iterator[None]:
    """For ``make_fx``'s real-mode recording (``torch.capture``): one fake-tensor mode
    for every recorded value's metadata. Without it ``make_fx`` makes a
    ``FakeTensorMode`` per value, each taking a Python stack trace: mnist_mlp's step made
    195, and its recording took 0.11 s instead of 0.07 s (this 2-core CPU). The metadata
    and the recording are the same. Private: ``torch._guards.tracing``/``TracingContext``
    (torch 2.13), which dynamo uses to share its own mode; public replacement: none."""
    try:
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # another torch: a mode per value, as make_fx does
        yield
        return
    if TracingContext.try_get() is not None:  # inside another trace: leave it be
        yield
        return
    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True))):
        yield
