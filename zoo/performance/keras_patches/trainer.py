"""The door to Keras's trainer: the train function ``fit`` calls and what it builds
before the first step (see the package's docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


# -- Keras's trainer ------------------------------------------------------------------------
@contextlib.contextmanager
def train_functions(model, settings) -> Iterator[None]:
    """The model's ``jit_compile`` and ``steps_per_execution`` set from ``settings``, and
    its compiled functions reset (Keras makes them again at the next ``fit``), for the
    block; after it, the window's train function (which holds the training arrays) is
    let go, and on torch ``steps_per_execution`` is put back to 1.

    Keras 3.15's torch trainer refuses ``steps_per_execution > 1`` when it makes its own
    train function; the zoo's torch window sets ``model.train_function`` itself (a public
    attribute ``fit`` calls), so that check is not reached. Public replacement: none yet
    (Keras would need ``steps_per_execution`` on torch)."""
    if settings.jit_compile is not None:
        model.jit_compile = settings.jit_compile
    model.steps_per_execution = settings.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
    try:
        yield
    finally:
        if settings.window:
            model.train_function = None
        if settings.backend == "torch":
            model.steps_per_execution = 1
            model.train_function = model.test_function = model.predict_function = None


def set_train_function(model, train_function, test_function=None) -> None:
    """Installs the zoo's window as the function Keras's ``fit`` calls per window (and,
    on torch, its evaluation loop): see ``train_functions``."""
    model.train_function = train_function
    if test_function is not None:
        model.test_function = test_function


def build_for_training(model, batch) -> bool:
    """Builds what Keras's first traced train step would make (the optimizer's slots,
    the compiled loss and metrics) from one ``batch`` of ``(x, y)``, without running a
    step, so that the TensorFlow window's first trace can be its compiled loop (a
    ``tf.while_loop`` cannot make variables) and no single step is compiled only to build
    them. Returns whether it did; False leaves the building to a first step. Private:
    ``Trainer._symbolic_build`` (Keras 3.15, which runs it itself only under a
    ``tf.distribute`` strategy); public replacement: none (``model.build`` builds the
    layers only)."""
    if not hasattr(model, "_symbolic_build"):
        return False
    try:
        with _host_zeros():
            model._symbolic_build(data_batch=batch)
    except TypeError:  # another Keras's parameters: a first step builds them
        return False
    return model.optimizer is None or model.optimizer.built


@contextlib.contextmanager
def _host_zeros() -> Iterator[None]:
    """On JAX, Keras's ``zeros`` made in host memory and put on the device, for the
    block: ``jnp.zeros`` compiles one XLA program per shape (mnist_mlp's optimizer slots:
    0.1 s of a 0.9 s first fit on this CPU, for five shapes); a copy compiles nothing.
    The same values, dtype and device. Private: ``keras.src.backend.jax.numpy.zeros``,
    which ``keras.ops.zeros`` and the ``Zeros`` initializer call (Keras 3.15); public
    replacement: none. Elsewhere, or another Keras: nothing swapped."""
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    try:
        from keras.src.backend.jax import numpy as jax_numpy
    except ImportError:
        yield
        return
    zeros = getattr(jax_numpy, "zeros", None)
    if zeros is None:
        yield
        return

    def host_zeros(shape, dtype=None):
        import jax
        import jax.numpy as jnp
        import numpy as np

        try:  # JAX's dtypes as numpy's (bfloat16 included)
            dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
            host = np.zeros(shape, jnp.dtype(dtype))
        except (TypeError, ValueError):  # a dtype numpy cannot hold: Keras's own
            return zeros(shape, dtype)
        return jax.device_put(host)

    jax_numpy.zeros = host_zeros
    try:
        yield
    finally:
        jax_numpy.zeros = zeros
