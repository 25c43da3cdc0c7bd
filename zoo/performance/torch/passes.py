"""Rewrites of a recorded torch graph (the train step's, ``capture``, and ``predict``'s)
that keep every result bit for bit (``tests/test_capture.py``) and run fewer passes over
memory: what ``torch``'s own layers do where Keras's make two operations of one."""

from __future__ import annotations

from collections.abc import Callable

import zoo.performance.keras_patches as keras_patches

#: elementwise operations and their in-place forms, for ``reuse_temporaries``
_IN_PLACE = {
    "add.Tensor": "add_.Tensor",
    "sub.Tensor": "sub_.Tensor",
    "mul.Tensor": "mul_.Tensor",
    "div.Tensor": "div_.Tensor",
    "relu.default": "relu_.default",
    "sigmoid.default": "sigmoid_.default",
    "tanh.default": "tanh_.default",
}


def finish(graph) -> None:
    """The last simplification of a recording (the train step's and ``predict``'s):
    Keras's convolution bias folded in (``fuse_bias``), results nobody reads dropped
    (updates in place are kept: FX counts them impure), elementwise operations written
    into their input where nothing else reads it (``reuse_temporaries``), the code made
    again."""
    fuse_bias(graph)
    graph.graph.eliminate_dead_code()
    reuse_temporaries(graph)
    graph.recompile()


def fuse_bias(graph) -> None:
    """Keras's convolution then its bias ``add`` (a second pass over the activations)
    as one ``convolution`` with the bias, as torch's own layers run it: the same sums,
    with the bias added to each output once, at the end (bit for bit Keras's outputs on
    this machine's oneDNN: ``tests/test_capture.py``). The pattern: ``add(permute?(
    convolution(x, w, None, ...)), view(bias, [1, ..., C, ...]))`` with nothing else
    reading the convolution's output."""
    import torch

    aten = torch.ops.aten
    for add in list(graph.graph.nodes):
        if add.op != "call_function" or add.target is not aten.add.Tensor or len(add.args) != 2:
            continue
        out, bias = add.args
        permute = out if getattr(out, "target", None) is aten.permute.default else None
        conv = permute.args[0] if permute is not None else out
        if (
            getattr(conv, "target", None) is not aten.convolution.default
            or conv.args[2] is not None
            or len(conv.users) != 1
            or (permute is not None and len(permute.users) != 1)
            or getattr(bias, "target", None) is not aten.view.default
        ):
            continue
        vector, shape = bias.args
        channels = conv.meta.get("val")
        if getattr(vector, "op", None) != "get_attr" or channels is None:
            continue
        size = getattr(graph, vector.target).shape
        channel_axis = list(permute.args[1]).index(1) if permute is not None else 1
        expected = [1] * len(shape)
        expected[channel_axis] = channels.shape[1]
        if len(size) != 1 or size[0] != channels.shape[1] or list(shape) != expected:
            continue
        conv.prepend(vector)  # a get_attr, made where first read: moved before the conv
        conv.args = (*conv.args[:2], vector, *conv.args[3:])
        add.replace_all_uses_with(out)
        graph.graph.erase_node(add)


def attribute(graph, target: str):
    """What a ``get_attr`` node of ``graph`` reads (``target``: a dotted path)."""
    value = graph
    for part in target.split("."):
        value = getattr(value, part)
    return value


def hold(graph, node, name: str, value):
    """``value`` (what ``node`` computes, computed once) held by ``graph`` as buffer
    ``name`` and read by every user of ``node`` in its place; returns the reading node."""
    graph.register_buffer(name, value)
    with graph.graph.inserting_before(node):
        held = graph.graph.get_attr(name)
    node.replace_all_uses_with(held)
    return held


def fold_weights(graph) -> Callable[[], None] | None:
    """The operations of ``predict``'s recording that read only the tensors it holds
    (the weights) and constants, computed once here and held as tensors (an LSTM's
    kernels transposed and copied for torch's kernel, its zero states): 22 of
    ticket_router's operations per batch, 10 of them copies and fills. Run before
    ``finish``, so that no operation is later written into a held result in place (and
    only under ``no_grad``, as ``predict`` runs). Returns ``refresh``, which computes the held
    results again where any of the tensors they read changed in place since (a fit
    between two predictions: their version counters), or None where nothing was
    folded."""
    import torch

    values = {}  # node -> tensor, for the held tensors and the folded results
    for node in graph.graph.nodes:
        if node.op == "get_attr":
            value = attribute(graph, node.target)
            if isinstance(value, torch.Tensor):
                values[node] = value
    read = {}  # id -> the held tensors the folded operations read (not their results)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    returned = set(output.all_input_nodes)  # a result stays a new tensor per call
    steps = []  # (held result, operation, arguments) for ``refresh``, in the graph's order
    folded = 0
    for node in list(graph.graph.nodes):
        if (
            node.op != "call_function"
            or node in returned
            or not foldable(node.target)
            or in_place(node.target)
            or not all(n in values for n in node.all_input_nodes)
        ):
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
        value = node.target(*args, **kwargs)
        if not isinstance(value, torch.Tensor):
            continue
        for n in node.all_input_nodes:
            if not n.target.startswith("_zoo_folded_"):  # a tensor the recording holds
                read[id(values[n])] = values[n]
        held = hold(graph, node, f"_zoo_folded_{folded}", value)
        folded += 1
        graph.graph.erase_node(node)
        values[held] = value
        if not keras_patches.aten_view(node.target):  # a view follows its base by itself
            steps.append((value, node.target, args, kwargs))
    if not folded:
        return None
    graph.graph.eliminate_dead_code()
    read = list(read.values())
    versions = [(t, keras_patches.version(t)) for t in read]

    def refresh() -> None:
        if all(keras_patches.version(t) == v for t, v in versions):
            return
        with torch.no_grad():
            for value, target, args, kwargs in steps:
                value.copy_(target(*args, **kwargs))
        versions[:] = [(t, keras_patches.version(t)) for t in read]

    return refresh


