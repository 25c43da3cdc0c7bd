"""Model diagrams through Keras's own ``plot_model``, with a clear install message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras

from zoo._io import atomic_write

INSTALL_HINT = (
    "plotting needs pydot (pip install 'keras-model-zoo[plot]') and Graphviz's "
    "'dot' program (apt-get install graphviz, brew install graphviz, or "
    "https://graphviz.org/download/)"
)


def plotting_available() -> bool:
    """Whether pydot and Graphviz's ``dot`` are both installed."""
    try:
        import pydot  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def plot(model, path: str | os.PathLike, show_shapes: bool = True, dpi: int = 72) -> Path:
    """Writes a diagram of ``model`` (a ``keras.Model`` or a registered name) to ``path``.

    The file is written under a temporary name and renamed, so a failed plot
    leaves nothing behind.

    Args:
        model: a ``keras.Model``, or the registered name of one.
        path: the image file to write (``.png``, ``.svg``, ...).
        show_shapes: show each layer's input and output shapes.
        dpi: resolution of raster images.

    Raises:
        RuntimeError: when pydot or Graphviz is missing, saying how to install them.
    """
    if not plotting_available():
        raise RuntimeError(INSTALL_HINT)
    if isinstance(model, str):
        from zoo.factory import create

        model = create(model)
    return atomic_write(
        path,
        lambda tmp: keras.utils.plot_model(
            model,
            to_file=str(tmp),
            show_shapes=show_shapes,
            show_layer_names=True,
            expand_nested=True,
            dpi=dpi,
        ),
    )
