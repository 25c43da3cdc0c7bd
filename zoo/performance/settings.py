"""The speed settings: what ``zoo.training.fit`` does on each backend (``Settings``),
chosen once per fit by ``settings_for`` from the model, the run's length and its
``DistPlan``. The measurements behind each choice and threshold are in
``docs/benchmarks.md`` ("Why the settings are what they are")."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from zoo import _validation as check
from zoo import distribute
from zoo.utils import contains_layer

MODES = ("auto", "on", "off")
#: The most steps per window (``steps_per_execution``): one call of the zoo's train
#: function between two calls of the callbacks' batch hooks. Dense models lose to the
#: per-call cost of short windows; convolutional steps are long enough that short
#: windows cost nothing and keep the progress bar moving.
STEPS_PER_EXECUTION = 512
CONV_STEPS_PER_EXECUTION = 16

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


def has_convolutions(model: keras.Model | None) -> bool:
    """Whether ``model`` has a convolution layer at any depth (the one place it is asked)."""
    return contains_layer(model, _CONV_LAYERS)


def has_lstm(model: keras.Model | None) -> bool:
    return contains_layer(model, (keras.layers.LSTM,))


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
        torch_compile: whether the torch train step is compiled at once (``fast="on"``):
            the recorded step (``torch.capture``) from the third step, else (a step
            that cannot be recorded) Keras's step from the first.
        compile_when_pays: ``fast="auto"``: on torch, whether the window records Keras's
            step and replays it (``torch.capture``), and compiles the recording mid-run
            once its measured speed and the compile's cost make compiling pay
            (``torch.switch``); on TensorFlow, whether the window's loop is XLA-compiled
            from the window where that pays (``tensorflow.XlaSwitch``; ``jit_compile`` is
            then the form it starts in).
        planned_steps: the steps this fit is to run (what compiling would pay over).
        window: whether the zoo's window train function runs instead of Keras's own.
        ddp: whether the torch step runs through ``DistributedDataParallel``.
        fused_lstm: whether Keras's ``LSTM`` layers run torch's fused LSTM kernel on the
            CPU (``keras_patches.fused_torch_lstm``) instead of Keras's loop.
        channels_last: whether Keras's torch convolutions read channels-last images in
            place (``keras_patches.channels_last_torch_inputs``) instead of copying them.
        multi_worker: whether the zoo's epoch loop runs under TensorFlow's
            ``MultiWorkerMirroredStrategy`` (Keras 3.15's ``fit`` fails there).
        held_heap: whether glibc's ``malloc`` keeps the memory of the steps' freed
            tensors for the next step while the torch window trains (``heap.held``).
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
    multi_worker: bool = False
    compile_when_pays: bool = False
    planned_steps: int = 0
    held_heap: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _steps_per_execution(steps_per_epoch: int, most: int, divisor: bool = False) -> int:
    """Up to ``most`` steps, never more than an epoch. ``divisor``: the largest divisor of
    the epoch up to ``most``, for the loops that read their batches from Keras's iterator
    (a last, shorter window made Keras warn "Your input ran out of data" every epoch)."""
    if divisor:
        return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return max(1, min(most, steps_per_epoch))


def settings_for(
    mode: str,
    steps_per_epoch: int,
    epochs: int,
    model: keras.Model | None = None,
    plan: distribute.DistPlan | None = None,
) -> Settings:
    """The settings for training ``model`` for ``epochs`` x ``steps_per_epoch`` steps on
    the current backend under ``plan`` (None: one device); ``mode`` is one of ``MODES``.

    Under a distribution the engine decides: Keras's own loop under
    ``keras.distribution`` and TensorFlow's ``MirroredStrategy``; the zoo's window, never
    compiled, under torch DDP and TensorFlow's multi-worker strategy (with ``"off"`` one
    step per window). On one device: TensorFlow's window is XLA-compiled unless the model
    has convolutions; JAX keeps Keras's loop for convolutions; torch's step is recorded and
    replayed. ``"auto"`` XLA-compiles TensorFlow's window, and compiles torch's recorded
    step, from where that pays; ``"on"`` compiles both at once (torch: from the step after
    the recording)."""
    check.one_of("fast", mode, MODES)
    backend = keras.backend.backend()
    strategy = (plan or distribute.DistPlan()).strategy
    conv = has_convolutions(model)
    most = CONV_STEPS_PER_EXECUTION if conv else STEPS_PER_EXECUTION
    steps = steps_per_epoch * epochs
    if strategy in (distribute.KERAS_DATA_PARALLEL, distribute.TF_MIRRORED):
        if backend == "jax" and mode != "off":  # Keras's own loop, its steps grouped
            return Settings(
                mode,
                backend,
                steps_per_execution=_steps_per_execution(steps_per_epoch, 8, divisor=True),
            )
        return Settings(mode, backend)
    if strategy == distribute.TORCH_DDP:
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most, True)
        return Settings(mode, backend, None, spe, "torch", window=True, ddp=True, held_heap=True)
    if strategy == distribute.TF_MULTI_WORKER:
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most)
        return Settings(mode, backend, False, spe, "in-graph", window=True, multi_worker=True)
    if mode == "off":
        return Settings(mode, backend)
    spe = _steps_per_execution(steps_per_epoch, most, divisor=backend == "torch")
    if backend == "tensorflow":  # "auto": XLA from where it pays (tensorflow.XlaSwitch)
        auto = mode == "auto" and not conv
        xla = mode == "on" and not conv
        return Settings(
            mode,
            backend,
            xla,
            spe,
            "in-graph",
            window=True,
            compile_when_pays=auto,
            planned_steps=steps if auto else 0,
        )
    if backend == "jax":
        if conv:  # Keras's own loop, its steps grouped (XLA ran convolutions slower in a loop)
            spe = _steps_per_execution(steps_per_epoch, 8, divisor=True)
            return Settings(mode, backend, steps_per_execution=spe)
        return Settings(mode, backend, steps_per_execution=spe, pipeline="in-graph", window=True)
    if backend == "torch":
        return Settings(
            mode,
            backend,
            None,
            spe,
            "torch",
            mode == "on",
            window=True,
            fused_lstm=has_lstm(model),
            channels_last=conv,
            compile_when_pays=mode == "auto",
            planned_steps=steps,
            held_heap=True,
        )
    return Settings(mode, backend)
