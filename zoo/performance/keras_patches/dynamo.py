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
    each compiled function is new per fit (``fresh_code``) and one graph (``fullgraph``)
    or graphs broken only at aten operations kept out of them (``torch.switch``),
    and what a callback may change during a fit (weights, metrics, learning rate, a
    frozen layer's ``requires_grad``) is read from the kept tensor guards. The entries'
    fields are torch 2.13's ``GuardFilterEntry``."""
    return [
        e.guard_type in ("GLOBAL_STATE", "SHAPE_ENV")
        or (e.guard_type == "TENSOR_MATCH" and not e.is_global)
        for e in entries
    ]


def inductor_cache_misses() -> int:
    """How many compiled graphs inductor did not find in its cache in this process (each
    such compile is a cold one; ``costs.WARM_SHARE``). torch 2.13:
    ``torch._dynamo.utils.counters["inductor"]["fxgraph_cache_miss"]``; public: none."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["fxgraph_cache_miss"])


def aten_view(target) -> bool:
    """Whether an aten op returns a view of its input (schema ``Tensor(a) -> Tensor(a)``),
    for ``torch.capture``. Private: ``OpOverload._schema`` (torch 2.13); public: none."""
    schema = str(getattr(target, "_schema", ""))
    return "Tensor(a)" in schema and "Tensor(a!)" not in schema


def version(tensor) -> int:
    """``tensor``'s version counter, which every write in place (an optimizer's update,
    a variable's ``assign``) increments, for ``torch.predict``'s folded weights.
    Private: ``Tensor._version`` (torch 2.13; what autograd checks saved tensors with);
    public: none."""
    return tensor._version


def aten_fresh(target) -> bool:
    """Whether an aten op's results are all new tensors: no result aliases an input (a
    view, an update in place), for ``torch.passes``. Private: ``OpOverload._schema``
    (torch 2.13); public: none."""
    import torch

    if not isinstance(target, torch._ops.OpOverload):
        return False
    schema = target._schema
    return not schema.is_mutable and all(r.alias_info is None for r in schema.returns)


def aten_function(target) -> Callable:
    """The C++ function an aten operation (``OpOverload``) calls, for calling it without
    ``OpOverload.__call__`` (``torch.direct``); any other callable as it is. Private:
    ``OpOverload._op`` (torch 2.13); public replacement: none."""
    import torch

    return target._op if isinstance(target, torch._ops.OpOverload) else target


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
def light_metadata() -> Iterator[None]:
    """For ``make_fx``'s real-mode recording (``torch.capture``, ``torch.predict``): each
    recorded value's metadata (``node.meta["val"]``: shape, strides, dtype) as a tensor
    on the ``meta`` device, where ``make_fx`` makes a fake tensor through a
    ``FakeTensorMode`` per value (each taking a Python stack trace). mnist_mlp's step
    records 195 values: its recording took 0.11 s with a mode per value, 0.064 s with one
    mode shared, 0.044 s with meta tensors (this 2-core CPU); the recorded code is the
    same. The zoo's rewrites read only shapes, strides and dtypes (``torch.passes``).
    Private: ``torch.fx.experimental.proxy_tensor.extract_val`` (torch 2.13); public
    replacement: none. Another torch: nothing swapped."""
    try:
        import torch
        from torch._subclasses.fake_tensor import is_fake
        from torch.fx.experimental import proxy_tensor
    except ImportError:
        yield
        return
    extract_val = getattr(proxy_tensor, "extract_val", None)
    if extract_val is None:
        yield
        return

    def meta_val(val, *args, **kwargs):
        if isinstance(val, torch.Tensor) and not val.is_sparse and not is_fake(val):
            return torch.empty_strided(val.shape, val.stride(), dtype=val.dtype, device="meta")
        return extract_val(val, *args, **kwargs)

    proxy_tensor.extract_val = meta_val
    try:
        yield
    finally:
        proxy_tensor.extract_val = extract_val
