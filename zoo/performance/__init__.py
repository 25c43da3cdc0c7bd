"""The zoo's one speed path: per-backend train functions and ``predict``.

None of it changes what is computed: every setting runs the same batches, in the same
``(seed, epoch)`` order, through Keras's own ``train_step``; ``fast="off"`` is Keras's
plain ``fit``. ``tests/test_performance.py`` checks each path against the plain one.

- ``settings``: ``Settings`` and ``settings_for``, what each backend does;
- ``feed``: the batches, the windows of steps and the progress bar;
- ``fit``: ``prepare``, which readies a model to ``fit`` on its backend;
- ``predict``: ``zoo.predict``;
- ``tensorflow``, ``jax``, ``torch``: each backend's train functions;
- ``keras_patches``: the one module that touches Keras's and torch's internals.

What each setting gains, measured, is in ``docs/benchmarks.md``.
"""

import contextlib

from zoo.performance.feed import ProgressBar
from zoo.performance.fit import fit_function, prepare
from zoo.performance.keras_patches import (
    TORCH_UNROLL_MAX_STEPS,
    channels_last_torch_inputs,
    fused_torch_lstm,
    patched,
)
from zoo.performance.predict import predict
from zoo.performance.settings import (
    CONV_STEPS_PER_EXECUTION,
    MODES,
    STEPS_PER_EXECUTION,
    Settings,
    settings_for,
)

__all__ = [
    "CONV_STEPS_PER_EXECUTION",
    "MODES",
    "STEPS_PER_EXECUTION",
    "TORCH_UNROLL_MAX_STEPS",
    "ProgressBar",
    "Settings",
    "channels_last_torch_inputs",
    "fit_function",
    "fused_torch_lstm",
    "predict",
    "prepare",
    "settings_for",
    "traceable",
]


def traceable() -> contextlib.AbstractContextManager:
    """A context in which ``torch.compile`` (Keras's ``jit_compile=True`` on torch) keeps a
    zoo model in one graph: Keras's torch functions that break dynamo's graphs are
    swapped for traceable ones, Keras's own put back on exit (``keras_patches.patched``).
    Nothing changes under TensorFlow and JAX. ``zoo.training.fit`` and ``zoo.predict`` use
    it themselves.

    Example:
        >>> with zoo.performance.traceable():  # doctest: +SKIP
        ...     model.compile(jit_compile=True)
        ...     model.predict(x)
    """
    return patched(traceable=True)
