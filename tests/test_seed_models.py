"""Facts about the seed models beyond the shared harness: the guide's structure and
parameter counts, weight sharing, merges, multi-input training, feature extraction,
and the errors for bad configs and bad inputs."""

import keras
import numpy as np
import pytest

import zoo
from zoo.inputs import predict_numpy
from zoo.layers import CustomDense, CustomRNN
from zoo.models.autoencoder import extract_encoder
from zoo.models.ticket_router import compile_ticket_router, sample_inputs

GUIDE_PARAMS = {
    "mnist_mlp": 55_050,
    "conv_encoder": 18_672,
    "conv_decoder": 9_569,
    "conv_autoencoder": 28_241,
    "conv_autoencoder_nested": 28_241,
    "toy_resnet": 223_242,
}


@pytest.mark.parametrize("name, params", sorted(GUIDE_PARAMS.items()))
def test_guide_parameter_counts(name, params):
    assert zoo.create(name).count_params() == params


def _images(n=4, size=28, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels)).astype("float32")


# -- autoencoder --------------------------------------------------------------------
def test_autoencoder_shapes_and_shared_graph():
    model = zoo.create("conv_autoencoder")
    assert tuple(model.output.shape) == (None, 28, 28, 1)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    encoder = extract_encoder(model)
    assert encoder.count_params() == 18_672
    assert tuple(encoder.output.shape) == (None, 16)


def test_nested_autoencoder_summary_shows_two_functional_layers():
    model = zoo.create("conv_autoencoder_nested")
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in nested] == ["encoder", "decoder"]
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    text = "\n".join(lines)
    assert text.count("encoder (Functional)") == 1 and text.count("decoder (Functional)") == 1


@pytest.mark.parametrize("name", ["conv_autoencoder", "conv_autoencoder_nested"])
def test_extracted_encoder_shares_the_trained_weights(name, tmp_path):
    model = zoo.create(name)
    encoder = extract_encoder(model)
    x = _images()
    before = predict_numpy(encoder, x)[0]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, x, epochs=2, batch_size=4, verbose=0)
    after = predict_numpy(encoder, x)[0]
    assert not np.allclose(before, after), "training the autoencoder did not move the encoder"
    # the same holds after a save and load
    path = tmp_path / "ae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(predict_numpy(extract_encoder(loaded), x)[0], after, atol=1e-6)


def test_extract_encoder_rejects_other_models():
    with pytest.raises(ValueError, match="conv_autoencoder"):
        extract_encoder(zoo.create("mnist_mlp"))


def test_autoencoder_checks_that_the_decoder_gives_back_the_input_shape():
    with pytest.raises(ValueError, match=r"give images of shape \(28, 28, 1\).*input_shape"):
        zoo.create("conv_autoencoder", input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="reshape_to must hold latent_dim=16"):
        zoo.create("conv_decoder", reshape_to=(4, 4, 2))
    with pytest.raises(ValueError, match="encoder_stages must be"):
        zoo.create("conv_encoder", encoder_stages=(16, 32))
    with pytest.raises(ValueError, match="too small"):
        zoo.create("conv_encoder", input_shape=(8, 8, 1))


# -- ensembles ------------------------------------------------------------------------
def _member_outputs(model, x):
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return [predict_numpy(m, x)[0] for m in members]


@pytest.mark.parametrize(
    "merge, combine",
    [
        ("average", lambda ys: np.mean(ys, axis=0)),
        ("maximum", lambda ys: np.max(ys, axis=0)),
        ("add", lambda ys: np.sum(ys, axis=0)),
        ("concatenate", lambda ys: np.concatenate(ys, axis=-1)),
        ("weighted_average", lambda ys: 0.5 * ys[0] + 0.3 * ys[1] + 0.2 * ys[2]),
    ],
)
def test_ensemble_merges_its_members(merge, combine):
    weights = (5, 3, 2) if merge == "weighted_average" else None
    model = zoo.create("ensemble", merge=merge, merge_weights=weights)
    x = np.random.default_rng(0).normal(size=(5, 128)).astype("float32")
    members = _member_outputs(model, x)
    assert len(members) == 3 and not np.allclose(members[0], members[1])
    np.testing.assert_allclose(predict_numpy(model, x)[0], combine(members), rtol=1e-5, atol=1e-6)


