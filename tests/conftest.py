import os

import keras
import pytest


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras state (no leftover names or policy)."""
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    yield


@pytest.fixture(scope="session")
def backend():
    return keras.backend.backend()


def pytest_configure(config):
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted and keras.backend.backend() != wanted:
        raise pytest.UsageError(f"KERAS_BACKEND={wanted} but Keras runs {keras.backend.backend()}")


#: The backend whose session runs the tests marked ``one_backend``: the heavy checks of
#: what no backend changes (the run directory's files and lock under kills, a full disk,
#: two processes). Every other backend's session deselects them (pytest reports them as
#: "deselected", never as passed). Any backend works for them; TensorFlow's session had
#: the most time to spare (measured here, 2026-11-23, test time summed over both workers:
#: TensorFlow 715 s without them; JAX 1,012 s with them, which took about 240 s under
#: TensorFlow; PyTorch 1,108 s without them).
ONE_BACKEND = "tensorflow"


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == ONE_BACKEND:
        return
    kept, elsewhere = [], []
    for item in items:
        (elsewhere if item.get_closest_marker("one_backend") else kept).append(item)
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = kept
