"""Every expected failure of the command line is one ``zoo: error:`` line naming the
file or argument and what to do, with exit 2 and nothing half-written; ``--debug``
shows the traceback. Also: presets refuse any changed file, and the custom layers keep
Keras's layer contract (dtype policies, exact config round trips)."""

import json
import pickle
import shutil
import stat

import keras
import numpy as np
import pytest

import zoo
from zoo import cli, export
from zoo.layers import CustomRNN, RNNWithFunctionalHead, WeightedAverage
from zoo.presets import PresetError
from zoo.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train("mnist_mlp", epochs=1, out=out, verbose=0)
    return out


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1, err
    return err


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# -- predict ---------------------------------------------------------------------------------
def test_predict_writes_exactly_the_path_given(run, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 784), "float32"))
    assert cli.main(["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y")]) == 0
    assert _files(tmp_path) == ["x.npy", "y"]  # no suffix added, no temporary file left
    assert np.load(tmp_path / "y").shape == (3, 10)
    assert "wrote" in capsys.readouterr().out


def test_predict_on_an_empty_array_gives_an_empty_output(run, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 784), "float32"))
    assert (
        cli.main(["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    )
    assert np.load(tmp_path / "y.npy").shape == (0, 10)


def test_nonfinite_inputs_are_refused_unless_allowed(run, tmp_path, capsys):
    x = np.zeros((4, 784), "float32")
    x[1, 5], x[2, 7] = np.nan, np.inf
    np.save(tmp_path / "x.npy", x)
    argv = ["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    err = _error(capsys, argv)
    assert "holds 2 NaN or inf value(s), the first at index (1, 5)" in err
    assert "--allow-nonfinite" in err and not (tmp_path / "y.npy").exists()
    assert cli.main([*argv, "--allow-nonfinite"]) == 0
    # the model sees the input as given: the predictions are the model's own for it, through
    # zoo.predict (what a NaN becomes is the backend's: TensorFlow 2.21's fused oneDNN
    # MatMul+BiasAdd+Relu in a graph, as in Keras's predict there, turns it into 0; the
    # zoo's XLA forward pass, eager TensorFlow, JAX and torch keep it)
    written = np.load(tmp_path / "y.npy")
    model = keras.saving.load_model(run / "model.keras")
    np.testing.assert_array_equal(written, zoo.predict(model, x))
    assert np.isfinite(written[[0, 3]]).all()
    finite = model.predict(x[[0, 3]], verbose=0)  # the clean rows: Keras's own predictions
    np.testing.assert_allclose(written[[0, 3]], finite, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: np.save(p, np.zeros((2, 784), "complex64")), "is complex (complex64)"),
        (lambda p: p.write_text("1,2,3\n"), "lacks numpy's header: a text or other file"),
        (
            lambda p: p.write_bytes(pickle.dumps([1, 2])),
            "is not a numpy .npy or .npz file",
        ),
        (
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            "is not a numpy .npy or .npz file",
        ),
        (lambda p: np.save(p, np.zeros((2, 100), "float32")), "must have shape (any, 784)"),
        (lambda p: None, "x.npy' does not exist"),
    ],
)
def test_bad_prediction_inputs(run, tmp_path, capsys, write, message):
    write(tmp_path / "x.npy")
    argv = ["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    assert message in _error(capsys, argv)
    assert not (tmp_path / "y.npy").exists() and not list(tmp_path.glob(".*"))


def test_bad_prediction_outputs_are_refused_before_computing(run, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 784), "float32"))
    (tmp_path / "dir").mkdir()
    x = str(tmp_path / "x.npy")
    assert "is a directory; give a file path" in _error(
        capsys, ["predict", str(run), x, "-o", str(tmp_path / "dir")]
    )
    assert "does not exist" in _error(
        capsys, ["predict", str(run), x, "-o", str(tmp_path / "no" / "y.npy")]
    )
    assert _files(tmp_path) == ["dir", "x.npy"] and _files(tmp_path / "dir") == []


def test_a_multi_output_model_predicts_to_an_npz_by_output_name(tmp_path):
    out = tmp_path / "router"
    train("ticket_router", epochs=1, out=out, verbose=0, overrides={"num_words": 1100})
    assert cli.main(["inputs", str(out), "-o", str(tmp_path / "x.npz")]) == 0  # zoo.inputs
    with np.load(tmp_path / "x.npz") as x:
        assert sorted(x.files) == ["body", "tags", "title"] and x["tags"].shape == (3, 12)
    assert cli.main(["predict", str(out), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y")]) == 0
    with np.load(tmp_path / "y") as y:
        assert sorted(y.files) == ["department", "priority"]
        assert y["department"].shape == (3, 4)


# -- damaged runs and models -------------------------------------------------------------------
def test_damaged_or_missing_run_files(run, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    np.save(tmp_path / "x.npy", np.zeros((2, 784), "float32"))
    err = _error(
        capsys, ["predict", str(broken), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y")]
    )
    assert "model.keras' is damaged (not a .keras zip archive)" in err and "save it again" in err
    assert "model.keras' is damaged" in _error(capsys, ["evaluate", str(broken)])
    (broken / "metrics.json").write_text("{")
    assert "metrics.json' is damaged (JSONDecodeError" in _error(capsys, ["evaluate", str(broken)])
    (broken / "metrics.json").unlink()
    err = _error(capsys, ["evaluate", str(broken)])
    assert "is not a finished zoo run (missing ['metrics.json'])" in err
    assert "not a finished zoo run" in _error(
        capsys, ["preset", str(tmp_path), "-o", str(tmp_path / "p")]
    )


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="not a finished zoo run"):
        cli.main(["--debug", "evaluate", str(tmp_path)])


def test_export_names_an_extra_that_exists(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    ok, why = export.supported("onnx", "jax")
    assert not ok and 'pip install "keras-model-zoo[export-jax]"' in why
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    for backend in ("tensorflow", "jax", "torch"):
        assert f"export-{backend}" in project["project"]["optional-dependencies"]


# -- presets ----------------------------------------------------------------------------------
def test_a_preset_refuses_any_changed_file(run, tmp_path, capsys):
    assert cli.main(["preset", str(run), "-o", str(tmp_path / "p")]) == 0
    preset = tmp_path / "p"
    assert stat.S_IMODE(preset.stat().st_mode) == 0o755  # a folder like any other
    assert zoo.create("mnist_mlp", preset=preset).count_params() == 55_050
    err = _error(capsys, ["preset", str(run), "-o", str(preset)])
    assert "exists; choose another, or overwrite it (--overwrite" in err

    edited = tmp_path / "edited"
    shutil.copytree(preset, edited)
    config = (edited / "config.json").read_text()
    (edited / "config.json").write_text(config.replace('"relu"', '"sigmoid"'))
    with pytest.raises(PresetError, match=r"config\.json does not match the sha256"):
        zoo.load_preset(edited)
    (edited / "config.json").write_text(config)
    info = json.loads((edited / "metadata.json").read_text())
    info["dataset"] = "mnist"
    (edited / "metadata.json").write_text(json.dumps(info))
    with pytest.raises(PresetError, match=r"metadata\.json was changed after it was saved"):
        zoo.load_preset(edited)


# -- the custom layers' contract ----------------------------------------------------------------
def test_custom_layers_keep_their_dtype_policy():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        head = RNNWithFunctionalHead(8)
        rnn = CustomRNN(8)
    finally:
        keras.config.set_dtype_policy("float32")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype("float32")
    out = head(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16" == head.compute_dtype
    for layer in (head.rnn, head.rnn.cell, head.rnn.cell.projection_1, *head.head.layers[1:]):
        assert layer.dtype_policy.name == "mixed_float16", layer.name
    assert keras.backend.standardize_dtype(rnn(x).dtype) == "float16"
    assert rnn.cell.projection_2.compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in head.weights)  # variables stay float32
    # a policy given to one layer (not the global one) reaches its sublayers too
    local = CustomRNN(4, dtype="mixed_bfloat16")
    assert local.cell.projection_1.dtype_policy.name == "mixed_bfloat16"


def test_custom_layer_configs_round_trip_exactly():
    layer = WeightedAverage([1] * 7, name="w")
    config = layer.get_config()
    for _ in range(3):
        again = WeightedAverage.from_config(config)
        assert again.get_config() == config
        assert again.merge_weights == layer.merge_weights
        config = again.get_config()
    for original in (CustomRNN(5, return_sequences=False, name="r"), RNNWithFunctionalHead(4)):
        clone = type(original).from_config(original.get_config())
        assert clone.get_config() == original.get_config()


def test_inputs_for_a_registered_name_feed_predict(run, tmp_path, capsys):
    out = tmp_path / "x"
    assert cli.main(["inputs", "mnist_mlp", "-o", str(out), "--batch-size", "5"]) == 0
    assert np.load(out).shape == (5, 784) and _files(tmp_path) == ["x"]  # the path as given
    assert cli.main(["predict", str(run), str(out), "-o", str(tmp_path / "y")]) == 0
    assert np.load(tmp_path / "y").shape == (5, 10)
    capsys.readouterr()
    assert "Unknown model name 'nope'" in _error(capsys, ["inputs", "nope", "-o", str(out)])


def test_nonfinite_outputs_are_refused_unless_allowed(run, tmp_path, capsys):
    x = np.zeros((4, 784), "float32")
    x[[1, 3]] = 1e38  # finite inputs whose outputs overflow
    np.save(tmp_path / "x.npy", x)
    argv = ["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    err = _error(capsys, argv)
    assert "hold NaN or inf in 2 of 4 row(s), the first row 1" in err
    assert "--allow-nonfinite" in err and _files(tmp_path) == ["x.npy"]
    assert cli.main([*argv, "--allow-nonfinite"]) == 0
    written = np.load(tmp_path / "y.npy")
    assert np.isfinite(written[[0, 2]]).all() and not np.isfinite(written[[1, 3]]).all()
