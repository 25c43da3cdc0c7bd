"""The speed settings: what ``zoo.training.fit`` does on each backend (``Settings``),
chosen once per fit by ``settings_for``. The measurements behind each choice are in
``docs/benchmarks.md``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from zoo import _validation as check
from zoo import distribute
from zoo.utils import contains_layer

MODES = ("auto", "on", "off")
#: ``fast="auto"`` compiles the torch train step only for runs of at least this many
#: steps: below it, compiling (about 10 s for the MLP) costs more than it saves.
TORCH_COMPILE_MIN_STEPS = 10_000
#: ``fast="auto"`` XLA-compiles the TensorFlow window only for runs of at least this many
#: steps. Measured here (mnist_mlp, batch 64, both cores busy): XLA's compile costs about
#: 5.7 s more than tracing the plain graph, and then saves about 1.2 ms a step (XLA 0.8 ms,
#: graph 2.0 ms), so it pays from about 4,800 steps. The default digits run (360 steps)
#: took 12.8 s with the graph window, 22.4 s with the XLA one and 17.1 s with Keras's own
#: loop (which XLA-compiles its step).
XLA_MIN_STEPS = 5_000
#: The most steps per window (``steps_per_execution``): one call of the zoo's train
#: function, between two calls of the callbacks' batch hooks. Each call costs about 1 ms
#: on TensorFlow (measured here: a 1-step window 1.4 ms, each further MLP step 0.3 ms),
#: so short windows cost dense models a third of their speed; a model with
#: convolutions takes long enough a step that short windows cost nothing and keep the
#: progress bar moving (toy_resnet: about 0.1 s a step on this CPU). 512, not 128:
#: mnist_mlp's MNIST epoch (938 steps) in 2 windows instead of 8 trained 1.05-1.15x
#: faster (measured 2026-11-29 in one process, 4 alternating rounds, medians:
#: TensorFlow 226,000 -> 260,000 samples/s, JAX 255,000 -> 271,000 with a whole-epoch
#: window); a window of ticket_router's steps (10 ms each) still reports every 5 s.
STEPS_PER_EXECUTION = 512
CONV_STEPS_PER_EXECUTION = 16


@dataclass(frozen=True)
class Settings:
    """What ``zoo.training.fit`` does on this backend (``asdict`` goes in metrics.json).

    Attributes:
        mode: ``"auto"``, ``"on"`` or ``"off"``, as asked.
        backend: the Keras backend.
        jit_compile: the ``jit_compile`` the model trains with (None: as compiled).
        steps_per_execution: training steps per compiled call.
        pipeline: how batches are fed: ``"pydataset"`` (numpy arrays through Keras's
            iterator), ``"in-graph"`` (gathered inside the compiled window from the
            arrays on the device) or ``"torch"`` (gathered by the torch window from torch
            tensors in memory).
        torch_compile: whether the torch train step is compiled.
        window: whether the zoo's window train function runs (``steps_per_execution``
            steps per call, see below) instead of Keras's own.
        ddp: whether the torch step runs through ``DistributedDataParallel``
            (``zoo.distribute.ddp_train_step``, under a torch data-parallel plan).
        fused_lstm: whether Keras's ``LSTM`` layers run torch's fused LSTM kernel on the
            CPU during ``fit`` (``fused_torch_lstm``) instead of Keras's loop over time
            steps.
        channels_last: whether Keras's torch convolutions and pooling read channels-last
            images in place during ``fit`` (``channels_last_torch_inputs``) instead of
            copying them to channels-first memory and back.
    """

    mode: str
    backend: str
    jit_compile: bool | None = None
    steps_per_execution: int = 1
    pipeline: str = "pydataset"
    torch_compile: bool = False
    window: bool = False
    ddp: bool = False
    fused_lstm: bool = False
    channels_last: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


_CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _steps_per_execution(steps_per_epoch: int, most: int, divisor: bool = False) -> int:
    """Up to ``most`` steps, never more than an epoch. ``divisor``: the largest divisor of
    the epoch up to ``most``, for the loops that read their batches from Keras's iterator
    (a last, shorter window made Keras warn "Your input ran out of data" every epoch)."""
    if divisor:
        return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return max(1, min(most, steps_per_epoch))


def _compile_pays(mode: str, steps: int, min_steps: int) -> bool:
    """Whether to compile: always with ``fast="on"``; with ``"auto"`` only for runs of at
    least ``min_steps`` steps, the measured break-even of the backend's compile."""
    return mode == "on" or steps >= min_steps


