"""The suite really runs under the backend it was asked for, and the zoo's model
code and harness import no backend directly."""

import ast
import os
import pathlib

import keras
import numpy as np
import pytest

import zoo

BACKEND_MODULES = {"tensorflow", "jax", "jaxlib", "torch"}
ROOT = pathlib.Path(zoo.__file__).parent


@pytest.mark.skipif("KERAS_BACKEND" not in os.environ, reason="no KERAS_BACKEND set")
def test_backend_is_the_one_asked_for():
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]


def test_backend_tensors_are_native(backend):
    """Keras ops produce the backend's own tensor type, so the backend is really used."""
    x = keras.ops.ones((2, 2))
    module = type(x).__module__.split(".")[0]
    expected = {"tensorflow": {"tensorflow"}, "jax": {"jax", "jaxlib"}, "torch": {"torch"}}
    assert module in expected[backend], module
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x @ x), np.full((2, 2), 2.0))


def _imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    sorted(
        [*(ROOT / "models").rglob("*.py"), *(ROOT / "layers").rglob("*.py"), ROOT / "testing.py"]
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_backend_imports(path):
    """Model code, layers and the harness use keras, keras.ops and numpy only."""
    assert not _imported_modules(path) & BACKEND_MODULES
