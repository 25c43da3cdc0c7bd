"""Export through Keras's ``model.export``: every artifact is loaded back by its serving
stack (TensorFlow's SavedModel loader, onnxruntime) and gives the Keras model's
outputs within 1e-4; a combination that can't work is a one-line error.

``SUPPORT`` is the table of ``docs/export.md``: each test session installs the export
extra of its backend, so a format that should work and does not is a failure here."""

import keras
import pytest
from conftest import require_export

import zoo
from zoo import cli
from zoo import export as zoo_export
from zoo.export import ExportError, export, supported
from zoo.presets import read_metadata
from zoo.training import train

BACKEND = keras.backend.backend()
SUPPORT = {
    ("tensorflow", "savedmodel"): True,
    ("tensorflow", "onnx"): True,
    ("jax", "savedmodel"): True,
    ("jax", "onnx"): True,
    ("torch", "savedmodel"): False,
    ("torch", "onnx"): True,
}
WORKS = [fmt for (backend, fmt), ok in SUPPORT.items() if backend == BACKEND and ok]
MODELS = {
    "mnist_mlp": {},
    "conv_autoencoder": {},
    "toy_resnet": {},
    "ticket_router": {"num_words": 500},  # three inputs, two outputs
}


def test_the_support_table_holds_here():
    for fmt in ("savedmodel", "onnx"):
        if SUPPORT[BACKEND, fmt]:
            require_export(fmt)
        ok, why = supported(fmt)
        assert ok == SUPPORT[BACKEND, fmt], why


# Combinations that can't work, each refused up front with a one-line error.
REFUSED = {
    ("jax", "onnx", "conv_autoencoder"): "does not work for a model with MaxPooling2D",
    ("jax", "onnx", "toy_resnet"): "does not work for a model with MaxPooling2D",
}


@pytest.mark.parametrize("fmt", WORKS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_reloads_with_the_models_outputs(name, fmt, tmp_path):
    require_export(fmt)
    keras.utils.set_random_seed(0)
    model = zoo.create(name, **MODELS[name])
    path = tmp_path / (f"{name}.onnx" if fmt == "onnx" else name)
    if (BACKEND, fmt, name) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[BACKEND, fmt, name]):
            export(model, path, fmt)
        assert not list(tmp_path.iterdir())
        return
    report = export(model, path, fmt)
    assert report["max_abs_diff"] <= 1e-4 and report["batch_size"] == 3
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_an_unsupported_combination_is_one_clear_line(tmp_path):
    model = zoo.create("mnist_mlp")
    with pytest.raises(
        ValueError, match=r"^format must be one of \['onnx', 'savedmodel'\], got 'tflite'$"
    ):
        export(model, tmp_path / "m", "tflite")
    if not SUPPORT[BACKEND, "savedmodel"]:
        with pytest.raises(
            ValueError, match=r"^format 'savedmodel' from backend 'torch': .*torch_xla"
        ):
            export(model, tmp_path / "m", "savedmodel")
    assert not list(tmp_path.iterdir())


def test_an_export_that_does_not_reproduce_the_model_is_not_kept(tmp_path, monkeypatch):
    fmt = WORKS[0]
    require_export(fmt)
    reload = zoo_export._reload_outputs
    monkeypatch.setattr(
        zoo_export,
        "_reload_outputs",
        lambda *a: [o + 1e-3 for o in reload(*a)],  # an artifact that is slightly off
    )
    with pytest.raises(ExportError, match=r"differs from the Keras model by 1\.00e-03"):
        export(zoo.create("mnist_mlp"), tmp_path / "m", fmt)
    assert not list(tmp_path.iterdir())


def test_cli_export_and_preset_of_a_run(tmp_path, capsys):
    run, fmt = tmp_path / "run", WORKS[-1]
    require_export(fmt)
    train("mnist_mlp", epochs=1, out=run, verbose=0)
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "served")
    assert cli.main(["export", str(run), "--format", fmt, "-o", str(out)]) == 0
    assert "reloaded outputs match the model's" in capsys.readouterr().out and out.exists()
    assert cli.main(["export", str(run), "--format", fmt, "-o", str(out)]) == 2
    assert "exists; choose another, or overwrite it (--overwrite" in capsys.readouterr().err

    assert cli.main(["preset", str(run), "-o", str(tmp_path / "p")]) == 0
    assert "wrote preset" in capsys.readouterr().out
    info = read_metadata(tmp_path / "p")
    assert info["training"]["epochs"] == 1 and info["dataset"] == "digits"
    assert cli.main(["preset", str(run), "-o", str(tmp_path / "p")]) == 2
    assert "exists; choose another, or overwrite it (--overwrite" in capsys.readouterr().err
