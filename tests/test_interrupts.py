"""Ctrl-C and SIGTERM always work (``zoo.interrupts``), on every backend: real signals
sent to a real ``zoo train`` stop it at the next safe point with one line saying what is
kept and how to go on; a second signal stops it at once; the same command then resumes
and ends exactly like the uninterrupted run. A property sends SIGINT at any point of a
run (between checkpoint files, after fit, while saving) and reruns until it finishes."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import interrupts, rundir
from zoo.rundir import RunDirError
from zoo.training import train

BACKEND = keras.backend.backend()
EPOCHS = 5
ENV = {**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train("mnist_mlp", epochs=EPOCHS, out=run, verbose=0)
    return run


def _assert_like(run: Path, straight: Path):
    got, want = (json.loads((r / "metrics.json").read_text()) for r in (run, straight))
    for key in ("test_loss", "test_accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), key
    assert (run / "history.csv").read_text() == (straight / "history.csv").read_text()
    assert sorted(p.name for p in run.iterdir()) == sorted(rundir.RUN_FILES)


def _signalled(out: Path, at_epoch: int, signals: list[int]):
    """``zoo train`` on ``out``, sent ``signals`` (0.05 s apart) as soon as it prints that
    epoch ``at_epoch`` begins (inside ``fit``); returns ``(exit code, stderr)``."""
    argv = [sys.executable, "-m", "zoo", "--backend", BACKEND, "train", "--epochs", str(EPOCHS)]
    process = subprocess.Popen(
        [*argv, "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        for line in process.stdout:
            if line.startswith(f"Epoch {at_epoch}/{EPOCHS}"):
                for i, signum in enumerate(signals):
                    time.sleep(0.05 * bool(i))
                    process.send_signal(signum)
                break
        process.stdout.read()
        return process.wait(timeout=300), process.stderr.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def test_signals_stop_at_a_safe_point_and_the_same_command_resumes_exactly(tmp_path, straight):
    out = tmp_path / "run"
    # twice: stopped at once, whatever it was doing, and nothing is left half-written
    code, err = _signalled(out, 2, [signal.SIGINT, signal.SIGINT])
    assert code == 130, err[-2000:]
    # the second stops it at once, or finds it already stopping at the window's end
    assert "Ctrl-C (SIGINT) again: stopping now" in err or "zoo: stopped by Ctrl-C" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert (out / "checkpoint" / "epoch-0001.npz").is_file()
    # once, as SIGTERM: the end of the window, the last checkpoint kept, one line on how
    code, err = _signalled(out, 3, [signal.SIGTERM])
    assert code == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("zoo: stopped by SIGTERM; ") and "run the same command again to " in last
    assert "completed epoch(s) are checkpointed in" in last and "Traceback" not in err
    assert not (out / "metrics.json").exists()
    # the same command again: it resumes and ends exactly like the uninterrupted run
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "--backend", BACKEND, "train", "--epochs", str(EPOCHS),
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_like(out, straight)


def test_a_signal_before_the_first_epoch_names_no_checkpoint(tmp_path, monkeypatch, capsys):
    """SIGINT while the data loads: stopped before anything is trained; the message says
    there is nothing to resume (not a checkpoint folder that does not exist)."""
    from zoo import cli, training

    load = training.DataPlan.load

    def load_then_signal(*args):
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, at a known point
        return load(*args)

    monkeypatch.setattr(training.DataPlan, "load", load_then_signal)
    before = signal.getsignal(signal.SIGINT)  # Python's, unless the process started ignoring it
    assert cli.main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "zoo: stopped by Ctrl-C (SIGINT); no epoch had completed, so there is nothing to "
        "resume; run the same command again to start it"
    )
    assert not (tmp_path / "run").exists()  # stopped before the run folder was made
    assert signal.getsignal(signal.SIGINT) is before  # handlers put back


POINTS = ["checkpoint:start", "checkpoint:written", "checkpoint:renamed", "history:written"]
AFTER_FIT = ["model:written", "metrics:written"]
point = st.one_of(
    st.tuples(st.sampled_from(POINTS), st.integers(1, EPOCHS)),
    st.tuples(st.sampled_from(AFTER_FIT), st.just(-1)),
)


@pytest.mark.one_backend
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(points=st.lists(point, min_size=1, max_size=3))
def test_sigint_at_any_point_then_reruns_end_like_the_uninterrupted_run(
    tmp_path, straight, monkeypatch, points
):
    out = tmp_path / f"run{time.monotonic_ns()}"
    for where, epoch in points:

        def hook(at, n, where=where, epoch=epoch):
            if (at, n) == (where, epoch):
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(rundir, "FAULT_HOOK", hook)
        with contextlib.suppress(interrupts.RunInterrupted, RunDirError):
            train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0)  # RunDirError: finished
    monkeypatch.setattr(rundir, "FAULT_HOOK", None)
    if not (out / "metrics.json").exists():
        train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0)
    _assert_like(out, straight)
