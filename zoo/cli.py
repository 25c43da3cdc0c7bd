"""The ``zoo`` command line: ``python -m zoo {list,describe,summary,plot,train,evaluate,predict,
export,preset}``.

``--backend`` sets ``KERAS_BACKEND`` before Keras is first imported, so it
really takes effect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--backend {tensorflow,jax,torch}`` (for ``use_backend``)."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else Keras's default)",
    )


def use_backend(backend: str | None) -> str:
    """Sets ``KERAS_BACKEND`` to ``backend`` (if given) before Keras is first
    imported, then imports Keras and returns the backend it runs."""
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise SystemExit(f"zoo: --backend {backend} must be chosen before Keras is imported")
        os.environ["KERAS_BACKEND"] = backend
    import keras

    return keras.backend.backend()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Keras 3 model zoo.")
    add_backend_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. '*mlp*'")
    p = commands.add_parser("describe", help="show a model's registry entry as JSON")
    p.add_argument("name")
    p = commands.add_parser("summary", help="build a model and print its Keras summary")
    p.add_argument("name")
    p = commands.add_parser("plot", help="write a model's diagram (needs graphviz)")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True, help="image file, e.g. model.png")
    p = commands.add_parser(
        "train",
        help="train a model (default: mnist_mlp on the bundled digits, offline)",
        description="Trains a model and leaves a run directory (model.keras, config.json, "
        "history.csv, metrics.json, curves.png). Run the same command again after an "
        "interruption to resume from the last completed epoch.",
    )
    p.add_argument("name", nargs="?", default="mnist_mlp", help="model (default: mnist_mlp)")
    p.add_argument("--dataset", help="dataset (default: the model's offline one)")
    p.add_argument("--epochs", type=int, help="epochs (default: the model's recipe)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the model's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    p.add_argument(
        "--out", help="run directory (default: runs/<model>_<dataset>_<backend>_s<seed>)"
    )
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.add_argument(
        "--fast",
        choices=("auto", "on", "off"),
        default="auto",
        help="the backend's speed settings (XLA and steps_per_execution on TensorFlow, "
        "torch.compile on PyTorch; see zoo.performance): auto (default), on, or off for "
        "Keras's plain fit; they do not change the results",
    )
    p.add_argument(
        "--distribute",
        choices=("data",),
        help="data: train data-parallel over all local devices (jax: keras.distribution."
        "DataParallel; tensorflow: MirroredStrategy); see docs/distribute.md",
    )
    p = commands.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("run")
    p.add_argument("--dataset", help="another dataset the model's recipe takes")
    p = commands.add_parser("predict", help="run a finished run's model on a .npy file")
    p.add_argument("run")
    p.add_argument("input", help="input .npy file (one array, batch first)")
    p.add_argument("-o", "--output", required=True, help="output .npy file")
    p = commands.add_parser(
        "export",
        help="export a finished run's model (SavedModel or ONNX), reloaded and checked",
        description="Exports RUN/model.keras with Keras's model.export, loads the artifact "
        "back (tf.saved_model.load or onnxruntime) and checks its outputs against the "
        "model's within 1e-4 before moving it into place. See docs/export.md for which "
        "format works from which backend.",
    )
    p.add_argument("run")
    p.add_argument("--format", choices=("savedmodel", "onnx"), default="savedmodel")
    p.add_argument("-o", "--output", required=True, help="artifact path (folder or .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing artifact")
    p = commands.add_parser(
        "preset",
        help="turn a finished run into a preset (zoo.create(name, preset=DIR))",
    )
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="preset folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing preset")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    use_backend(args.backend)
    import zoo  # imported only now, after the backend is set

    try:
        if args.command == "list":
            for name in zoo.list_models(args.pattern):
                print(f"{name:24s} {zoo.describe(name).summary}")
        elif args.command == "describe":
            print(json.dumps(zoo.describe(args.name).as_dict(), indent=2, default=str))
        elif args.command == "summary":
            import keras

            model = zoo.create(args.name)
            model.summary()
            print(f"backend: {keras.backend.backend()}, parameters: {model.count_params():,}")
        elif args.command == "plot":
            from zoo.plotting import plot

            print(f"wrote {plot(args.name, args.output)}")
        elif args.command == "train":
            return _train(args)
        elif args.command == "evaluate":
            from zoo.training import evaluate

            print(json.dumps(evaluate(args.run, args.dataset), indent=2))
        elif args.command == "predict":
            _predict(args)
        elif args.command == "export":
            from zoo.export import export

            report = export(args.run, args.output, args.format, overwrite=args.overwrite)
            print(
                f"wrote {report['path']} ({args.format}); reloaded outputs match the model's "
                f"within {report['max_abs_diff']:.1e}"
            )
        elif args.command == "preset":
            from zoo.presets import preset_from_run

            print(
                f"wrote preset {preset_from_run(args.run, args.output, overwrite=args.overwrite)}"
            )
    except (ValueError, RuntimeError, FileExistsError) as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    return 0


def _train(args) -> int:
    import keras

    from zoo import training

    dataset = args.dataset or training.recipe_for(args.name).datasets[0]
    out = args.out or training.default_run_dir(args.name, dataset, args.seed)
    print(f"training {args.name} on {dataset} with backend {keras.backend.backend()} -> {out}")
    try:
        metrics = training.train(
            args.name,
            dataset=dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            out=out,
            verbose=2 if args.quiet else "auto",
            fast=args.fast,
            distribute=args.distribute,
        )
    except KeyboardInterrupt:
        print(
            f"\nzoo: interrupted; the last completed epoch is checkpointed in {out}/checkpoint; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")}
    print(f"test metrics: {shown}")
    print(f"run directory: {out} (model.keras, config.json, history.csv, metrics.json, curves.png)")
    return 0


def _predict(args) -> None:
    from pathlib import Path

    import keras
    import numpy as np

    import zoo
    from zoo._io import atomic_write

    model_path = Path(args.run) / "model.keras"
    if not model_path.exists():
        raise ValueError(f"run {args.run!r} has no model.keras (is it a finished run?)")
    try:
        inputs = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"input {args.input!r} is not a readable .npy file: {err}") from None
    model = keras.saving.load_model(model_path)
    zoo.check_inputs(model, inputs)
    outputs = model.predict(inputs, verbose=0)
    output = atomic_write(args.output, lambda tmp: np.save(tmp, outputs))
    print(f"wrote {output}: {outputs.shape} {outputs.dtype}")
