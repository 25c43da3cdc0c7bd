"""Precision on purpose: ``zoo.set_float32_precision`` sets each backend's own flags (and
``"highest"`` computes what the plain path computes), and ``--dtype-policy
mixed_bfloat16`` trains under Keras's mixed policy along float32's loss curve."""

import json

import keras
import numpy as np
import pytest

import zoo
from zoo import cli
from zoo.inputs import predict_numpy, sample_inputs
from zoo.precision import float32_precision, float32_precision_scope, set_float32_precision
from zoo.training import train

BACKEND = keras.backend.backend()
EXPECTED = {
    "jax": {
        "tf32": {"jax_default_matmul_precision": "tensorfloat32"},
        "highest": {"jax_default_matmul_precision": "highest"},
    },
    "torch": {
        p: {f"{f}.fp32_precision": v for f in ("cuda.matmul", "cudnn.conv", "cudnn.rnn")}
        for p, v in (("tf32", "tf32"), ("highest", "ieee"))
    },
    "tensorflow": {
        "tf32": {"tensor_float_32_execution": True},
        "highest": {"tensor_float_32_execution": False},
    },
}


@pytest.fixture
def restored_precision():
    """The backend's flags put back as they were after the test."""
    before = float32_precision()
    with float32_precision_scope(None):
        yield before
    assert float32_precision() == before


def test_the_switch_sets_the_backends_own_flags(restored_precision):
    for precision in ("tf32", "highest"):
        set_float32_precision(precision)
        assert float32_precision() == EXPECTED[BACKEND][precision]
    with pytest.raises(ValueError, match=r"precision must be one of \['highest', 'tf32'\]"):
        set_float32_precision("fast")
    # the scope sets them for its block and puts back what was there before it
    with float32_precision_scope("highest"):
        assert float32_precision() == EXPECTED[BACKEND]["highest"]
    assert float32_precision() == EXPECTED[BACKEND]["highest"]
    set_float32_precision("tf32")
    with float32_precision_scope("highest"):
        pass
    assert float32_precision() == EXPECTED[BACKEND]["tf32"]


def test_highest_gives_the_plain_paths_outputs(restored_precision, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = zoo.create("toy_resnet")
    x = sample_inputs(model, 2)
    plain = predict_numpy(model, x)
    set_float32_precision("highest")
    for got, want in zip(predict_numpy(model, x), plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the command line's switch, on predict
    run = tmp_path / "run"
    train("linear_regression", epochs=1, out=run, verbose=0)
    np.save(tmp_path / "x.npy", np.ones((2, 1), "float32"))
    argv = ["predict", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    assert cli.main([*argv, "--precision", "highest"]) == 0
    assert float32_precision() == EXPECTED[BACKEND]["highest"]


def test_mixed_bfloat16_training_follows_the_float32_curve(tmp_path):
    plain = train("mnist_mlp", epochs=2, out=tmp_path / "f32", verbose=0)
    mixed = train(
        "mnist_mlp", epochs=2, out=tmp_path / "bf16", verbose=0, dtype_policy="mixed_bfloat16"
    )
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["dtype_policy"] == "mixed_bfloat16"
    assert "dtype_policy" not in json.loads((tmp_path / "f32" / "config.json").read_text())
    model = zoo.load_model(tmp_path / "bf16" / "model.keras")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert all(layer.compute_dtype == "bfloat16" for layer in dense)
    assert all(w.dtype == "float32" for w in model.weights)  # the weights stay float32
    # bfloat16 keeps 8 bits of mantissa: the curves agree to a few percent
    rows = [
        np.genfromtxt(tmp_path / r / "history.csv", delimiter=",", names=True)
        for r in ("f32", "bf16")
    ]
    np.testing.assert_allclose(rows[1]["loss"], rows[0]["loss"], rtol=0.05)
    assert mixed["test_accuracy"] == pytest.approx(plain["test_accuracy"], abs=0.03)
    assert keras.config.dtype_policy().name == "float32"  # the global policy put back
