"""The registry: listing, describing, creating, registering, and its errors."""

import itertools

import keras
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from zoo import registry

SEED_MODELS = {
    "mnist_mlp": 55_050,
    "binary_mlp": 4_929,
    "linear_regression": 2,
    "logistic_regression": 4,
    "softmax_regression": 15,
}


def test_seed_models_are_registered_with_their_parameter_counts():
    assert set(SEED_MODELS) <= set(zoo.list_models())
    for name, params in SEED_MODELS.items():
        assert zoo.describe(name).params == params
    assert zoo.create("mnist_mlp").count_params() == 55_050


def test_list_models_is_sorted_and_takes_wildcards():
    names = zoo.list_models()
    assert names == sorted(names)
    assert zoo.list_models("*regression") == [
        "linear_regression",
        "logistic_regression",
        "softmax_regression",
    ]
    assert zoo.list_models("*mlp*") == ["binary_mlp", "mnist_mlp"]
    assert zoo.list_models("no_such_*") == []


def test_describe_gives_builder_config_params_section_summary():
    spec = zoo.describe("mnist_mlp")
    assert spec.builder is zoo.mlp
    assert spec.config["input_shape"] == (784,)
    assert spec.config["hidden_units"] == (64, 64)
    assert spec.config["num_classes"] == 10
    assert spec.config["activation"] == "relu"  # filled in from the builder's defaults
    assert spec.params == 55_050
    assert "functional API guide" in spec.section
    assert spec.summary
    as_dict = spec.as_dict()
    assert as_dict["builder"] == "zoo.models.mlp.mlp"
    with pytest.raises(TypeError):
        spec.config["num_classes"] = 3  # the registered config is read-only


def test_builders_are_importable_and_match_the_registry():
    from zoo import linear_regression, logistic_regression, mlp, softmax_regression

    for name in SEED_MODELS:
        spec = zoo.describe(name)
        assert spec.builder in (mlp, linear_regression, logistic_regression, softmax_regression)
        assert spec.builder(**spec.config).count_params() == spec.params


def test_create_applies_overrides():
    model = zoo.create("mnist_mlp", hidden_units=(32,), num_classes=5, name="small")
    assert model.count_params() == 784 * 32 + 32 + 32 * 5 + 5
    assert model.name == "small"
    assert zoo.create("mnist_mlp").count_params() == 55_050  # defaults untouched


def _one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(ValueError) as excinfo:
        zoo.create("mnist_mpl")
    message = _one_line(excinfo)
    assert "'mnist_mpl'" in message and "'mnist_mlp'" in message
    with pytest.raises(ValueError, match="Unknown model name 'resnet9000'"):
        zoo.describe("resnet9000")


def test_unknown_override_names_the_key_and_the_allowed_keys():
    with pytest.raises(ValueError) as excinfo:
        zoo.create("mnist_mlp", hiden_units=(3,))
    message = _one_line(excinfo)
    assert "hiden_units" in message and "hidden_units" in message and "num_classes" in message


BAD_ARGUMENTS = [
    ("mnist_mlp", {"hidden_units": (64, 0)}, "hidden_units", "(64, 0)"),
    ("mnist_mlp", {"hidden_units": (64, -1)}, "hidden_units", "-1"),
    ("mnist_mlp", {"hidden_units": "64"}, "hidden_units", "'64'"),
    ("mnist_mlp", {"num_classes": 0}, "num_classes", "0"),
    ("mnist_mlp", {"num_classes": 2.5}, "num_classes", "2.5"),
    ("mnist_mlp", {"num_classes": True}, "num_classes", "True"),
    ("mnist_mlp", {"input_shape": (28, -28)}, "input_shape", "(28, -28)"),
    ("mnist_mlp", {"input_shape": ()}, "input_shape", "()"),
    ("mnist_mlp", {"input_shape": "784"}, "input_shape", "'784'"),
    ("mnist_mlp", {"activation": "rleu"}, "activation", "'rleu'"),
    ("mnist_mlp", {"output_activation": "softmaxx"}, "output_activation", "'softmaxx'"),
    ("mnist_mlp", {"dropout": 1.0}, "dropout", "1.0"),
    ("mnist_mlp", {"name": ""}, "name", "''"),
    ("linear_regression", {"input_dim": 0}, "input_dim", "0"),
    ("linear_regression", {"num_outputs": -2}, "num_outputs", "-2"),
    ("logistic_regression", {"input_dim": "3"}, "input_dim", "'3'"),
    ("softmax_regression", {"num_classes": 1}, "num_classes", "1"),
]


@pytest.mark.parametrize("name, overrides, argument, shown", BAD_ARGUMENTS)
def test_bad_values_give_one_line_errors_before_anything_is_built(
    name, overrides, argument, shown, monkeypatch
):
    def no_graph(*args, **kwargs):
        raise AssertionError("a layer graph was started before the arguments were checked")

    monkeypatch.setattr(keras, "Input", no_graph)
    with pytest.raises(ValueError) as excinfo:
        zoo.create(name, **overrides)
    message = _one_line(excinfo)
    assert message.startswith(argument + " "), message
    assert shown in message and "must be" in message, message


def test_activation_error_lists_the_allowed_names():
    with pytest.raises(ValueError, match=r"'relu'.*'sigmoid'.*got 'rleu'"):
        zoo.mlp(activation="rleu")


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_register_a_user_model(scratch_registry):
    zoo.register(
        "tiny_mlp",
        zoo.mlp,
        config={"input_shape": (4,), "hidden_units": (8,), "num_classes": 2, "name": "tiny"},
        params=4 * 8 + 8 + 8 * 2 + 2,
        section="test",
        summary="A tiny MLP.",
    )
    assert "tiny_mlp" in zoo.list_models("tiny*")
    assert zoo.create("tiny_mlp").count_params() == zoo.describe("tiny_mlp").params


def test_register_as_a_stacked_decorator(scratch_registry):
    @zoo.register("tiny_a", config={"units": 2}, params=6, section="t", summary="a")
    @zoo.register("tiny_b", config={"units": 3}, params=9, section="t", summary="b")
    def tiny(units=1, name="tiny"):
        inputs = keras.Input((2,), name="inputs")
        return keras.Model(inputs, keras.layers.Dense(units, name="out")(inputs), name=name)

    assert callable(tiny)
    assert zoo.create("tiny_a").count_params() == 6
    assert zoo.create("tiny_b").count_params() == 9


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("mnist_mlp", {}, "already registered"),
        ("Bad-Name", {}, "lowercase snake_case"),
        ("new_model", {"widht": 3}, r"unknown keys \['widht'\]"),
    ],
)
def test_register_rejects_bad_registrations(scratch_registry, name, config, message):
    with pytest.raises(ValueError, match=message):
        zoo.register(name, zoo.mlp, config=config, params=1, section="s", summary="s")


def test_register_rejects_builders_without_plain_keywords(scratch_registry):
    def builder(*layers):
        return None

    with pytest.raises(TypeError, match="plain keyword arguments"):
        zoo.register("star_args", builder, params=1, section="s", summary="s")


@settings(max_examples=5, deadline=None)
@given(
    input_dim=st.integers(1, 20),
    hidden=st.lists(st.integers(1, 16), max_size=3),
    num_classes=st.integers(1, 6),
)
def test_mlp_parameter_count_property(input_dim, hidden, num_classes):
    widths = [input_dim, *hidden, num_classes]
    expected = sum(a * b + b for a, b in itertools.pairwise(widths))
    model = zoo.mlp(input_shape=(input_dim,), hidden_units=hidden, num_classes=num_classes)
    assert model.count_params() == expected
