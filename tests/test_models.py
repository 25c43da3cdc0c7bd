"""Every registered model passes the harness; model-specific facts from the seeds."""

import keras
import numpy as np
import pytest

import zoo
from zoo.inputs import predict_numpy
from zoo.testing import CHECKS, ModelChecker


# Each model's checks go to one xdist worker (``--dist loadgroup``, as the nox session
# runs; it needs pytest < 9.2, see pyproject.toml): a model's first build compiles its
# initializers (measured: 6-7 s for toy_resnet or ticket_router under JAX) and later
# builds in the same process reuse them.
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in zoo.list_models()]
)
def test_harness(name, check, tmp_path):
    ModelChecker(name, tmp_dir=tmp_path).run([check])


def _dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_mnist_mlp_is_the_guides_model():
    model = zoo.create("mnist_mlp")
    assert model.name == "mnist_model"
    assert model.count_params() == 55_050
    assert tuple(model.inputs[0].shape) == (None, 784)
    dense = _dense_layers(model)
    assert [d.units for d in dense] == [64, 64, 10]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "linear"]
    assert tuple(model.outputs[0].shape) == (None, 10)


def test_binary_mlp_is_the_tutorials_model():
    model = zoo.create("binary_mlp")
    dense = _dense_layers(model)
    assert tuple(model.inputs[0].shape) == (None, 10)
    assert [d.units for d in dense] == [64, 64, 1]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "sigmoid"]
    out = predict_numpy(model, np.random.default_rng(0).normal(size=(5, 10)).astype("float32"))
    assert np.all((out[0] > 0) & (out[0] < 1))


@pytest.mark.parametrize(
    "name, in_dim, units, activation",
    [
        ("linear_regression", 1, 1, "linear"),
        ("logistic_regression", 3, 1, "sigmoid"),
        ("softmax_regression", 4, 3, "softmax"),
    ],
)
def test_regressions_are_the_tutorials_models(name, in_dim, units, activation):
    model = zoo.create(name)
    (dense,) = _dense_layers(model)
    assert tuple(model.inputs[0].shape) == (None, in_dim)
    assert dense.units == units and dense.activation.__name__ == activation


def test_softmax_regression_equals_the_tutorials_sequential_model():
    """The tutorial's Sequential softmax regression and the zoo's functional one,
    given the same weights, give identical outputs."""
    zoo_model = zoo.create("softmax_regression")
    sequential = keras.Sequential(
        [keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")]
    )
    assert sequential.count_params() == zoo_model.count_params()
    sequential.set_weights(zoo_model.get_weights())
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    expected = keras.ops.convert_to_numpy(sequential(x))
    np.testing.assert_array_equal(predict_numpy(zoo_model, x)[0], expected)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-6)


def test_mlp_flattens_images_and_adds_dropout():
    model = zoo.mlp(input_shape=(28, 28), hidden_units=(32,), dropout=0.25)
    assert model.count_params() == 784 * 32 + 32 + 32 * 10 + 10
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    x = np.zeros((2, 28, 28), "float32")
    assert predict_numpy(model, x)[0].shape == (2, 10)
