"""The captured torch train step: Keras's own train step (``step.keras_train_step``)
recorded once per fit with torch's ``make_fx`` as the list of aten operations it runs
(forward, backward, optimizer update, metric updates), then replayed for every batch of
the same size.

Why: Keras's eager step spends most of its time in Python around the math (mnist_mlp on
this 2-core CPU, batch 64: 2.39 ms a step, of which ``Layer.__call__`` 0.66 ms, the
optimizer's ``apply`` 0.48 ms; a plain torch loop takes 0.69 ms). The replay runs the same
operations on the same tensors in the same order (bit for bit Keras's results on the CPU)
at 0.74 ms, after 0.1 s of recording, where ``torch.compile`` takes 4.5-7.6 s.

What cannot be replayed is refused when it is recorded, and Keras's eager step runs for
the rest of the fit: a value read out of a tensor into Python (a schedule's ``ops.cond``,
a loss-scaling check: ``make_fx`` raises), random numbers from a seeded generator (the
recording would repeat them), a model with its own ``train_step``. Recording runs the
step once: every variable it could change (the model's, the optimizer's, the metrics')
and torch's global random generator are put back after it, and the step then runs for
real."""

from __future__ import annotations

import hashlib
import json
import time

import keras

import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check
from zoo.performance.torch.direct import direct
from zoo.performance.torch.passes import draws_random, finish, foldable, hold, in_place
from zoo.performance.torch.step import gather, keras_train_step


def _state(model) -> list:
    """Every variable a train step can change: the model's, the optimizer's, the metrics'."""
    variables = list(model.variables) + list(model.optimizer.variables)
    for metric in model.metrics:
        variables += metric.variables
    seen, unique = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def replayable(graph) -> str | None:
    """Why the recorded ``graph`` cannot be replayed (None: it can): an operation that
    draws random numbers (torch tags them ``nondeterministic_seeded``) from a generator
    of its own, such as the one Keras seeds for each call of a seeded ``Dropout``: the
    recording would repeat its numbers. Those that draw from torch's global generator
    (Keras's unseeded dropout) draw anew at every replay, in the order Keras's step
    would."""
    import torch

    for node in graph.nodes:
        if node.op != "call_function" or not draws_random(node.target):
            continue
        arguments = [*node.args, *node.kwargs.values()]
        if any(isinstance(a, torch.Generator) for a in arguments):
            return f"it draws random numbers from a seeded generator ({node.target})"
    return None


class CapturedStep:
    """``step(idx)``: a train step on the batch of rows ``idx`` of ``tensors``. The first
    call runs Keras's eager ``train_step`` (it builds whatever is built lazily); the
    second records the step and replays it from then on. Batches of another size (an
    epoch's partial last batch) run Keras's eager step. Returns the metrics' results
    from an eager step, None from a replay (``model.get_metrics_result()`` reads them).
    ``kind``: ``"waiting"``, ``"captured"`` or ``"eager"`` (for good); ``refused``: why
    not captured."""

    def __init__(self, model, tensors, batch_size: int):
        self.model, self.tensors, self.batch_size = model, tensors, batch_size
        self.kind, self.refused, self.replay, self.key = "waiting", None, None, None
        self.graph = None  # the recording (its ``forward`` is what ``torch.compile`` gets)
        self.ops = None  # the recording's operations
        self._eager_calls = 0
        # the steps that ran eagerly or recorded (not replayed) and their seconds, for ``Switch``
        self.overhead_steps, self.overhead_s = 0, 0.0
        self._trained = None  # the trainable variables the recording updates
        if type(model).train_step is not keras.Model.train_step:
            self._refuse("the model has its own train_step")

    def check(self) -> bool:
        """Called before each window: where the trainable variables changed since the
        recording (a callback froze or unfroze a layer), the recording is dropped and
        the step recorded again. Returns whether it was dropped."""
        if self.kind != "captured" or self._trained == _ids(self.model.trainable_weights):
            return False
        self.kind, self.replay, self.key, self._eager_calls = "waiting", None, None, 0
        self.graph = None
        return True

    def eager(self, idx):
        return self.model.train_step(gather(self.tensors, idx))

    def _refuse(self, why: str) -> None:
        self.kind, self.refused = "eager", why

    def __call__(self, idx):
        if self.kind == "captured" and idx.shape[0] == self.batch_size:  # not Tensor.__len__
            return self.replay(idx)
        start = time.perf_counter()
        try:
            if self.kind == "eager" or len(idx) != self.batch_size or self._eager_calls < 1:
                self._eager_calls += 1
                return self.eager(idx)
            return self._record_then_run(idx)
        finally:
            self.overhead_steps += 1
            self.overhead_s += time.perf_counter() - start

    def state(self) -> list:
        """Every variable the step can change."""
        return _state(self.model)

    def _record_then_run(self, idx):
        from torch.fx.experimental.proxy_tensor import make_fx

        train = keras_train_step(self.model)

        def one_step(idx):
            train(gather(self.tensors, idx))  # the metrics' results are read after the window

        state = _state(self.model)
        before = [v.value.detach().clone() for v in state]
        rng = rng_state()  # Keras's unseeded dropout draws from torch's global generator
        why, kept = None, False
        try:
            try:
                with keras_patches.light_metadata():
                    graph = make_fx(one_step)(idx)
                why = replayable(graph.graph)
            except Exception as e:  # make_fx raises many types; the eager step re-raises
                graph, why = None, f"recording failed: {check.error_summary(e)[:200]}"
            recorded = [v.value.detach().clone() for v in state]  # what Keras's step did
            put(state, before)
            set_rng_state(rng)
            if why is None:
                replay = _replay(graph, state, idx)
                try:  # the replay must compute what the recording did, or it is not used
                    replay(idx)
                    same = all(close(v.value, r) for v, r in zip(state, recorded, strict=True))
                    why = None if same else "its replay computed another result"
                except Exception as e:
                    why = f"its replay failed: {check.error_summary(e)[:200]}"
            kept = why is None
        finally:  # refused, failed or interrupted: as before the recording
            if not kept:
                put(state, before)
                set_rng_state(rng)
        if why is not None:  # not a warning: a schedule or dropout is not the user's error
            self._refuse(why)
            return self.eager(idx)
        self.replay, self.kind, self.key = replay, "captured", _key(graph, idx)
        self.graph = graph
        self.ops = sum(n.op == "call_function" for n in graph.graph.nodes)
        self._trained = _ids(self.model.trainable_weights)
        return None


