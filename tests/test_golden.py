"""Cross-backend fidelity: golden models saved once (under the backend recorded in
tests/golden/MANIFEST.json) give the same outputs within 1e-5 on every backend.

Regenerate with ``python scripts/make_golden.py`` (or ``nox -s golden``)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo._io import sha256_file
from zoo.inputs import predict_numpy
from zoo.testing import canonical_config, read_golden

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
REGENERATE = "regenerate with `python scripts/make_golden.py`"


def test_every_registered_model_has_a_golden_set():
    missing = [
        n
        for n in zoo.list_models()
        if not (GOLDEN / f"{n}.keras").exists()
        or not (GOLDEN / f"{n}.npz").exists()
        or n not in MANIFEST["models"]
    ]
    assert not missing, f"no golden files for {missing}; {REGENERATE}"
    stale = sorted(set(MANIFEST["models"]) - set(zoo.list_models()))
    assert not stale, f"golden files for unregistered models {stale}; {REGENERATE}"


def test_golden_files_are_intact():
    for entry in MANIFEST["models"].values():
        for filename, digest in entry["sha256"].items():
            actual = sha256_file(GOLDEN / filename)
            assert actual == digest, f"{filename} does not match MANIFEST.json; {REGENERATE}"


@pytest.mark.parametrize("name", sorted(MANIFEST["models"]))
def test_golden_outputs(name):
    model, inputs, expected = read_golden(name, GOLDEN)
    overrides = zoo.describe(name).small_config
    # saved under another backend, it still says what it is (Keras's own serialization)
    stamp = zoo.identity(model)
    assert stamp is not None and stamp["name"] == name, f"{name}: identity lost; {REGENERATE}"
    expected_config = {**zoo.describe(name).config, **overrides}
    assert stamp["config"] == json.loads(json.dumps(expected_config)), name
    assert canonical_config(model) == canonical_config(zoo.create(name, **overrides)), (
        f"{name}: the registered model changed since its golden file was made; {REGENERATE}"
    )
    actual = predict_numpy(model, inputs)
    assert len(actual) == len(expected)
    made_under = MANIFEST["backend"]
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(
            a,
            e,
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"{name} output {i}: {keras.backend.backend()} vs {made_under} (golden)",
        )
