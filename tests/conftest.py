import contextlib
import functools
import gc
import itertools
import os
import tempfile

# Test processes share a GPU (pytest-xdist's workers, the training processes tests
# start): JAX would reserve 75% of its memory in each at first use, so allocate on demand.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

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
    # the speed path's cost cache (zoo.performance.costs) in a folder of this session's,
    # so that no test reads or writes the user's, and every test starts without figures
    os.environ["ZOO_CACHE_DIR"] = tempfile.mkdtemp(prefix="zoo-test-cache-")
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted and keras.backend.backend() != wanted:
        raise pytest.UsageError(f"KERAS_BACKEND={wanted} but Keras runs {keras.backend.backend()}")
    from zoo.precision import accelerator_present, set_float32_precision

    if accelerator_present():
        # full float32 on a GPU, as Keras's own conftest.py: the golden files and the
        # cross-backend checks compare at 1e-5, which TF32 (about 1e-3) would not meet
        set_float32_precision("highest")


def require_extra(extra: str, available: bool, why: str = "") -> None:
    """Skips a test whose optional extra (``plot``, ``export-<backend>``) is not installed,
    naming it; fails instead where the extras must be there (``ZOO_REQUIRE_EXTRAS=1``: the
    nox sessions, which install them)."""
    if available:
        return
    message = f"needs the {extra!r} extra (pip install 'keras-model-zoo[{extra}]')"
    message += f": {why}" if why else ""
    if extras_required():
        pytest.fail(f"{message}; ZOO_REQUIRE_EXTRAS=1 says it is installed here")
    pytest.skip(message)


def require_export(fmt: str) -> None:
    """``require_extra`` for exporting ``fmt`` from this backend (docs/export.md)."""
    from zoo.export import supported

    ok, why = supported(fmt)
    missing = not ok and "needs" in why  # an unsupported combination is not an extra
    require_extra(f"export-{keras.backend.backend()}", not missing, why)


def require_plot() -> None:
    from zoo.plotting import INSTALL_HINT, plotting_available

    require_extra("plot", plotting_available(), INSTALL_HINT)


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


def export_format_here() -> str | None:
    """A format this backend exports with its extra installed (onnx first), or None;
    where the extras must be there (``ZOO_REQUIRE_EXTRAS=1``) one must be."""
    from zoo.export import supported

    for fmt in ("onnx", "savedmodel"):
        if supported(fmt)[0]:
            return fmt
    if extras_required():
        require_extra(f"export-{keras.backend.backend()}", False, "no export format works here")
    return None


def extras_required() -> bool:
    return os.environ.get("ZOO_REQUIRE_EXTRAS") == "1"


# -- simulated kills, shared by the run directory's, the training choices' and the tools' tests
class SimulatedCrash(BaseException):
    """Stands for a kill: no ``except Exception`` catches it, so nothing after the
    crash point runs (``finally`` blocks do, as the kernel's cleanup does for a lock)."""


class CrashMidEpoch(keras.callbacks.Callback):
    """Raises ``SimulatedCrash`` after batch ``batch`` of epoch ``epoch`` (both from 0):
    that epoch is neither finished nor checkpointed."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) >= self.at:
            raise SimulatedCrash(f"mid-epoch {self.at}")


def crash_at(monkeypatch, point: str | None, at: int = -1) -> None:
    """Makes the run directory raise ``SimulatedCrash`` at its fault point ``point``
    of epoch ``at`` (``zoo.rundir.FAULT_HOOK``); None takes the fault away."""
    from zoo import rundir

    def hook(where, epoch):
        if (where, epoch) == (point, at):
            raise SimulatedCrash(f"{where}@{epoch}")

    monkeypatch.setattr(rundir, "FAULT_HOOK", None if point is None else hook)


def run_with_crashes(monkeypatch, crashes, again) -> None:
    """``again(callbacks)`` once per crash of ``crashes``, each ``(fault point, epoch)``
    or ``("batch", (epoch, batch))`` (a ``CrashMidEpoch``), each cut short there; then
    the faults taken away."""
    for point, at in crashes:
        crash_at(monkeypatch, point, at)
        with contextlib.suppress(SimulatedCrash):
            again([CrashMidEpoch(*at)] if point == "batch" else [])
    crash_at(monkeypatch, None)


def quick_torch_compile(monkeypatch) -> list:
    """torch.compile with dynamo's aot_eager backend (seconds, not inductor's minutes),
    the zoo's other arguments kept; returns the graphs compiled."""
    import torch

    graphs, compile_ = [], torch.compile

    def backend(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.backends.debugging.aot_eager(gm, example_inputs)

    monkeypatch.setattr(torch, "compile", functools.partial(compile_, backend=backend))
    return graphs


def instances_made(monkeypatch, cls) -> list:
    """Every ``cls`` made from now on in this test (what ``fast="auto"`` decided: torch's
    ``Switch``, TensorFlow's ``XlaSwitch``), in order."""
    made, init = [], cls.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cls, "__init__", keep)
    return made
