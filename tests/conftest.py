import gc
import itertools
import os

import keras
import pytest


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


#: Every this many tests the collector also walks what earlier tests left frozen (below).
FULL_COLLECT_EVERY = 25
_test_number = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras state (no leftover names or policy).

    ``clear_session`` runs ``gc.collect``, which walks every object the process holds
    (about 0.12 s for the 270,000 objects of a JAX worker), as do the automatic
    collections during the tests. ``gc.freeze`` after it moves what survived (modules,
    caches) out of the collector's sight, so later collections walk only what tests
    made since: measured here (2026-11-28, ``-n 2``), JAX's suite 464 s -> 265-277 s,
    TensorFlow's 351 s -> 252 s, torch's 447 s -> 237 s. Every ``FULL_COLLECT_EVERY``
    tests the frozen objects rejoin the collection, so cycles among them that died
    since are freed and memory stays bounded."""
    if next(_test_number) % FULL_COLLECT_EVERY == 0:
        gc.unfreeze()
    keras.backend.clear_session()  # which runs gc.collect()
    gc.freeze()
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
#: "deselected", never as passed). Any backend works for them; they spawn training
#: processes, which start fastest under torch (measured here, 2026-11-28, the ten of
#: them with -n 2: 89 s summed over both workers and 49 s wall under TensorFlow, 59 s
#: and 31 s under torch), whose session is also the shortest.
ONE_BACKEND = "torch"


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == ONE_BACKEND:
        return
    kept, elsewhere = [], []
    for item in items:
        (elsewhere if item.get_closest_marker("one_backend") else kept).append(item)
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = kept
