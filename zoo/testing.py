"""The harness every registered model passes: the single definition of "a model works".

It uses ``keras``, ``keras.ops`` and numpy only, so that it runs under whichever
backend is active (no TensorFlow needed on JAX or PyTorch).

Example:
    >>> from zoo.testing import ModelChecker
    >>> ModelChecker("mnist_mlp").run()  # raises AssertionError on the first failure
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from zoo._io import atomic_write, sha256_file
from zoo.factory import create, describe, load_model
from zoo.inputs import predict_numpy, sample_inputs
from zoo.zoo_model import ZooModel, identity, jsonable

__all__ = ["CHECKS", "ModelChecker", "check_model", "read_golden", "write_golden"]

CHECKS = (
    "build",
    "output_shapes",
    "param_count",
    "layer_names",
    "config_round_trip",
    "keras_round_trip",
    "train_and_reload",
    "jit_predict",
    "mixed_precision",
)


def _to_snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def canonical_config(model: keras.Model) -> str:
    """The model's config as canonical JSON, so that tuples and lists compare equal."""
    return json.dumps(model.get_config(), sort_keys=True, default=repr)


def _walk_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)


#: Round trips (config, .keras, weights) compare at Keras's and keras-hub's tolerance, not
#: bit for bit: on a GPU cuDNN picks its kernels per model instance (1e-8 to 4e-8 apart
#: on an H200 for the conv autoencoders).
ROUND_TRIP_TOLERANCE = 1e-6


def _assert_same(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], what: str):
    assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(
            a,
            e,
            rtol=ROUND_TRIP_TOLERANCE,
            atol=ROUND_TRIP_TOLERANCE,
            err_msg=f"{what}: output {i} differs",
        )