def settings_for(
    mode: str, steps_per_epoch: int, epochs: int, model: keras.Model | None = None
) -> Settings:
    """The settings for training ``model`` for ``epochs`` x ``steps_per_epoch`` steps
    on the current backend; ``mode`` is one of ``MODES``.

    Models with convolutions (``model`` given) are compiled differently, from
    measurement on this CPU (``docs/benchmarks.md``): on TensorFlow their window is a
    plain graph, since XLA ran the toy ResNet's convolutions inside a loop about 35x
    slower; on JAX they keep Keras's loop. On PyTorch every model's step is compiled
    (as one graph, ``_compiled_torch_step``): conv_autoencoder 1.27x its eager step,
    toy_resnet even with it, mnist_mlp and ticket_router about 4.5x (measured
    2026-11-28; when Keras's own step was compiled, split at its ``backward()``, the
    convolutional models ran slower than eager and stayed eager).
    """
    check.one_of("fast", mode, MODES)
    most_steps = (
        CONV_STEPS_PER_EXECUTION if contains_layer(model, _CONV_LAYERS) else STEPS_PER_EXECUTION
    )
    backend = keras.backend.backend()
    if backend == "torch" and keras.distribution.distribution() is not None:
        return Settings(mode, backend)  # Keras's fit with its own DDP (keras-nightly)
    if backend == "torch" and distribute.torch_ddp():
        # Keras 3.15's fit has no DDP on torch: the zoo's loop runs, uncompiled, whatever
        # ``mode`` (with "off", one step per window: Keras's loop with the DDP step)
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most_steps, True)
        return Settings(mode, backend, None, spe, "torch", window=True, ddp=True)
    if backend == "tensorflow" and distribute.tf_multi_worker():
        # Keras 3.15's fit fails under MultiWorkerMirroredStrategy: the zoo's window runs
        # whatever ``mode`` (with "off", one step per window), as a plain graph (XLA around
        # the strategy's collectives has not been tried)
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most_steps)
        return Settings(mode, backend, False, spe, "in-graph", window=True)
    if mode == "off":
        return Settings(mode, backend)
    conv = contains_layer(model, _CONV_LAYERS)
    spe = _steps_per_execution(steps_per_epoch, most_steps, divisor=backend == "torch")
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # Under MirroredStrategy Keras's plain fit runs: the earlier tf.data pipeline
            # failed there (its order variable was mirrored) and XLA with
            # steps_per_execution hung; the window has not been tried under a strategy.
            return Settings(mode, backend)
        # XLA for the whole window unless the model has convolutions (measured here: the
        # MLP's window 2.5x a per-step loop; convolutions far slower with XLA in a loop),
        # and with "auto" only for runs long enough to earn its compile (XLA_MIN_STEPS).
        # ticket_router's LSTMs: 70 steps/s with XLA, 45 without (and 72 with XLA per
        # step in a graph loop; Keras's own loop with XLA per step ran 103 the day before)
        xla = _compile_pays(mode, steps_per_epoch * epochs, XLA_MIN_STEPS) and not conv
        return Settings(mode, backend, xla, spe, "in-graph", window=True)
    if backend == "jax":
        if keras.distribution.distribution() is not None or conv:
            # Keras's own loop, its steps grouped: under a distribution (the window's jit
            # has no shardings), and for convolutions, which XLA ran far slower inside a
            # loop on this CPU (the native ResNet's lax.scan window, likewise)
            spe = _steps_per_execution(steps_per_epoch, 8, divisor=True)
            return Settings(mode, backend, steps_per_execution=spe)
        return Settings(mode, backend, steps_per_execution=spe, pipeline="in-graph", window=True)
    if backend == "torch":
        fused = contains_layer(model, (keras.layers.LSTM,))
        compile_step = _compile_pays(mode, steps_per_epoch * epochs, TORCH_COMPILE_MIN_STEPS)
        return Settings(
            mode,
            backend,
            None,
            spe,
            "torch",
            compile_step,
            window=True,
            fused_lstm=fused,
            channels_last=conv,
        )
    return Settings(mode, backend)
