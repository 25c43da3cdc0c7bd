"""A recording's code as a plain Python function that calls each aten operation's own
function: what FX's generated ``forward`` runs, without its per-operation Python.

Why: FX's code calls ``torch.ops.aten.mm.default(...)``: three attribute lookups and
``OpOverload.__call__`` (Python) around the C++ function, about 0.45 us of 1.7 us per
small operation on this 2-core CPU, plus ``self.<constant>`` per tensor it holds.
mnist_mlp's recorded train step runs 94 operations: 0.78 ms a step through FX's
``forward``, 0.68 ms through this (the median of 600 alternating steps). The same
operations, on the same tensors, in the same order (the replay tests compare bit for
bit), each intermediate let go after its last use as FX's code does (its memory freed
as early).

Only for a recording of plain tensors in and a tensor, a flat list of them or nothing
out (the train step; ``predict``'s forward pass, which is recorded on its inputs' leaves
for this): anything else keeps FX's ``forward``. ``torch.compile`` is always given FX's
``forward`` (``switch``)."""

from __future__ import annotations

from collections.abc import Callable

import zoo.performance.keras_patches as keras_patches
from zoo.performance.torch.passes import attribute


def direct(graph, example) -> Callable | None:
    """``graph``'s code as a function of its inputs (``graph.forward``'s arguments and
    results), ``example`` what it was recorded on: a tensor or a list of tensors (one
    argument each); None where it cannot be written so (the caller keeps
    ``graph.forward``)."""
    import torch

    example = [example] if isinstance(example, torch.Tensor) else example
    if not isinstance(example, (list, tuple)) or not all(
        isinstance(t, torch.Tensor) for t in example
    ):  # a tree, even of one tensor: FX flattens it
        return None
    nodes = list(graph.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    (output,) = [n for n in nodes if n.op == "output"]
    result = output.args[0]
    flat = isinstance(result, (list, tuple)) and all(isinstance(r, torch.fx.Node) for r in result)
    if len(inputs) != len(example) or not (
        result is None or isinstance(result, torch.fx.Node) or flat
    ):
        return None
    if any(n.op not in ("placeholder", "get_attr", "call_function", "output") for n in nodes):
        return None
    held: dict[str, object] = {}  # the function's globals: constants, tensors, operations
    names: dict[torch.fx.Node, str] = {}

    def constant(value) -> str:
        name = f"_k{len(held)}"
        held[name] = value
        return name

    def code(a) -> str:
        if isinstance(a, torch.fx.Node):
            return names[a]
        if isinstance(a, list):
            return "[" + ", ".join(code(x) for x in a) + "]"
        if isinstance(a, tuple):
            return "(" + "".join(code(x) + ", " for x in a) + ")"
        if a is None or type(a) in (bool, int):
            return repr(a)
        if isinstance(a, dict):  # no aten operation takes one: not written (FX's forward)
            raise TypeError("a dict argument")
        return constant(a)  # floats (inf, nan), dtypes, devices, memory formats

    last_use = {}
    for i, node in enumerate(nodes):
        for read in node.all_input_nodes:
            last_use[read] = i
    body = []
    for i, node in enumerate(nodes):
        if node.op == "placeholder":
            names[node] = f"x{len(names)}"
        elif node.op == "get_attr":
            names[node] = constant(attribute(graph, node.target))
        elif node.op == "call_function":
            names[node] = f"v{i}"
            try:
                call = [code(a) for a in node.args]
                call += [f"{k}={code(v)}" for k, v in node.kwargs.items()]
            except TypeError:
                return None
            function = constant(keras_patches.aten_function(node.target))
            body.append(f"v{i} = {function}({', '.join(call)})")
        else:  # the output
            body.append(f"return {code(result)}")
            break
        done = [names[n] for n, j in last_use.items() if j == i and n.op != "get_attr"]
        if done:
            body.append("del " + ", ".join(done))
    arguments = ", ".join(names[n] for n in inputs)
    source = f"def run({arguments}):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, "<zoo recording>", "exec"), held)  # the code written above
    run = held["run"]
    run.source = source
    return run