def rng_state():
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def set_rng_state(state) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _ids(variables) -> tuple:
    return tuple(id(v) for v in variables)


def _key(graph, idx) -> str:
    """What the recording computes, as a cache key (``costs``): its code, the shapes and
    dtypes of the tensors it holds, torch's version and the devices they are on (with
    the GPU's name)."""
    import torch

    held = [getattr(graph, n.target) for n in graph.graph.nodes if n.op == "get_attr"]
    tensors = [(tuple(t.shape), str(t.dtype)) for t in held if isinstance(t, torch.Tensor)]
    devices = sorted({str(t.device) for t in held if isinstance(t, torch.Tensor)})
    if any(d.startswith("cuda") for d in devices):
        devices.append(torch.cuda.get_device_name())
    text = json.dumps([graph.code, tensors, len(idx), torch.__version__, devices])
    return "torch-captured:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _replay(graph, state, idx):
    """The recording's code, with every tensor it holds (the variables) as a detached
    alias: the backward is in the recording, so autograd has nothing to do, and the
    updates in place are allowed with grad mode on (torch's CPU LSTM kernel keeps what
    its backward needs only then)."""
    for name, tensor in [*graph.named_parameters(), *graph.named_buffers()]:
        delattr(graph, name)
        setattr(graph, name, tensor.detach())
    _simplify(graph, {v.value.data_ptr() for v in state})
    return direct(graph, idx) or graph.forward


def _simplify(graph, variables: set[int]) -> None:
    """Fewer operations to replay, each result the same: ``detach`` (a no-op here) dropped;
    what depends only on tensors the step never changes (Keras's batch-size arithmetic
    in its loss reduction, constants it makes per step) computed once, here; then
    ``finish``. ``variables``: the storage addresses of the variables, never taken as unchanged."""
    import torch

    written = _written(graph)  # never computed once: the step changes them
    changed = {n.target for n in written if n.op == "get_attr"}
    fixed = {}  # node -> its value, for nodes that depend only on unchanged tensors
    for node in list(graph.graph.nodes):
        if node.op == "get_attr":
            value = getattr(graph, node.target)
            if node.target not in changed and value.data_ptr() not in variables:
                fixed[node] = value
        elif node.op != "call_function":
            continue
        elif node.target is torch.ops.aten.detach.default:
            node.replace_all_uses_with(node.args[0])
        elif node not in written and _only(node, fixed) and foldable(node.target):
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: fixed[n])
            value = node.target(*args, **kwargs)
            if not isinstance(value, torch.Tensor):
                continue
            fixed[hold(graph, node, f"_zoo_fixed_{len(fixed)}", value)] = value
    finish(graph)


def _written(graph) -> set:
    """The nodes whose tensors the step changes in place: the first argument of every
    operation that writes it (torch names them ``op_``), and what those are views of."""
    written = set()
    for node in graph.graph.nodes:
        if node.op == "call_function" and in_place(node.target) and node.args:
            first = node.args[0]
            written.update(n for n in (first if isinstance(first, (list, tuple)) else [first])
                           if hasattr(n, "op"))  # fmt: skip
    pending = list(written)
    while pending:  # a view written in place writes its base
        node = pending.pop()
        if node.op == "call_function" and keras_patches.aten_view(node.target) and node.args:
            base = node.args[0]
            if hasattr(base, "op") and base not in written:
                written.add(base)
                pending.append(base)
    return written


def _only(node, fixed) -> bool:
    """Whether every node ``node`` reads is in ``fixed``."""
    return all(n in fixed for n in node.all_input_nodes)


def close(a, b, rtol: float = 1e-5) -> bool:
    """Equal up to reordered sums (a GPU's; on the CPU the replay is exact: tested)."""
    import torch

    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=rtol / 100)


def put(state, values) -> None:
    import torch

    with torch.no_grad():
        for v, value in zip(state, values, strict=True):
            v.value.copy_(value)
