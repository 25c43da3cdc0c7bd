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
