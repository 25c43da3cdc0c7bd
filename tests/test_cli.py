"""The command line."""

import json
import os
import subprocess
import sys

import keras
import pytest
from conftest import extras_required

from zoo.cli import main


def test_list_and_wildcard(capsys):
    assert main(["list", "*regression"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "linear_regression",
        "logistic_regression",
        "softmax_regression",
    ]


def test_describe_prints_json(capsys):
    assert main(["describe", "mnist_mlp"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["params"] == 55_050
    assert described["builder"] == "zoo.models.mlp.mlp"


def test_unknown_name_is_a_one_line_error(capsys):
    assert main(["summary", "mnist_mpl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'mnist_mlp'" in err


def test_backend_flag_takes_effect_before_keras_is_imported():
    """`python -m zoo --backend B` runs under B even with KERAS_BACKEND unset."""
    backend = keras.backend.backend()
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "--backend", backend, "summary", "mnist_mlp"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"backend: {backend}, parameters: 55,050" in result.stdout
    assert "mnist_model" in result.stdout


def test_console_script_is_installed():
    """`pip install` puts a `zoo` command beside the interpreter. A source tree on
    PYTHONPATH, uninstalled (the GPU check on a machine without a package index), has
    none: skipped there, naming why; the nox sessions install the package, so it fails
    there instead (``ZOO_REQUIRE_EXTRAS=1``)."""
    import importlib.metadata
    import pathlib

    try:
        importlib.metadata.distribution("keras-model-zoo")
    except importlib.metadata.PackageNotFoundError:
        if extras_required():
            pytest.fail("keras-model-zoo is not installed; ZOO_REQUIRE_EXTRAS=1 says it is")
        pytest.skip("keras-model-zoo is not installed here (a source tree): no console script")
    script = pathlib.Path(sys.executable).parent / "zoo"
    assert script.exists(), f"no console script at {script}"
    result = subprocess.run(
        [str(script), "--backend", keras.backend.backend(), "list", "mnist_*"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "mnist_mlp"
