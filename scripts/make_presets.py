"""Writes the preset fixtures of ``tests/test_presets.py`` under ``tests/presets/``:
presets saved under one backend, with fixed inputs and the outputs they gave, which
the tests restore under every backend.

    KERAS_BACKEND=jax python scripts/make_presets.py

- ``mnist_mlp_digits``: a real run (mnist_mlp, 2 epochs on the bundled digits) turned
  into a preset with ``zoo.preset_from_run``;
- ``custom_rnn_classifier``: custom layers (``zoo.layers``);
- ``ticket_router``: several inputs and outputs (``num_words=500``, to stay small).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import zoo
from zoo.training import train

OUT = Path(__file__).resolve().parent.parent / "tests" / "presets"


def _write_io(model, name, preset):
    """``io.npz``: the inputs (``input`` or ``input:<name>`` per named input) and the
    outputs (``output_<i>``, flattened) they gave."""
    inputs = zoo.sample_inputs(model, batch_size=4, seed=7)
    outputs = keras.tree.flatten(model.predict(inputs, verbose=0))
    if isinstance(inputs, dict):
        arrays = {f"input:{k}": np.asarray(v) for k, v in inputs.items()}
    else:
        arrays = {"input": np.asarray(inputs)}
    arrays.update({f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)})
    np.savez(preset / "io.npz", **arrays)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train("mnist_mlp", epochs=2, out=run, verbose=0)
        preset = zoo.preset_from_run(run, OUT / "mnist_mlp_digits", overwrite=True)
        _write_io(zoo.load_preset(preset), "mnist_mlp", preset)
    for name, overrides in [("custom_rnn_classifier", {}), ("ticket_router", {"num_words": 500})]:
        keras.utils.set_random_seed(0)
        model = zoo.create(name, **overrides)
        preset = zoo.save_preset(model, OUT / name, {"note": "test fixture"}, overwrite=True)
        _write_io(model, name, preset)
    for path in sorted(OUT.iterdir()):
        size = sum(p.stat().st_size for p in path.iterdir())
        print(f"{path.name}: {size / 1e3:.0f} kB, backend {keras.backend.backend()}")
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