class ModelChecker:
    """Runs the harness checks on one registered model.

    Args:
        name: a registered model name.
        tmp_dir: where to write saved files; a fresh temporary folder if None.
        seed: the random seed for weights and example inputs.

    Example:
        >>> ModelChecker("softmax_regression").run(["build", "train_and_reload"])
    """

    def __init__(self, name: str, tmp_dir: str | os.PathLike | None = None, seed: int = 0):
        self.spec = describe(name)
        self.name = name
        self.seed = seed
        self._tmp_dir = Path(tmp_dir) if tmp_dir is not None else None

    # -- helpers ---------------------------------------------------------------
    def build(self, seed: int | None = None) -> keras.Model:
        """A fresh model at the registered config, with weights from ``seed``."""
        keras.utils.set_random_seed(self.seed if seed is None else seed)
        return create(self.name)

    def inputs(self, model: keras.Model, batch_size: int):
        return sample_inputs(model, batch_size, seed=self.seed)

    def _path(self, filename: str) -> Path:
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix=f"zoo-{self.name}-"))
        return self._tmp_dir / filename

    def _fit_one_step(self, model: keras.Model, x, y, what: str) -> None:
        """Fits one batch; checks the loss is finite and that every trainable weight
        moved (none is left without a gradient)."""
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        assert before, f"{self.name}: has no trainable weights"
        history = model.fit(x, y, batch_size=len(keras.tree.flatten(y)[0]), verbose=0)
        loss = history.history["loss"][-1]
        assert np.isfinite(loss), f"{self.name}: {what} gave a non-finite loss {loss}"
        stuck = [
            w.path
            for w, b in zip(model.trainable_weights, before, strict=True)
            if np.array_equal(keras.ops.convert_to_numpy(w), b)
        ]
        assert not stuck, (
            f"{self.name}: {what} left these weights unchanged (no gradient?): {stuck}"
        )

    # -- the checks --------------------------------------------------------------
    def check_build(self):
        """Builds from the registered config into a functional, uncompiled zoo model that
        knows its registered name and config."""
        model = self.build()
        assert isinstance(model, ZooModel), f"{self.name}: create returned {type(model)}"
        assert {"layers", "input_layers", "output_layers"} <= set(model.get_config()), (
            f"{self.name}: its config is not a functional graph"
        )
        stamp = identity(model)
        assert stamp["name"] == self.name and stamp["config"] == jsonable(dict(self.spec.config))
        assert not model.compiled, f"{self.name}: the builder returned a compiled model"
        lines = []
        model.summary(print_fn=lambda line, **kwargs: lines.append(line))
        assert any(model.name in line for line in lines), f"{self.name}: summary lacks the name"

    def check_output_shapes(self):
        """Output structure and shapes match the symbolic outputs for batch sizes 1 and 3."""
        model = self.build()
        symbolic = keras.tree.flatten(model.outputs)
        for batch_size in (1, 3):
            outputs = predict_numpy(model, self.inputs(model, batch_size))
            assert len(outputs) == len(symbolic), (
                f"{self.name}: {len(outputs)} outputs, expected {len(symbolic)}"
            )
            for i, (out, sym) in enumerate(zip(outputs, symbolic, strict=True)):
                expected = (batch_size, *sym.shape[1:])
                ok = len(out.shape) == len(expected) and all(
                    e is None or a == e for a, e in zip(out.shape, expected, strict=True)
                )
                assert ok, f"{self.name}: output {i} has shape {out.shape}, expected {expected}"
                assert np.all(np.isfinite(out)), f"{self.name}: output {i} is not finite"

    def check_param_count(self):
        """The parameter count equals the registered one."""
        count = self.build().count_params()
        assert count == self.spec.params, (
            f"{self.name}: {count:,} parameters, registered {self.spec.params:,}"
        )

    def check_layer_names(self):
        """Every layer (nested ones too) has a chosen name, not an auto-generated one."""
        model = self.build()
        auto = []
        for layer in [model, *_walk_layers(model)]:
            pattern = re.escape(_to_snake_case(type(layer).__name__)) + r"(_\d+)?"
            if re.fullmatch(pattern, layer.name) or not layer.name:
                auto.append(f"{layer.name} ({type(layer).__name__})")
        assert not auto, f"{self.name}: layers with auto-generated names: {auto}"

    def check_config_round_trip(self):
        """``get_config`` -> ``Model.from_config`` gives the same config and, with the
        same weights, the same predictions."""
        model = self.build()
        config = model.get_config()
        clone = type(model).from_config(copy.deepcopy(config))  # from_config pops keys
        assert canonical_config(clone) == canonical_config(model), (
            f"{self.name}: from_config changed the config"
        )
        clone.set_weights(model.get_weights())
        x = self.inputs(model, 3)
        _assert_same(predict_numpy(clone, x), predict_numpy(model, x), f"{self.name} from_config")

    def check_keras_round_trip(self):
        """``.keras`` save -> load gives the same config and identical predictions."""
        model = self.build()
        path = self._path(f"{self.name}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.count_params() == model.count_params()
        assert canonical_config(loaded) == canonical_config(model), (
            f"{self.name}: load changed the config"
        )
        assert identity(loaded) == identity(model), f"{self.name}: load lost its identity"
        x = self.inputs(model, 3)
        _assert_same(predict_numpy(loaded, x), predict_numpy(model, x), f"{self.name} .keras")

    def check_jit_predict(self):
        """``predict`` with ``jit_compile=True`` matches eager predictions (on torch in
        ``zoo.performance.traceable()``, which keeps the model in one dynamo graph)."""
        from zoo.performance import traceable

        model = self.build()
        model.compile(jit_compile=True)
        x = self.inputs(model, 3)
        with traceable():
            predicted = model.predict(x, verbose=0)
        compiled = [np.asarray(o) for o in keras.tree.flatten(predicted)]
        eager = predict_numpy(model, x)
        assert len(compiled) == len(eager)
        for i, (c, e) in enumerate(zip(compiled, eager, strict=True)):
            np.testing.assert_allclose(
                c, e, rtol=1e-5, atol=1e-5, err_msg=f"{self.name}: jit output {i}"
            )

    def check_mixed_precision(self):
        """Under ``mixed_bfloat16`` the model builds, computes in bfloat16 and keeps
        float32 weights."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            model = self.build()
        finally:
            keras.config.set_dtype_policy(previous)
        policy = keras.dtype_policies.get("mixed_bfloat16")
        wrong = [
            f"{layer.name}: {layer.dtype_policy.name}"
            for layer in _walk_layers(model)
            if layer.weights and layer.dtype_policy.name != policy.name
        ]
        assert not wrong, f"{self.name}: layers not under {policy.name}: {wrong}"
        for weight in model.weights:
            assert weight.dtype == policy.variable_dtype, (
                f"{self.name}: weight {weight.path} is {weight.dtype}, "
                f"expected {policy.variable_dtype}"
            )
        outputs = keras.tree.flatten(model(self.inputs(model, 3), training=False))
        for i, out in enumerate(outputs):
            dtype = keras.backend.standardize_dtype(out.dtype)
            assert dtype == policy.compute_dtype, (
                f"{self.name}: output {i} is {dtype}, expected {policy.compute_dtype}"
            )
            values = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
            assert np.all(np.isfinite(values)), f"{self.name}: output {i} is not finite"

    def check_train_and_reload(self):
        """One ``fit`` step (MSE on every output) gives a finite loss and moves every
        trainable weight; ``save_weights`` -> ``load_weights`` into a fresh build gives
        identical predictions; and training continues after a load.

        One model is compiled once for all three, to keep the suite fast."""
        model = self.build()
        x = self.inputs(model, 3)
        rng = np.random.default_rng(self.seed + 1)
        y = [rng.standard_normal(o.shape).astype("float32") for o in predict_numpy(model, x)]
        y = keras.tree.pack_sequence_as(model.output, y)  # the model's output structure
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
        self._fit_one_step(model, x, y, "one fit step")

        path = self._path(f"{self.name}.weights.h5")
        model.save_weights(path)
        expected = predict_numpy(model, x)
        fresh = self.build(seed=self.seed + 1)
        differs = any(
            not np.array_equal(a, e) for a, e in zip(predict_numpy(fresh, x), expected, strict=True)
        )
        assert differs, f"{self.name}: a build with another seed gave the same predictions"
        fresh.load_weights(path)
        _assert_same(predict_numpy(fresh, x), expected, f"{self.name} load_weights")

        self._fit_one_step(model, x, y, "a warm-up step")  # move away from the saved weights
        model.load_weights(path)
        _assert_same(predict_numpy(model, x), expected, f"{self.name} load_weights (compiled)")
        self._fit_one_step(model, x, y, "a fit step after load_weights")

    def run(self, checks: Iterable[str] = CHECKS) -> None:
        """Runs ``checks`` (names from ``CHECKS``) in order; raises on the first failure."""
        for check in checks:
            if check not in CHECKS:
                raise ValueError(f"checks has unknown check {check!r}; allowed: {list(CHECKS)}")
            getattr(self, f"check_{check}")()


def check_model(name: str, checks: Iterable[str] = CHECKS, tmp_dir=None) -> None:
    """Runs the whole harness (or ``checks``) on the registered model ``name``."""
    ModelChecker(name, tmp_dir=tmp_dir).run(checks)


# -- golden files ---------------------------------------------------------------
# One set per model: <name>.keras (the saved model) and <name>.npz (fixed inputs
# under "x/<input name>" and the outputs they gave, flattened, under "y/<index>").
# MANIFEST.json records the backend and versions they were made with and hashes.

GOLDEN_BATCH = 3
GOLDEN_SEED = 1234


def _savez(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:  # a file object, so numpy adds no ".npz" to the name
        np.savez(f, **arrays)


def write_golden(name: str, directory: str | os.PathLike) -> dict:
    """Builds ``name`` with a fixed seed, saves it and the outputs of fixed inputs.

    Returns the manifest entry for the model. Files are written to temporary
    names and renamed, so an interrupted run never leaves a half-written file.
    """
    directory = Path(directory)
    keras.utils.set_random_seed(GOLDEN_SEED)
    model = create(name, **describe(name).small_config)
    x = sample_inputs(model, GOLDEN_BATCH, seed=GOLDEN_SEED)
    outputs = predict_numpy(model, x)
    inputs = x if isinstance(x, dict) else {model.inputs[0].name: x}
    arrays = {f"x/{k}": v for k, v in inputs.items()}
    arrays.update({f"y/{i}": v for i, v in enumerate(outputs)})
    model_path = directory / f"{name}.keras"
    data_path = directory / f"{name}.npz"
    atomic_write(model_path, model.save)
    atomic_write(data_path, lambda p: _savez(p, arrays))
    return {
        "params": model.count_params(),
        "inputs": sorted(inputs),
        "num_outputs": len(outputs),
        "sha256": {p.name: sha256_file(p) for p in (model_path, data_path)},
    }


def read_golden(name: str, directory: str | os.PathLike):
    """Returns ``(model, inputs, expected_outputs)`` for a golden set written by
    ``write_golden``; inputs are one array or a dict, as the model takes them."""
    directory = Path(directory)
    model = load_model(directory / f"{name}.keras")
    with np.load(directory / f"{name}.npz") as data:
        inputs = {k[2:]: data[k] for k in data.files if k.startswith("x/")}
        n = sum(k.startswith("y/") for k in data.files)
        expected = [data[f"y/{i}"] for i in range(n)]
    if len(inputs) == 1:
        inputs = next(iter(inputs.values()))
    return model, inputs, expected


def write_manifest(directory: str | os.PathLike, entries: dict) -> None:
    """Writes MANIFEST.json describing a golden set (backend, versions, models)."""
    directory = Path(directory)
    manifest = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "seed": GOLDEN_SEED,
        "batch_size": GOLDEN_BATCH,
        "models": entries,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / "MANIFEST.json", lambda p: p.write_text(text))
