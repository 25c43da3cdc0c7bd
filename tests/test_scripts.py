"""Every script in scripts/ runs (smoke tests with tiny settings): the MNIST one on every
backend, the others in one backend's session (see ``ONE`` below)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
BACKEND = keras.backend.backend()


def _run(script, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--backend", BACKEND, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


# The scripts are glue over the zoo's API (argparse, train, print): what they do on a
# backend is tested in every backend's session by the API's own tests (test_training:
# the ticket router and study-hours recipes; test_seed_models: extracting the encoder;
# test_cli: --backend). So every session runs the MNIST script, and one backend's session
# the rest (``one_backend``, tests/conftest.py), which cost up to 30 s each.
ONE = pytest.mark.one_backend


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("train_mnist_mlp.py", ["--dataset", "digits", "--epochs", "1"], "Test accuracy:"),
        pytest.param(
            "train_autoencoder.py",
            ["--epochs", "1"],
            "encoder output for 5 test images: (5, 16)",
            marks=ONE,
        ),
        pytest.param(
            "train_ticket_router.py", ["--epochs", "1"], "test_department_accuracy", marks=ONE
        ),
        pytest.param(
            "linear_regression.py", ["--epochs", "30"], "predicted score for 9.5 hours", marks=ONE
        ),
    ],
)
def test_script_runs(script, args, expected, tmp_path):
    result = _run(script, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    assert f"backend: {BACKEND}" in result.stdout


@pytest.mark.one_backend
def test_toy_resnet_script_without_cifar10_says_where_to_put_it(tmp_path):
    env_home = tmp_path / "keras_home"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_toy_resnet.py"), "--backend", BACKEND],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_HOME": str(env_home)},
    )
    if result.returncode == 0:  # only with network access; then it trained for real
        assert "Test accuracy:" in result.stdout
    else:
        assert result.returncode == 2
        assert str(env_home / "datasets") in result.stderr and "digits" in result.stderr


@ONE
def test_the_gpu_check_runs_end_to_end_on_a_cpu(tmp_path):
    """scripts/gpu_check.py with --allow-no-gpu: the device check, TF32's effect on every
    model, the default train and its startup, a quick benchmark with the precision probe
    and a slice of the suite, one markdown report (every step's output kept with
    --logs); without the flag a machine with no GPU fails the check."""
    report, logs = tmp_path / "report.md", tmp_path / "logs"
    argv = [
        sys.executable,
        str(SCRIPTS / "gpu_check.py"),
        "--backends",
        BACKEND,
        "--report",
        str(report),
        "--workers",
        "1",
        "--train-args",
        "linear_regression --epochs 1",
        "--suite-args",
        "tests/test_house.py::test_the_registry_imports_nothing_of_the_zoo_nor_keras",
        "--diagnose",
        "tests/test_house.py::test_no_module_of_the_speed_path_is_over_400_lines",
        "--bench-args",
        "--quick --models mnist_mlp --impls zoo native --no-side-by-side --mixed toy_resnet",
    ]
    from zoo.precision import accelerator_present

    gpu = accelerator_present()
    done = subprocess.run(
        [*argv, "--allow-no-gpu", "--logs", str(logs)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    text = report.read_text()
    assert f"## {BACKEND}" in text and f"GPU: {gpu}" in text
    assert re.search(r"\| `vgg19_features` \| \d\.\de[+-]\d+ \|", text), text  # TF32's effect
    assert "- `zoo train` (defaults): exit 0" in text and "test metrics:" in text
    assert "| the device's first operation | " in text and "| the first training step | " in text
    assert f"### {BACKEND}: benchmark, exit 0" in text and "| `mnist_mlp` | zoo |" in text
    assert "| `toy_resnet` | mixed_bfloat16 | tf32 |" in text  # the precision probe
    assert re.search(rf"### {BACKEND}: suite \(`-n 1`\), exit 0, \d+ s, \d+ passed", text), text
    assert (
        "- alone, tests/test_house.py::test_no_module_of_the_speed_path_is_over_400_lines: exit 0"
        in text
    )
    assert text.rstrip().endswith("passed")
    assert {p.name for p in logs.iterdir()} >= {f"{BACKEND}-suite.log", f"{BACKEND}-bench.log"}
    if not gpu:  # without the flag, a machine with no GPU fails the check
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert refused.returncode == 1 and "the backend sees no GPU" in report.read_text()
    (tmp_path / "wheels").mkdir()
    empty = subprocess.run(
        [*argv, "--wheels", str(tmp_path / "wheels")], capture_output=True, text=True
    )
    assert empty.returncode == 1 and "holds no .whl file" in empty.stderr
