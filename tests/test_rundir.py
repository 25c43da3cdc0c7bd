"""The run directory can't be corrupted: one process at a time, a checkpoint that is one
atomic unit, kills at any point, a full disk, damaged files and folders that are not
runs. Every case ends with the uninterrupted run's exact metrics and history, or a
one-line error naming the file and what to do.

The heavy fault checks (SIGKILL between checkpoint files, the any-kills property, a full
disk, two real processes on one run) are marked ``one_backend``: the run directory is
numpy files, a lock and renames, the same on every backend, so one backend's session
runs them (tests/conftest.py). What the backend does give, every session checks: a
checkpoint restores its weights, optimizer, epoch and history (below), and a run killed
mid-epoch resumes to the uninterrupted run's metrics (tests/test_training.py)."""

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import run_with_crashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import cli, rundir
from zoo.rundir import RunDir, RunDirError
from zoo.training import train

BACKEND = keras.backend.backend()
EPOCHS = 3
ENV = {**os.environ, "KERAS_BACKEND": BACKEND}


def _history(run: Path) -> str:
    return (run / "history.csv").read_text()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one must end like."""
    run = tmp_path_factory.mktemp("straight") / "run"
    metrics = train("mnist_mlp", epochs=EPOCHS, out=run, verbose=0)
    return metrics, _history(run)


def _assert_like(run: Path, straight):
    metrics, history = straight
    got = json.loads((run / "metrics.json").read_text())
    for key in ("test_loss", "test_accuracy"):
        assert got[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-7), key
    assert _history(run) == history
    assert sorted(p.name for p in run.iterdir()) == sorted(rundir.RUN_FILES)  # nothing else


# -- the lock --------------------------------------------------------------------------------
HOLD = textwrap.dedent(
    """
    import sys, time
    from zoo.rundir import RunDir
    with RunDir(sys.argv[1]).lock():
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = RunDir(tmp_path / "run")
        with pytest.raises(RunDirError, match=rf"in use by process {holder.pid} "), second.lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    # the holder died (SIGKILL) holding it: its lock is stale and is taken over
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(holder.pid)
    with RunDir(tmp_path / "run").lock() as run:
        assert (run.path / ".lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()  # released and removed


@pytest.mark.one_backend
def test_two_real_zoo_trains_on_one_out(tmp_path, capsys):
    """The second is refused in one line; the first ends complete and untouched."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "zoo", "--backend", BACKEND, "train", "--epochs", "6",
         "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "history.csv").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # until it is training (it holds the lock from before that)
    assert first.poll() is None, first.stderr.read()[-2000:]
    assert cli.main(["train", "--epochs", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"is in use by process {first.pid} " in err and err.count("\n") == 1
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert [line.split(",")[0] for line in _history(out).splitlines()[1:]] == list("012345")
    assert sorted(p.name for p in out.iterdir()) == sorted(rundir.RUN_FILES)


# -- folders that are not (this) run ----------------------------------------------------------
def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("zoo: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, ["--out", ""], "out must name a directory, got ''"),
        (None, ["--batch-size", "0"], "batch_size must be a positive int, got 0"),
        (None, ["--epochs", "0"], "epochs must be a positive int, got 0"),
        (None, ["--seed", "-1"], "seed must be an int in [0, 2**32 - 1], got -1"),
        # a seed no backend takes: refused before config.json is written
        (None, ["--seed", "99999999999999999999"], "got 99999999999999999999"),
        (None, ["--dataset", "tickets"], "dataset must be one of"),
        ("model", ["--out", "{tmp}/d"], "is not empty and is not a zoo run (it holds model.keras)"),
        ("file", ["--out", "{tmp}/afile"], "is a file, not a directory"),
        ("file", ["--out", "{tmp}/afile/sub"], "can't be created: '{tmp}/afile' is a file"),
        ("badconfig", ["--out", "{tmp}/d"], "config.json' is damaged (JSONDecodeError"),
    ],
)
def test_bad_outs_and_arguments_are_one_line_and_touch_nothing(
    tmp_path, capsys, make, args, message
):
    before = None
    if make == "model":
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "model.keras").write_bytes(b"a user's own file")
    elif make == "file":
        (tmp_path / "afile").write_text("not a folder")
    elif make == "badconfig":
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "config.json").write_text('{"model": "mnist_mlp", "epo')
    if make:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = ["train", *(a.format(tmp=tmp_path) for a in args)]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "new")]
    err = _one_line_error(capsys, argv)
    assert message.format(tmp=tmp_path) in err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == (before or {})  # nothing written, nothing changed
    assert not (tmp_path / "new").exists()


def test_another_runs_folder_and_a_finished_run_are_refused(tmp_path, capsys):
    train("linear_regression", epochs=2, out=tmp_path / "run", verbose=0)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    err = _one_line_error(capsys, ["train", "--epochs", "2", "--out", str(tmp_path / "run")])
    assert "holds another run (it differs in batch_size: 32 there, 64 now; dataset: " in err
    assert "model: 'linear_regression' there, 'mnist_mlp' now" in err
    argv = ["train", "linear_regression", "--epochs", "2", "--out", str(tmp_path / "run")]
    assert "holds a finished run" in _one_line_error(capsys, argv)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_a_write_error_names_the_file(tmp_path, monkeypatch, capsys):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(Path, "mkdir", refused)  # as on a read-only disk, even for root
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "ro" / "run")])
    assert f"no permission to write '{tmp_path / 'ro' / 'run'}' while creating it" in err
    assert "choose another --out" in err


# -- the checkpoint -------------------------------------------------------------------------
def _compiled(seed=0):
    keras.utils.set_random_seed(seed)
    import zoo

    model = zoo.create("mnist_mlp", hidden_units=(8,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _step(model, seed):
    rng = np.random.default_rng(seed)
    model.fit(rng.random((8, 784)), rng.random((8, 10)), verbose=0)


def test_a_checkpoint_restores_weights_optimizer_epoch_and_history(tmp_path):
    model = _compiled()
    _step(model, 0)
    history = [{"epoch": 0, "loss": 0.5}, {"epoch": 1, "loss": 0.25}]
    with RunDir(tmp_path / "run").lock() as run:
        run.prepare({"a": 1})
        path = run.save_checkpoint(model, 2, history)
        assert path.name == "epoch-0002.npz" and run.read_history() == history
        fresh = _compiled(seed=1)
        assert run.restore(fresh) == (2, history)
    for a, b in zip(model.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # iterations included
    _step(model, 1)
    _step(fresh, 1)  # the same next step from there (a freshly compiled step: 1-ulp noise)
    np.testing.assert_allclose(model.get_weights()[0], fresh.get_weights()[0], rtol=1e-6, atol=1e-8)


def _listing(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_reader_writes_nothing_and_restores_the_chiefs_checkpoint(tmp_path):
    """The other processes of a multi-process run open it with writer=False."""
    reader = RunDir(tmp_path / "run", writer=False)
    with reader.lock():  # before the chief: no folder, no lock file
        assert reader.prepare({"a": 1}) == "reader"
        assert not (tmp_path / "run").exists()
    model, history = _compiled(), [{"epoch": 0, "loss": 0.5}]
    _step(model, 0)
    with RunDir(tmp_path / "run").lock() as chief:
        chief.prepare({"a": 1})
        chief.save_checkpoint(model, 1, history)
    before = _listing(tmp_path / "run")
    fresh = _compiled(seed=1)
    with reader.lock():
        assert reader.prepare({"a": 1}) == "reader"
        assert reader.restore(fresh) == (1, history)
        reader.save_checkpoint(fresh, 2, history * 2)
        reader.write_history([])
        reader.write_model(fresh)
        reader.write_metrics({"test_loss": 0.0})
        reader.write_curves(lambda path: path.write_text("x"))
        reader.finish()
    assert _listing(tmp_path / "run") == before  # nothing written, removed or touched
    for a, b in zip(model.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_damaged_checkpoints_fall_back_then_say_what_to_do(tmp_path):
    model = _compiled()
    with RunDir(tmp_path / "run").lock() as run:
        run.prepare({"a": 1})
        rows = []
        for epoch in (1, 2, 3):
            _step(model, epoch)
            rows.append({"epoch": epoch - 1, "loss": float(epoch)})
            run.save_checkpoint(model, epoch, list(rows))
        assert [p.name for p in run.checkpoints()] == ["epoch-0003.npz", "epoch-0002.npz"]
        newest, previous = run.checkpoints()
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
        (run.path / "history.csv").write_text("epoch,loss\n0,9\n")  # and a stale history
        with pytest.warns(UserWarning, match=r"epoch-0003\.npz: .*resuming from epoch-0002"):
            assert run.restore(_compiled(1)) == (2, rows[:2])
        assert run.read_history() == rows[:2]  # rewritten from the checkpoint it resumes
        data = bytearray(previous.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # bytes flipped inside
        previous.write_bytes(bytes(data))
        with pytest.raises(RunDirError) as raised:
            run.restore(_compiled(1))
    message = str(raised.value)
    assert "\n" not in message and "no usable checkpoint in" in message
    assert "epoch-0003.npz:" in message and "epoch-0002.npz:" in message
    assert "to train again from epoch 1, or choose another --out" in message


def test_a_checkpoint_of_another_model_is_not_loaded(tmp_path):
    with RunDir(tmp_path / "run").lock() as run:
        run.prepare({"a": 1})
        run.save_checkpoint(_compiled(), 1, [{"epoch": 0, "loss": 1.0}])
        keras.utils.set_random_seed(0)
        import zoo

        other = zoo.create("mnist_mlp", hidden_units=(9,))
        other.compile(optimizer="adam", loss="mse")
        with pytest.raises(RunDirError, match=r"shapes differ for \[.hidden_1/kernel."):
            run.restore(other)


# -- kills and crashes at any point ------------------------------------------------------------
KILL_POINTS = ["checkpoint:written@2", "checkpoint:renamed@2", "history:written@1"]


@pytest.mark.one_backend
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_between_checkpoint_files_resumes_exactly(tmp_path, straight, point):
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-m", "zoo", "--backend", BACKEND, "train", "--epochs", str(EPOCHS),
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, env={**ENV, "ZOO_FAULT": point}, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "metrics.json").exists()
    metrics = train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0)  # the same command again
    assert metrics["epochs"] == EPOCHS
    _assert_like(out, straight)


POINTS = [
    "checkpoint:start",
    "checkpoint:written",
    "checkpoint:renamed",
    "checkpoint:pruned",
    "history:written",
]
AFTER_FIT = ["model:written", "metrics:written"]


crash = st.one_of(
    st.tuples(st.sampled_from(POINTS), st.integers(1, EPOCHS)),
    st.tuples(st.sampled_from(AFTER_FIT), st.just(-1)),
    st.tuples(st.just("batch"), st.tuples(st.integers(0, EPOCHS - 1), st.integers(0, 17))),
)


@pytest.mark.one_backend
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is not a fuzzing farm
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(crashes=st.lists(crash, min_size=1, max_size=3))
def test_any_kills_then_reruns_end_like_the_uninterrupted_run(
    tmp_path, straight, monkeypatch, crashes
):
    out = tmp_path / f"run{time.monotonic_ns()}"

    def again(callbacks=()):
        """The same command; on a finished run it says so (and drops a leftover
        checkpoint of a kill between metrics.json and the cleanup)."""
        if not (out / "metrics.json").exists():
            return train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0, callbacks=callbacks)
        with pytest.raises(RunDirError, match="holds a finished run"):
            train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0)

    run_with_crashes(monkeypatch, crashes, again)
    again()
    _assert_like(out, straight)
    shutil.rmtree(out)


# -- a full disk -----------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run the disk-full test (as root, mounting a small tmpfs)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])


@pytest.mark.one_backend
def test_a_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path, straight, capsys):
    """1.2 MB: room for two checkpoints of mnist_mlp (441 kB each), not a third."""
    with _tmpfs(tmp_path / "disk", "1200k") as disk:
        argv = ["train", "--epochs", str(EPOCHS), "--out", str(disk / "run"), "--quiet"]
        err = _one_line_error(capsys, argv)
        assert "no space left on the device while writing" in err
        assert "epoch-0003.npz" in err and "it resumes from epoch-0002.npz" in err
        left = sorted(p.name for p in (disk / "run" / "checkpoint").iterdir())
        assert left == ["epoch-0001.npz", "epoch-0002.npz"]  # no partial file
        shutil.copytree(disk / "run", tmp_path / "run")  # the same run, given space
    assert train("mnist_mlp", epochs=EPOCHS, out=tmp_path / "run", verbose=0)
    _assert_like(tmp_path / "run", straight)
