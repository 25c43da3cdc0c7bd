"""Every backend reads every run: a finished run trained under TensorFlow, JAX and PyTorch
(``tests/runs/<backend>``, linear_regression, 3 epochs) is evaluated, predicted on,
exported and made a preset under the backend of this session, and its ``model.keras``
opens with Keras's own ``keras.saving.load_model`` after ``import zoo``. Each session
runs its row of the 3x3 matrix (train backend x read backend).

The runs are remade, under each backend's venv, with::

    python -m zoo --backend B train linear_regression --epochs 3 --out tests/runs/B --quiet
"""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import export_format_here

import zoo
from zoo import cli
from zoo.training import evaluate

RUNS = Path(__file__).parent / "runs"
TRAINED_UNDER = ("tensorflow", "jax", "torch")
BACKEND = keras.backend.backend()


@pytest.fixture(params=TRAINED_UNDER)
def run(request, tmp_path):
    source = RUNS / request.param
    if not (source / "metrics.json").is_file():  # must fail, not skip, when it is missing
        raise AssertionError(f"the committed run {source} is missing")
    copy = tmp_path / f"trained-under-{request.param}"
    shutil.copytree(source, copy)
    return copy


def test_a_run_of_any_backend_is_evaluated_predicted_exported_and_preset_here(
    run, tmp_path, capsys
):
    recorded = json.loads((run / "metrics.json").read_text())
    assert evaluate(run) == pytest.approx({"test_loss": recorded["test_loss"]}, rel=1e-5)

    model = keras.saving.load_model(run / "model.keras")  # Keras's own, after `import zoo`
    assert zoo.identity(model)["name"] == "linear_regression"
    x = np.linspace(-1, 1, 6, dtype="float32").reshape(6, 1)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y"), model.predict(x, verbose=0), rtol=1e-6)

    assert cli.main(["preset", str(run), "-o", str(tmp_path / "preset")]) == 0
    restored = zoo.create("linear_regression", preset=tmp_path / "preset")
    np.testing.assert_allclose(restored.predict(x, verbose=0), np.load(tmp_path / "y"), rtol=1e-6)
    fmt = export_format_here()  # None where the export extra is missing (not in nox)
    if fmt is not None:
        argv = ["export", str(run), "--format", fmt, "-o", str(tmp_path / "exported")]
        assert cli.main(argv) == 0
    capsys.readouterr()


def test_a_torch_run_saved_before_portable_optimizer_names_still_loads(tmp_path):
    """Files written before ``ZooModel.get_compile_config`` named the optimizer by its
    public name hold torch's own class (``keras.src.backend.torch.optimizers.torch_sgd``),
    which another backend cannot import: ``ZooModel.compile_from_config`` renames it."""
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(RUNS / "torch" / "model.keras") as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    optimizer = config["compile_config"]["optimizer"]
    optimizer.update(module="keras.src.backend.torch.optimizers.torch_sgd", registered_name="SGD")
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    model = keras.saving.load_model(path)
    assert type(model.optimizer).__name__ == "SGD" and int(model.optimizer.iterations) > 0
    assert zoo.load_model(path).optimizer.get_config()["learning_rate"] == pytest.approx(0.01)


def test_import_zoo_is_enough_for_kerass_load_model_and_imports_no_keras():
    """In a fresh process: ``import zoo`` does not import Keras (the backend can still be
    chosen), and Keras imported after it already knows the zoo's classes."""
    code = (
        "import sys\n"
        "import zoo\n"
        "assert 'keras' not in sys.modules, 'import zoo imported keras'\n"
        "import keras\n"
        "from keras.saving import get_registered_object\n"
        "assert get_registered_object('zoo>ZooModel') is zoo.ZooModel\n"
        "assert get_registered_object('zoo>CustomDense') is not None\n"
        f"m = keras.saving.load_model({str(RUNS / 'jax' / 'model.keras')!r})\n"
        "print(type(m).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "ZooModel", result.stdout
