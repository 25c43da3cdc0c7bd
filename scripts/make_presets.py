"""Writes the preset fixtures of ``tests/test_presets.py`` under ``tests/presets/``:
presets saved under one backend, with fixed inputs and the outputs they gave, which
the tests restore under every backend; and (``--catalog``) the catalog of presets
trained on real data that ships with the package (``zoo/catalog``), each with its model
card; and (``--results``) the catalog's test metrics under this backend, for
``docs/results.md``.

    KERAS_BACKEND=jax python scripts/make_presets.py
    KERAS_BACKEND=torch python scripts/make_presets.py --catalog          # all of it
    KERAS_BACKEND=torch python scripts/make_presets.py --catalog mnist_mlp_mnist
    for b in tensorflow jax torch; do
        KERAS_BACKEND=$b python scripts/make_presets.py --results
    done

- ``mnist_mlp_digits``: a real run (mnist_mlp, 2 epochs on the bundled digits) turned
  into a preset with ``zoo.preset_from_run``;
- ``custom_rnn_classifier``: custom layers (``zoo.layers``);
- ``ticket_router``: several inputs and outputs (``num_words=500``, to stay small).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import zoo
from zoo.training import train

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "presets"
CATALOG_DIR = ROOT / "zoo" / "catalog"
RESULTS_DIR = ROOT / "docs" / "results"
#: The catalog: name -> the zoo training run it is made from. toy_resnet on CIFAR-10 is
#: not in it: Keras's CIFAR-10 download is the only source and it fails offline here.
CATALOG = {
    "mnist_mlp_mnist": {"model": "mnist_mlp", "dataset": "mnist", "epochs": 2},  # the guide's
    "conv_autoencoder_mnist": {"model": "conv_autoencoder", "dataset": "mnist", "epochs": 2},
    # the tickets' words are ids below 1,100: a 1,100-word vocabulary keeps the weights 1 MB
    "ticket_router_tickets": {
        "model": "ticket_router",
        "dataset": "tickets",
        "epochs": 5,
        "overrides": {"num_words": 1100},
    },
}
BACKENDS = ("tensorflow", "jax", "torch")


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


def _command(name: str, entry: dict) -> str:
    sets = "".join(
        f" --set {k}={json.dumps(v)}" for k, v in sorted(entry.get("overrides", {}).items())
    )
    return (
        f"python -m zoo --backend {keras.backend.backend()} train {entry['model']} "
        f"--dataset {entry['dataset']} --epochs {entry['epochs']} --seed 0{sets} --out run && "
        f"python -m zoo preset run -o {name}"
    )


def model_card(name: str, entry: dict, info: dict) -> str:
    """The preset's README.md, from what it was made from and its metadata."""
    from zoo.training import recipe_for

    recipe = recipe_for(entry["model"])
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(info["metrics"].items()))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(info.get("versions", {}).items()))
    return f"""# {name}

`zoo.create("{entry["model"]}", preset="{name}")`: the zoo's `{entry["model"]}` trained on
`{entry["dataset"]}` ({zoo.describe(entry["model"]).summary})

| | |
|---|---|
| data | `zoo.datasets.load("{entry["dataset"]}")`: its training split, \
{recipe.validation_split:.0%} held out for validation; the test split for the metrics below |
| recipe | `{recipe.as_dict()["compile"]}`, batch {recipe.batch_size}, {entry["epochs"]} epochs |
| builder arguments | {json.dumps(entry.get("overrides", {}))} |
| seed | 0 |
| trained under | {info["backend"]} ({versions}) |
| parameters | {info["parameters"]:,} |

Test metrics under {info["backend"]}, as trained:

| metric | value |
|---|---:|
{metrics}

Under every backend: [docs/results.md](../../../docs/results.md) (checked again by
`tests/test_catalog.py`).

Reproduce (the same run, then the preset):

```bash
{_command(name, entry)}
```

or `KERAS_BACKEND={info["backend"]} python scripts/make_presets.py --catalog {name}`.
"""


def make_catalog(names) -> None:
    from zoo.factory import read_preset_metadata

    for name in names:
        entry = CATALOG[name]
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            train(entry["model"], dataset=entry["dataset"], epochs=entry["epochs"], seed=0,
                  overrides=entry.get("overrides"), out=run, verbose=2)  # fmt: skip
            preset = zoo.preset_from_run(run, CATALOG_DIR / name, overwrite=True)
        info = read_preset_metadata(preset)
        info["versions"] = {
            "keras": keras.__version__,
            keras.backend.backend(): __import__(keras.backend.backend()).__version__,
            "python": platform.python_version(),
        }
        (preset / "README.md").write_text(model_card(name, entry, info))
        print(f"{name}: {info['metrics']}")


def write_results() -> None:
    """This backend's test metrics of every catalog preset into docs/results/, then the
    table of docs/results.md from every backend's file there."""
    from zoo.factory import list_presets, read_preset_metadata
    from zoo.presets import evaluate_preset

    backend = keras.backend.backend()
    found = {name: evaluate_preset(name) for name in list_presets()}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{backend}.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    results = {
        b: json.loads((RESULTS_DIR / f"{b}.json").read_text())
        for b in BACKENDS
        if (RESULTS_DIR / f"{b}.json").exists()
    }
    rows = []
    for name in list_presets():
        info = read_preset_metadata(zoo.factory.preset_path(name))
        for metric in sorted(info["metrics"]):
            cells = [
                f"{results[b][name][metric]:.4f}" if name in results.get(b, {}) else "-"
                for b in BACKENDS
            ]
            rows.append(
                f"| [`{name}`](../zoo/catalog/{name}/README.md) | `{info['model']}` | "
                f"{info['dataset']} | {metric} | "
                f"{info['backend']}: {info['metrics'][metric]:.4f} | " + " | ".join(cells) + " |"
            )
    table = "\n".join(
        [
            "| preset | model | dataset | metric | as trained | TensorFlow | JAX | PyTorch |",
            "|---|---|---|---|---|---:|---:|---:|",
            *rows,
        ]
    )
    doc = ROOT / "docs" / "results.md"
    text = doc.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, rest = text.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")
    print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", nargs="*", choices=sorted(CATALOG), help="train these")
    parser.add_argument("--results", action="store_true", help="evaluate the catalog here")
    args = parser.parse_args(argv)
    if args.catalog is not None:
        make_catalog(args.catalog or sorted(CATALOG))
        return 0
    if args.results:
        write_results()
        return 0
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
