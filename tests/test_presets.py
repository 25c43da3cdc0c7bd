"""Presets: save, restore on any backend, and clear errors for the wrong or a damaged one.
(``zoo preset RUN -o DIR`` is tested with ``zoo export`` in test_export.py.)

``tests/presets/`` holds presets saved under another backend (``scripts/make_presets.py``)
with fixed inputs and the outputs they gave; every backend restores them here."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo.inputs import predict_numpy
from zoo.presets import PresetError, read_metadata

BACKEND = keras.backend.backend()
FIXTURES = Path(__file__).parent / "presets"
REGENERATE = "regenerate with `python scripts/make_presets.py`"


@pytest.mark.parametrize(
    "preset, model_name",
    [
        ("mnist_mlp_digits", "mnist_mlp"),
        ("custom_rnn_classifier", "custom_rnn_classifier"),
        ("ticket_router", "ticket_router"),
    ],
)
def test_a_preset_saved_under_another_backend_restores_with_the_same_outputs(preset, model_name):
    info = read_metadata(FIXTURES / preset)
    model = zoo.create(model_name, preset=FIXTURES / preset)
    assert model.count_params() == info["parameters"]
    io = np.load(FIXTURES / preset / "io.npz")
    if "input" in io:
        inputs = io["input"]
    else:
        inputs = {k.split(":", 1)[1]: io[k] for k in io.files if k.startswith("input:")}
    outputs = predict_numpy(model, inputs)
    for i, out in enumerate(outputs):
        np.testing.assert_allclose(
            out,
            io[f"output_{i}"],
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"{preset} output {i}: {BACKEND} vs {info['backend']} (saved); {REGENERATE}",
        )


def test_a_run_turned_into_a_preset_keeps_its_training_record():
    info = read_metadata(FIXTURES / "mnist_mlp_digits")
    assert info["model"] == "mnist_mlp" and info["dataset"] == "digits"
    assert info["training"]["epochs"] == 2 and info["metrics"]["test_accuracy"] > 0.8
    assert info["keras_version"] and info["zoo_version"] and info["backend"]


def test_save_and_restore_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    model = zoo.create("toy_resnet", num_blocks=1)
    path = zoo.save_preset(model, tmp_path / "p", {"dataset": "cifar10", "note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folder left
    restored = zoo.create("toy_resnet", preset=path)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        predict_numpy(restored, x)[0], predict_numpy(model, x)[0], rtol=1e-6, atol=1e-6
    )
    info = json.loads((path / "metadata.json").read_text())
    assert info["dataset"] == "cifar10" and info["backend"] == BACKEND
    assert info["parameters"] == model.count_params()


def test_preset_errors_are_one_clear_line(tmp_path):
    model = zoo.create("mnist_mlp")
    path = zoo.save_preset(model, tmp_path / "p")
    with pytest.raises(PresetError, match=r"holds model 'mnist_mlp', not 'binary_mlp'$"):
        zoo.create("binary_mlp", preset=path)
    with pytest.raises(ValueError, match=r"can't be combined with preset="):
        zoo.create("mnist_mlp", preset=path, hidden_units=(8,))
    with pytest.raises(
        FileExistsError, match=r"exists; choose another, or overwrite it \(--overwrite"
    ):
        zoo.save_preset(model, path)
    with pytest.raises(PresetError, match="is not a directory"):
        zoo.load_preset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="is not a zoo model"):
        zoo.save_preset(
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "q"
        )
    assert not (tmp_path / "q").exists()

    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    with open(damaged / "model.weights.h5", "r+b") as f:  # flip bytes in the middle
        f.seek(2000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(PresetError, match=r"model\.weights\.h5 does not match the sha256"):
        zoo.load_preset(damaged)
    (damaged / "config.json").unlink()
    with pytest.raises(PresetError, match=r"is damaged: missing \['config.json'\]"):
        zoo.load_preset(damaged)

    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "config.json").write_text('{"class_name": "NoSuchLayer", "config": {}}')
    with pytest.raises(PresetError, match=r"config\.json does not match the sha256"):
        zoo.load_preset(broken)
    _resign(broken)  # as if saved that way: the hashes match, the config still can't build
    with pytest.raises(PresetError, match=r"config\.json does not build a model"):
        zoo.load_preset(broken)


def _resign(preset):
    """Recomputes a preset's hashes after a test changed one of its files."""
    from zoo._io import sha256_file
    from zoo.factory import metadata_digest

    info = json.loads((preset / "metadata.json").read_text())
    info["sha256"] = {f: sha256_file(preset / f) for f in info["sha256"]}
    info["metadata_sha256"] = metadata_digest(info)
    (preset / "metadata.json").write_text(json.dumps(info))
