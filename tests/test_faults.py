"""The fault battery's command-line cases not covered elsewhere: every command that
writes, on a read-only file system; an allocation that cannot succeed; a backend that
is not installed; an input of strings. Each ends in one ``zoo: error:`` line naming the
user's path or argument (never a temporary name), exit 2, and nothing changed.

(The rest of the battery: ``test_targets.py`` for ``--overwrite`` and links,
``test_interrupts.py`` for signals, ``test_cross_backend.py`` for runs of other
backends, ``test_rundir.py`` for kills and a full disk, ``test_cli_errors.py``.)"""

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import export_format_here, extras_required, require_plot

from zoo import cli
from zoo.plotting import plotting_available

BACKEND = keras.backend.backend()
RUNS = Path(__file__).parent / "runs"


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1, err
    assert ".tmp" not in err and ".old" not in err, err  # no temporary name
    return err


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` as a read-only tmpfs holding what it held (root can write anywhere
    else: permissions do not stop it)."""
    kept = folder.with_name(folder.name + "-content")
    shutil.copytree(folder, kept)
    shutil.rmtree(folder)
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run the read-only test (as root, mounting a tmpfs)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        shutil.copytree(kept, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.one_backend
def test_every_write_on_a_read_only_file_system_is_one_line(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    shutil.copytree(RUNS / BACKEND, disk / "run")
    np.save(disk / "x.npy", np.zeros((2, 1), "float32"))
    fmt = export_format_here()  # None (skipped there) where the export extra is missing
    cases = {
        "train": (["train", "linear_regression", "--out", "{d}/new", "--quiet"], "new"),
        "predict": (["predict", "{d}/run", "{d}/x.npy", "-o", "{d}/y.npy"], "y.npy"),
        "inputs": (["inputs", "linear_regression", "-o", "{d}/x2.npy"], "x2.npy"),
        "plot": (["plot", "linear_regression", "-o", "{d}/m.png"], "m.png"),
        "preset": (["preset", "{d}/run", "-o", "{d}/preset"], "preset"),
        "export": (["export", "{d}/run", "--format", str(fmt), "-o", "{d}/exported"], "exported"),
    }
    if fmt is None:
        del cases["export"]
    if not plotting_available():
        if extras_required():
            require_plot()  # fails: the nox sessions install it
        del cases["plot"]
    with _read_only(disk):
        before = _snapshot(disk)
        for command, (argv, target) in cases.items():
            err = _error(capsys, [a.format(d=disk) for a in argv])
            assert str(disk / target) in err and "ead-only file system" in err, (command, err)
            assert f"/.{target}" not in err, err  # not the temporary name beside it
            assert _snapshot(disk) == before, command


def test_an_allocation_that_cannot_succeed_is_one_line(tmp_path, capsys):
    out = tmp_path / "x.npy"
    err = _error(capsys, ["inputs", "mnist_mlp", "-o", str(out), "--batch-size", str(10**12)])
    assert "not enough memory" in err and "--batch-size" in err
    assert not list(tmp_path.iterdir())


def test_an_input_of_strings_names_the_file(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([["a"]], dtype="<U1"))
    argv = ["predict", str(RUNS / BACKEND), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y")]
    err = _error(capsys, argv)
    assert f"input '{tmp_path / 'x.npy'}' holds str32 values" in err
    assert not (tmp_path / "y").exists()


def test_a_backend_that_is_not_installed_is_one_line():
    missing = [b for b in ("jax", "torch", "tensorflow") if importlib.util.find_spec(b) is None]
    assert missing, "every backend is installed here: nothing to check"
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "--backend", missing[0], "list"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        f"zoo: error: '{missing[0]}' is not installed (No module named '{missing[0]}'); "
        f"--backend {missing[0]} needs it: pip install 'keras-model-zoo[{missing[0]}]'"
    )