def test_ensemble_of_registered_and_given_models_saves_as_one_file(tmp_path):
    mine = zoo.create("mnist_mlp", hidden_units=(8,), name="mine")
    model = zoo.create("ensemble", members=["mnist_mlp", mine], input_shape=(784,))
    assert model.count_params() == 55_050 + mine.count_params()
    path = tmp_path / "ensemble.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).random((2, 784)).astype("float32")
    np.testing.assert_array_equal(predict_numpy(loaded, x)[0], predict_numpy(model, x)[0])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"members": 1}, "members must be at least 2"),
        ({"members": ["mnist_mlp"]}, "at least 2"),
        ({"members": ["mnist_mlp", "binary_mlp"]}, "input_shape=\\(128,\\)"),
        ({"merge": "median"}, "merge must be one of"),
        ({"merge": "weighted_average"}, "merge_weights must be given exactly when"),
        ({"merge": "weighted_average", "merge_weights": (1, 2)}, "one weight per member \\(3\\)"),
        ({"merge": "weighted_average", "merge_weights": (1, -2, 1)}, "non-negative"),
    ],
)
def test_ensemble_bad_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        zoo.create("ensemble", **overrides)


def test_ensemble_rejects_the_same_model_twice():
    member = zoo.create("linear_regression", input_dim=128, name="same")
    with pytest.raises(ValueError, match="distinct models"):
        zoo.ensemble(members=[member, member])


# -- ticket router --------------------------------------------------------------------
def _ticket_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = sample_inputs(n, rng, num_words=100, title_len=5, body_len=7)
    y = {
        "priority": rng.random((n, 1)).astype("float32"),
        "department": keras.utils.to_categorical(rng.integers(0, 4, n), 4),
    }
    return x, y


def test_ticket_router_has_the_guides_inputs_and_outputs():
    model = zoo.create("ticket_router")
    assert sorted(model.input) == ["body", "tags", "title"]
    assert tuple(model.input["title"].shape) == (None, None)
    assert tuple(model.input["tags"].shape) == (None, 12)
    assert model.output_names == ["priority", "department"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1), (None, 4)]
    assert model.get_layer("title_lstm").units == 128
    assert model.get_layer("body_lstm").units == 32
    assert model.get_layer("title_embedding").output_dim == 64


@pytest.mark.parametrize("by", ["name", "position"])
def test_ticket_router_trains_with_dicts_of_arrays(by):
    model = compile_ticket_router(zoo.create("ticket_router", num_words=100), by=by)
    x, y = _ticket_data()
    if by == "position":
        y = [y["priority"], y["department"]]
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert {"priority_loss", "department_loss"} <= set(history.history)


def test_ticket_router_loss_weights_apply_by_name():
    """A zero weight on one output removes it from the total loss."""
    x, y = _ticket_data()
    model = zoo.create("ticket_router", num_words=100)
    compile_ticket_router(model, loss_weights={"priority": 0.0, "department": 1.0})
    total, priority, department = model.evaluate(x, y, verbose=0)[:3]
    assert priority > 0 and department > 0
    np.testing.assert_allclose(total, department, rtol=1e-5)