def reuse_temporaries(graph) -> None:
    """An elementwise operation (``_IN_PLACE``) on a temporary that nothing else reads
    written into that temporary (``relu(add(mm(x, w), b))`` as torch's ``Linear`` then
    ``ReLU(inplace=True)`` run it): the same kernel over the same values, without a new
    tensor per operation (mnist_mlp's ``predict``: 8% of its time on this CPU). The
    temporary must be the fresh result of an operation (by its schema), or a view of
    one, each read by one operation alone, the temporary as this one's first argument
    only, with the result's shape, strides and dtype (no broadcast into it, no type
    promotion)."""
    import torch

    aten = torch.ops.aten
    pairs = {}
    for name, in_place in _IN_PLACE.items():
        op, overload = name.split(".")
        op_, overload_ = in_place.split(".")
        pairs[getattr(getattr(aten, op), overload)] = getattr(getattr(aten, op_), overload_)
    reused = set()  # rewritten here: they write into a temporary nothing else reads

    def owned(node) -> bool:
        """Read by one operation alone, and a tensor of its own: a fresh result, one
        this pass writes into, or a view of one of those that nothing else reads (the
        channels-last permutes around Keras's convolutions)."""
        if getattr(node, "op", None) != "call_function" or len(node.users) != 1:
            return False
        if node in reused or keras_patches.aten_fresh(node.target):
            return True
        return keras_patches.aten_view(node.target) and bool(node.args) and owned(node.args[0])

    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in pairs or not node.args:
            continue
        temporary = node.args[0]
        if (
            not owned(temporary)
            or temporary in node.args[1:]
            or temporary in node.kwargs.values()
            or not _same_layout(temporary.meta.get("val"), node.meta.get("val"))
        ):
            continue
        node.target = pairs[node.target]
        reused.add(node)


def _same_layout(a, b) -> bool:
    import torch

    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    return (a.shape, a.stride(), a.dtype, a.device) == (b.shape, b.stride(), b.dtype, b.device)


def in_place(target) -> bool:
    """An aten operation that writes its first argument (torch names them ``op_``)."""
    name = target.name() if callable(getattr(target, "name", None)) else ""
    return name.split("::")[-1].split(".")[0].endswith("_")


def draws_random(target) -> bool:
    """A torch operator that draws random numbers (torch tags them
    ``nondeterministic_seeded``)."""
    import torch

    return torch.Tag.nondeterministic_seeded in getattr(target, "tags", ())


def foldable(target) -> bool:
    """A torch operator (they carry ``tags``; ``getitem`` and other Python do not) that
    gives the same result each time: not one that draws random numbers."""
    return getattr(target, "tags", None) is not None and not draws_random(target)


def kept_eager(graph, names: set[str]):
    """A copy of ``graph`` (the same tensors held) whose calls of the aten operations
    named in ``names`` (``"aten.mkldnn_rnn_layer.default"``) run as they are, outside
    ``torch.compile``: dynamo breaks its graph at each and compiles the parts between.
    For an operation inductor cannot compile (``switch``), not one to keep out for speed."""
    import copy

    import torch

    copied = torch.fx.GraphModule(graph, copy.deepcopy(graph.graph))
    for node in copied.graph.nodes:
        if node.op == "call_function" and str(node.target) in names:
            node.target = _run_eagerly(node.target)
    copied.recompile()
    return copied


def named_operations(graph, text: str) -> set[str]:
    """The aten operations of ``graph`` that ``text`` (an error's) names, as
    ``str(target)``: inductor names the operation it could not compile
    (``... for op: torch.ops.aten.mkldnn_rnn_layer.default``)."""
    return {t for t in operations(graph) if t.startswith("aten.") and f"ops.{t}" in text}


def operations(graph) -> set[str]:
    """The operations ``graph`` calls, as ``str(target)`` (``"aten.mm.default"``)."""
    return {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}


def _run_eagerly(target):
    import torch

    @torch.compiler.disable
    def run(*args, **kwargs):
        return target(*args, **kwargs)

    run.__name__ = f"eager_{target.__name__.replace('.', '_')}"  # FX's code names it
    return run