class _Tickets(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return len(self.x["title"]) // self.batch_size

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return {k: v[s] for k, v in self.x.items()}, {k: v[s] for k, v in self.y.items()}


def test_ticket_router_trains_from_a_pydataset():
    model = compile_ticket_router(zoo.create("ticket_router", num_words=100))
    x, y = _ticket_data()
    history = model.fit(_Tickets(x, y, 8), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_ticket_router_call_time_errors_name_the_input():
    model = zoo.create("ticket_router", num_words=100)
    x, _ = _ticket_data(4)
    with pytest.raises(ValueError, match="title"):
        model({"titel": x["title"], "body": x["body"], "tags": x["tags"]})
    with pytest.raises(ValueError, match="tags"):
        model({**x, "tags": np.zeros((4, 11), "float32")})
    with pytest.raises(ValueError, match=r"input 'title' must have an integer dtype"):
        zoo.check_inputs(model, {**x, "title": x["title"] + 0.5})
    with pytest.raises(ValueError, match=r"input 'tags' must have shape \(any, 12\)"):
        zoo.check_inputs(model, {**x, "tags": np.zeros((4, 11), "float32")})
    with pytest.raises(ValueError, match=r"missing \['body'\], unexpected \['bdy'\]"):
        zoo.check_inputs(model, {"title": x["title"], "bdy": x["body"], "tags": x["tags"]})
    zoo.check_inputs(model, x)  # good inputs pass


def test_two_branch_regressor_call_time_errors_name_the_input():
    model = zoo.create("two_branch_regressor")
    good = {"input_a": np.zeros((2, 64), "float32"), "input_b": np.zeros((2, 128), "float32")}
    zoo.check_inputs(model, good)
    with pytest.raises(ValueError, match=r"input 'input_b' must have shape \(any, 128\)"):
        zoo.check_inputs(model, {**good, "input_b": np.zeros((2, 64), "float32")})
    with pytest.raises(ValueError, match="input_b"):
        model({**good, "input_b": np.zeros((2, 64), "float32")})


# -- toy ResNet, text, tutorial models ------------------------------------------------------
def test_toy_resnet_is_configurable():
    model = zoo.create("toy_resnet")
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 2
    deeper = zoo.create("toy_resnet", num_blocks=4)
    assert deeper.count_params() == 223_242 + 2 * 2 * (64 * 64 * 9 + 64)
    wider = zoo.create("toy_resnet", filters=32, stem_filters=(32, 32))
    assert wider.count_params() < 223_242
    with pytest.raises(ValueError, match="stem_filters must end with filters=32"):
        zoo.create("toy_resnet", filters=32)


def test_shared_embedding_is_one_variable_used_twice():
    model = zoo.create("shared_embedding")
    assert len(model.weights) == 1 and model.count_params() == 1000 * 128
    tokens = np.array([[1, 2, 3]], "int32")
    out = model({"text_a": tokens, "text_b": tokens[:, ::-1]})
    a, b = (keras.ops.convert_to_numpy(out[k]) for k in ("encoded_a", "encoded_b"))
    np.testing.assert_array_equal(a[0, 0], b[0, 2])


@pytest.mark.parametrize("encoder", ["lstm", "average"])
def test_text_pair_classifier_encodes_both_texts_with_the_same_weights(encoder):
    model = zoo.create("text_pair_classifier", encoder=encoder)
    assert len([w for w in model.weights if "embedding" in w.path]) == 1
    features = zoo.feature_extractor(model, ["pair_features"])
    rng = np.random.default_rng(0)
    a = rng.integers(1, 1000, (3, 6)).astype("int32")
    b = rng.integers(1, 1000, (3, 6)).astype("int32")
    ab = predict_numpy(features, {"text_a": a, "text_b": b})[0]
    ba = predict_numpy(features, {"text_a": b, "text_b": a})[0]
    n = ab.shape[-1] // 4  # [a, b, (a - b)**2, a * b]: swapping the texts swaps a and b only
    np.testing.assert_allclose(ab[:, :n], ba[:, n : 2 * n], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ab[:, 2 * n :], ba[:, 2 * n :], rtol=1e-5, atol=1e-6)


def test_two_branch_regressor_is_built_from_two_sub_models():
    model = zoo.create("two_branch_regressor")
    assert sorted(model.input) == ["input_a", "input_b"]
    assert [model.get_layer(f"a_dense_{i}").units for i in (1, 2)] == [16, 8]
    assert [model.get_layer(f"b_dense_{i}").units for i in (1, 2, 3)] == [64, 32, 8]
    assert model.get_layer("head_dense_1").units == 2


def test_lstm_classifier_is_the_tutorials_model():
    model = zoo.create("lstm_classifier")
    assert tuple(model.input.shape) == (None, 50, 1)
    assert model.get_layer("sequence_lstm").units == 10
    out = predict_numpy(model, np.zeros((2, 50, 1), "float32"))[0]
    assert out.shape == (2, 1) and np.all((out > 0) & (out < 1))


# -- custom layers ------------------------------------------------------------------------
@pytest.mark.parametrize("time_steps, batch", [(4, 1), (9, 3), (17, 2)])
def test_custom_rnn_takes_any_length_and_batch(time_steps, batch):
    model = zoo.create("custom_rnn_classifier")
    x = np.random.default_rng(0).normal(size=(batch, time_steps, 5)).astype("float32")
    assert predict_numpy(model, x)[0].shape == (batch, time_steps - 2, 1)
    last = zoo.create("custom_rnn_classifier", return_sequences=False)
    assert predict_numpy(last, x)[0].shape == (batch, 1)


def test_custom_rnn_matches_the_guides_loop():
    """The cell computes the guide's y_t = tanh(x W1 + b1) + tanh(y_{t-1} W2 + b2)."""
    layer = CustomRNN(4)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    p1, p2 = layer.cell.projection_1, layer.cell.projection_2
    w1, b1 = (keras.ops.convert_to_numpy(v) for v in (p1.kernel, p1.bias))
    w2, b2 = (keras.ops.convert_to_numpy(v) for v in (p2.kernel, p2.bias))
    state = np.zeros((2, 4), "float32")
    for t in range(5):
        state = np.tanh(x[:, t] @ w1 + b1) + np.tanh(state @ w2 + b2)
        np.testing.assert_allclose(out[:, t], state, rtol=1e-5, atol=1e-5)


def test_custom_dense_from_config_round_trip_needs_no_custom_objects():
    model = zoo.create("custom_dense_model")
    clone = keras.Model.from_config(model.get_config())
    assert isinstance(clone.get_layer("projection"), CustomDense)
    clone.set_weights(model.get_weights())
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(predict_numpy(clone, x)[0], predict_numpy(model, x)[0])


def test_mixed_api_layer_holds_a_functional_model_and_reloads(tmp_path):
    model = zoo.create("mixed_api_rnn")
    layer = model.get_layer("rnn_with_head")
    assert isinstance(layer.head, keras.Model) and layer.head.name == "classifier_head"
    path = tmp_path / "mixed.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(3, 10, 5)).astype("float32")
    np.testing.assert_array_equal(predict_numpy(loaded, x)[0], predict_numpy(model, x)[0])


# -- feature extraction ---------------------------------------------------------------------
def test_feature_extractor_on_a_zoo_model_shares_weights():
    model = zoo.create("toy_resnet")
    features = zoo.feature_extractor(model, ["stem_pool", "block_2_add"])
    assert list(features.output) == ["stem_pool", "block_2_add"]
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    out = features(x)
    assert tuple(out["block_2_add"].shape) == (2, 9, 9, 64)
    assert features.count_params() < model.count_params()
    assert all(any(w is v for v in model.weights) for w in features.weights)


def test_feature_extractor_unknown_layer_lists_the_layers():
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['hiden_1'\].*'hidden_1'"):
        zoo.feature_extractor(zoo.create("mnist_mlp"), ["hiden_1"])
    with pytest.raises(ValueError, match="layer_names must be a non-empty list"):
        zoo.feature_extractor(zoo.create("mnist_mlp"), "hidden_1")


def test_vgg19_features_every_layer_or_the_named_ones():
    every = zoo.create("vgg19_features")
    assert len(every.output) == 21  # every VGG19 (no top) layer but the input
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    named = zoo.create("vgg19_features", layer_names=["block1_conv2", "block5_pool"])
    out = named(x)
    assert tuple(out["block1_conv2"].shape) == (1, 32, 32, 64)
    assert tuple(out["block5_pool"].shape) == (1, 1, 1, 512)


def test_vgg19_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no file at"):
        zoo.create("vgg19_features", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match=r"\(224, 224, 3\) with include_top=True"):
        zoo.create("vgg19_features", include_top=True)
    # offline, "imagenet" says where to put the file instead of a bare download error
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(RuntimeError) as excinfo:
        zoo.create("vgg19_features", weights="imagenet")
    message = str(excinfo.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message


def test_vgg19_loads_a_local_weights_file(tmp_path):
    source = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg19.weights.h5"
    source.save_weights(path)
    model = zoo.create("vgg19_features", weights=str(path), layer_names=["block1_conv1"])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("block1_conv1").kernel),
        keras.ops.convert_to_numpy(source.get_layer("block1_conv1").kernel),
    )


def test_vgg19_checks_layer_names_before_building(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("VGG19 was built before layer_names was checked")

    monkeypatch.setattr(keras.applications, "VGG19", no_build)
    with pytest.raises(ValueError, match="layer_names must be a list of layer names"):
        zoo.create("vgg19_features", layer_names="block1_conv1")
