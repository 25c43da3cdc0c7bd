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
from pathlib import Path

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


def _add_overwrite(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace -o if it exists and is {kind} (anything else is refused)",
    )


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=("highest", "tf32"),
        help="float32 matrix precision on a GPU (zoo.set_float32_precision): highest (full "
        "float32) or tf32 (faster, about 1e-3 off); default: the backend's own",
    )


#: ``zoo train``'s training choices (zoo.control): (flag, attribute, type, help)
_CONTROL_FLAGS = (
    ("--optimizer", "optimizer", str, "a keras.optimizers name (adam, adamw, sgd, rmsprop, "
     "nadam, adamax, adagrad, lion); default: the model's recipe"),
    ("--lr", "learning_rate", float, "the learning rate (after the warmup); default: the recipe's"),
    ("--schedule", "schedule", str, "constant (default) or cosine (decays to 0 over the run; "
     "keras.optimizers.schedules.CosineDecay)"),
    ("--warmup-epochs", "warmup_epochs", int, "a linear warmup from 0 over this many epochs"),
    ("--early-stopping", "early_stopping", int, "stop after PATIENCE epochs without a better "
     "validation loss (keras.callbacks.EarlyStopping)"),
    ("--reduce-lr-on-plateau", "reduce_lr_on_plateau", int, "divide the learning rate by 10 "
     "after PATIENCE epochs without a better validation loss (ReduceLROnPlateau)"),
)  # fmt: skip


def _add_control(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("training choices (recorded in config.json; see docs/training.md)")
    for flag, dest, kind, help_ in _CONTROL_FLAGS:
        metavar = "PATIENCE" if "PATIENCE" in help_ else None
        group.add_argument(flag, dest=dest, type=kind, help=help_, metavar=metavar)
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a builder argument of the model, e.g. --set hidden_units=128,128 --set "
        "dropout=0.2 (values read as JSON, a comma list as a list); repeatable",
    )
    group.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="a JSON object of builder arguments (--set entries override it)",
    )


def overrides_from(config: str | None, settings: list[str]) -> dict:
    """The model overrides of ``-c FILE`` and ``--set KEY=VALUE`` (later ones win)."""
    overrides = {}
    if config is not None:
        try:
            overrides = json.loads(Path(config).read_text())
        except OSError as e:
            raise ValueError(f"-c {config!r}: can't read it ({e.strerror or e})") from None
        except ValueError as e:
            raise ValueError(f"-c {config!r}: not JSON ({e}); write a JSON object") from None
        if not isinstance(overrides, dict):
            raise ValueError(
                f"-c {config!r}: holds a {type(overrides).__name__}, not a JSON object of "
                "builder arguments"
            )
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"--set {setting!r}: write KEY=VALUE, e.g. --set dropout=0.2")
        overrides[key.strip()] = _value(text.strip())
    return overrides


def _value(text: str):
    """``--set``'s value: JSON (numbers, true/false/null, lists), a comma list as a list
    of such values, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [_value(part.strip()) for part in text.split(",")]
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Keras 3 model zoo.")
    add_backend_argument(parser)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. '*mlp*'")
    p = commands.add_parser("describe", help="show a model's registry entry as JSON")
    p.add_argument("name")
    p = commands.add_parser("summary", help="build a model and print its Keras summary")
    p.add_argument("name")
    p = commands.add_parser(
        "inputs",
        help="write valid sample inputs for a model (.npy, or .npz by input name)",
        description="Writes sample inputs for a registered model or a run's model "
        "(zoo.sample_inputs): a .npy array for a one-input model, an .npz of arrays by "
        "input name otherwise; `zoo predict` takes either.",
    )
    p.add_argument("name", help="a registered model name, or a finished run's directory")
    p.add_argument("-o", "--output", required=True, help="output file (written as given)")
    p.add_argument("--batch-size", type=int, default=3, help="how many samples (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the values")
    _add_overwrite(p, "a numpy file")
    p = commands.add_parser("plot", help="write a model's diagram (needs graphviz)")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True, help="image file, e.g. model.png")
    _add_overwrite(p, "an image file")
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
        "DataParallel; tensorflow: MirroredStrategy) or over the processes of --processes, "
        "torchrun or srun (torch: DistributedDataParallel; jax: jax.distributed; "
        "tensorflow: MultiWorkerMirroredStrategy); see docs/distribute.md",
    )
    _add_precision(p)
    p.add_argument(
        "--dtype-policy",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Keras's dtype policy for the model (default float32): mixed_bfloat16 or "
        "mixed_float16 compute in 16 bits with float32 weights (mixed_float16 scales the "
        "loss); recorded in the run's config",
    )
    _add_control(p)
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files under RUN/tensorboard (every backend; needs the "
        "tensorboard package): tensorboard --logdir RUN/tensorboard",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="with --distribute data: start N local worker processes (zoo.launch); only "
        "process 0 writes the run directory and prints its progress",
    )
    p = commands.add_parser(
        "tune",
        help="search a model's hyperparameters with KerasTuner; the best trial as a preset",
        description="Random search over the space declared beside the model's recipe, each "
        "trial a zoo training run; the same command again resumes a stopped search "
        "(docs/training.md#tuning).",
    )
    p.add_argument("name", help="model with a search space (mnist_mlp, toy_resnet, ticket_router)")
    p.add_argument("--dataset", help="dataset (default: the model's offline one)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the model's recipe)")
    p.add_argument("--max-trials", type=int, default=3, help="trials in all (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of each trial")
    p.add_argument(
        "--out", help="tune directory (default: tune/<model>_<dataset>_<backend>_s<seed>)"
    )
    p = commands.add_parser(
        "runs", help="list the runs under a folder: model, dataset, epochs, metrics, state"
    )
    p.add_argument("folder", nargs="?", default="runs", help="where to look (default: runs)")
    p.add_argument("--plot", metavar="FILE", help="also overlay their loss curves in this PNG")
    _add_overwrite(p, "an image file")
    p = commands.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("run")
    p.add_argument("--dataset", help="another dataset the model's recipe takes")
    _add_precision(p)
    p = commands.add_parser(
        "predict",
        help="run a finished run's model on a .npy file",
        description="Runs RUN/model.keras on INPUT and writes its outputs to exactly the "
        "path given with -o: one array (numpy.save format) for a one-output model, or an "
        ".npz of arrays by output name. NaN, inf and complex inputs are refused.",
    )
    p.add_argument("run")
    p.add_argument(
        "input",
        help="input file: a .npy array (batch first), or an .npz of arrays by input name "
        "for a model with several inputs",
    )
    p.add_argument("-o", "--output", required=True, help="output file (written as given)")
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="predict even when the input holds NaN or inf values, or the outputs do",
    )
    _add_overwrite(p, "a numpy file")
    _add_precision(p)
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
    _add_overwrite(p, "a zoo export of the same format")
    p = commands.add_parser(
        "preset",
        help="turn a finished run into a preset (zoo.create(name, preset=DIR))",
    )
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="preset folder")
    _add_overwrite(p, "a zoo preset folder")
    return parser


def _one_line(err: BaseException, args=None) -> str:
    """The error as one line: an OSError names its file and what went wrong; a missing
    backend says what to install; memory that can't be had says how much was asked."""
    if isinstance(err, OSError) and err.strerror and not isinstance(err, FileExistsError):
        where = f"{err.filename!r}: " if err.filename else ""
        text = f"{where}{err.strerror}"
    elif isinstance(err, ImportError):
        missing = getattr(err, "name", None) or str(err)
        backend = os.environ.get("KERAS_BACKEND", "")
        text = f"{missing!r} is not installed ({err})" + (
            f"; --backend {backend} needs it: pip install 'keras-model-zoo[{backend}]'"
            if str(missing).split(".")[0] == backend and backend in BACKENDS
            else "; install it, or choose another --backend"
        )
    elif isinstance(err, MemoryError):
        command = getattr(args, "command", "the command")
        text = f"{command}: not enough memory for what was asked ({err or 'MemoryError'}); "
        text += "ask for fewer samples (--batch-size) or free memory"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    code = _main(argv)
    if argv is None and code in (130, 143):
        # the command line's process ends after a signal: at once, its files all written
        # or renamed already, without the backends' exit handlers, during which (as
        # Python restores the default handlers) a further Ctrl-C raised inside them or
        # killed the process
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train" and args.processes != 1:
            return _launch(args)  # before Keras starts: the launcher only starts workers
        use_backend(args.backend)
        return _run(args)
    except (ValueError, RuntimeError, OSError, MemoryError, ImportError) as err:  # expected
        if args.debug:
            raise
        print(f"zoo: error: {_one_line(err, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run (importing, loading): nothing is written
        print("\nzoo: stopped by Ctrl-C", file=sys.stderr)
        return 130


def _run(args) -> int:
    import zoo  # imported only now, after the backend is set

    if getattr(args, "precision", None):
        zoo.set_float32_precision(args.precision)

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
    elif args.command == "inputs":
        _inputs(args)
    elif args.command == "plot":
        from zoo.plotting import plot

        output = _output_path(args.output, "image", args.overwrite)
        print(f"wrote {plot(args.name, output)}")
    elif args.command == "train":
        return _train(args)
    elif args.command == "runs":
        _runs(args)
    elif args.command == "tune":
        _tune(args)
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

        print(f"wrote preset {preset_from_run(args.run, args.output, overwrite=args.overwrite)}")
    return 0


def _launch(args) -> int:
    """``train --processes N``: N workers running the same train command (zoo.launch)."""
    from zoo import launch

    if args.processes < 1:
        raise ValueError(f"processes must be an int >= 1, got {args.processes}")
    if args.distribute != "data":
        raise ValueError(
            f"--processes {args.processes} needs --distribute data (the workers share every "
            "batch); add it"
        )
    started = [name for name in launch.WORKER_VARIABLES if name in os.environ]
    if started:
        raise ValueError(
            f"--processes starts its own workers, but this process is one already ({started[0]} "
            "is set, e.g. by torchrun or srun); leave --processes out under a launcher"
        )
    worker = ["--debug"] if args.debug else []
    worker += ["train", args.name, "--seed", str(args.seed), "--fast", args.fast]
    for flag, value in (
        ("--dataset", args.dataset),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
        ("--out", args.out),
    ):
        if value is not None:
            worker += [flag, str(value)]
    for flag, value in (("--precision", args.precision), ("--dtype-policy", args.dtype_policy)):
        if value is not None:
            worker += [flag, value]
    for flag, dest, _, _ in _CONTROL_FLAGS:
        if getattr(args, dest) is not None:
            worker += [flag, str(getattr(args, dest))]
    for setting in args.set:
        worker += ["--set", setting]
    if args.tensorboard:
        worker += ["--tensorboard"]
    if args.config is not None:
        worker += ["--config", args.config]
    worker += ["--distribute", "data"] + (["--quiet"] if args.quiet else [])
    backend = args.backend or os.environ.get("KERAS_BACKEND") or use_backend(None)
    return launch.launch(worker, args.processes, backend)


def _train(args) -> int:
    import keras

    from zoo import training
    from zoo.launch import process_index_from_env

    dataset = training.recipe_for(args.name).datasets[0] if args.dataset is None else args.dataset
    out = training.default_run_dir(args.name, dataset, args.seed) if args.out is None else args.out
    chief = process_index_from_env() == 0  # the other workers of a multi-process run are quiet
    overrides = overrides_from(args.config, args.set)  # a bad -c or --set: before any output
    if chief:
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
            dtype_policy=args.dtype_policy,
            overrides=overrides,
            tensorboard=args.tensorboard,
            control={
                dest: getattr(args, dest)
                for _, dest, _, _ in _CONTROL_FLAGS
                if getattr(args, dest) is not None
            },
        )
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt, out)
    if chief:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")}
        print(f"test metrics: {shown}")
        files = "model.keras, config.json, history.csv, metrics.json, curves.png"
        print(f"run directory: {out} ({files})")
    return 0


def _interrupted(interrupt: KeyboardInterrupt, out) -> int:
    """One line: what was kept of the run at ``out`` and how to go on; the exit code."""
    from zoo.interrupts import RunInterrupted
    from zoo.rundir import RunDir

    run = RunDir(out)
    epochs = run.checkpointed_epochs()
    what = str(interrupt) if isinstance(interrupt, RunInterrupted) else "Ctrl-C"
    if epochs:
        state = f"{epochs} completed epoch(s) are checkpointed in {str(run.checkpoint_dir)!r}"
        todo = "run the same command again to resume"
    else:
        state = "no epoch had completed, so there is nothing to resume"
        todo = "run the same command again to start it"
    print(f"\nzoo: stopped by {what}; {state}; {todo}", file=sys.stderr)
    return interrupt.exit_code if isinstance(interrupt, RunInterrupted) else 130


def _save_arrays(path: str, arrays) -> None:
    """Writes one array (numpy.save) or a dict of arrays (numpy.savez) to exactly
    ``path``, atomically (nothing is left at ``path`` or beside it on failure)."""
    import numpy as np

    from zoo._io import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: numpy adds no suffix to the name
            if isinstance(arrays, dict):
                np.savez(f, **arrays)
            else:
                np.save(f, arrays)

    atomic_write(path, write)


def _output_path(value: str, kind: str, overwrite: bool, sources=()):
    """The checked ``-o`` file: never a folder, a link, a source or (``zoo.targets``) an
    existing file of another kind; an existing one only with ``--overwrite``."""
    from pathlib import Path

    from zoo.targets import check_target

    output = Path(value)
    if output.is_dir() and not output.is_symlink():
        raise ValueError(f"output {value!r} is a directory; give a file path with -o")
    if not output.parent.is_dir():
        raise ValueError(f"output {value!r}: folder {str(output.parent)!r} does not exist")
    return check_target(output, kind, overwrite=overwrite, sources=sources)


def _tune(args) -> None:
    from zoo.tune import tune

    found = tune(
        args.name,
        dataset=args.dataset,
        epochs=args.epochs,
        max_trials=args.max_trials,
        seed=args.seed,
        out=args.out,
    )
    print(f"{found['trials']} trial(s); best {found['objective']} {found['score']:.4g} with "
          f"{found['hyperparameters']}")  # fmt: skip
    shown = {k: round(v, 4) for k, v in found["test_metrics"].items()}
    print(f"test metrics: {shown}")
    print(f"best preset: {found['preset']} (zoo.create({args.name!r}, preset=...))")


def _runs(args) -> None:
    from zoo._io import atomic_write
    from zoo.tracking import find_runs, plot_runs, runs_table

    root = Path(args.folder)
    plot = None if args.plot is None else _output_path(args.plot, "image", args.overwrite)
    runs = find_runs(root)
    if not runs:
        print(f"no runs under {str(root)!r} (a run is a folder with a config.json)")
        return
    print(runs_table(runs, root))
    if plot is not None:
        atomic_write(plot, plot_runs(runs, root))
        print(f"wrote {plot}")


def _inputs(args) -> None:
    from pathlib import Path

    import zoo

    source = (args.name,) if Path(args.name).is_dir() else ()
    if not source:
        zoo.describe(args.name)  # a one-line error for an unknown name, before the output's
    output = _output_path(args.output, "arrays", args.overwrite, source)
    if Path(args.name).is_dir():
        from zoo.rundir import RunDir

        _, _, model = RunDir(args.name).finished_model()
    else:
        model = zoo.create(args.name)
    arrays = zoo.sample_inputs(model, args.batch_size, args.seed)
    _save_arrays(output, arrays)
    shapes = arrays if isinstance(arrays, dict) else {"": arrays}
    print(
        f"wrote {output}: "
        + ", ".join(f"{k} {a.shape} {a.dtype}".strip() for k, a in shapes.items())
    )


def _read_inputs(path: str):
    """The arrays of a .npy file (one array) or an .npz file (arrays by input name)."""
    import zipfile

    import numpy as np

    from zoo._io import file_kind

    if file_kind(path) is None:
        raise ValueError(
            f"input {path!r} is not a numpy .npy or .npz file (it lacks numpy's header: a "
            "text or other file?); write it with numpy.save"
        )
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return {k: loaded[k] for k in loaded.files}
            return loaded
    except (ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"input {path!r} is not a numpy .npy or .npz file of plain arrays "
            f"({type(err).__name__}: {str(err)[:100]}); write it with numpy.save"
        ) from None


def _check_values(path: str, inputs, allow_nonfinite: bool) -> None:
    """Refuses complex inputs, and NaN or inf unless ``allow_nonfinite``."""
    import numpy as np

    arrays = inputs if isinstance(inputs, dict) else {"": inputs}
    for key, array in arrays.items():
        what = f"input {path!r}" + (f" array {key!r}" if key else "")
        if np.iscomplexobj(array):
            raise ValueError(f"{what} is complex ({array.dtype}); the model takes real numbers")
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{what} holds {array.dtype.name} values (numpy dtype {array.dtype.str!r}); "
                "the model takes numbers: write it as a float or int array"
            )
        if array.dtype.kind == "f" and not allow_nonfinite:
            bad = ~np.isfinite(array)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{what} holds {int(bad.sum())} NaN or inf value(s), the first at index "
                    f"{first}; clean the data, or pass --allow-nonfinite to predict anyway"
                )


def _check_outputs(model_path, outputs, n: int) -> None:
    """Refuses outputs that hold NaN or inf (finite inputs can overflow), naming how many
    rows; nothing is written."""
    import numpy as np

    bad = np.zeros(n, bool)
    for o in outputs:
        if o.dtype.kind in "fc" and o.size:
            bad |= ~np.isfinite(o.reshape(n, -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the outputs of {str(model_path)!r} hold NaN or inf in {int(bad.sum())} of {n} "
            f"row(s), the first row {int(np.argmax(bad))} (inputs too large for the model?); "
            "nothing was written; pass --allow-nonfinite to write them anyway"
        )


def _predict(args) -> None:
    from pathlib import Path

    import keras
    import numpy as np

    import zoo
    from zoo.rundir import RunDir

    output = _output_path(args.output, "arrays", args.overwrite, (args.run, args.input))
    run = RunDir(args.run)
    run.finished_record()
    if not Path(args.input).is_file():
        raise ValueError(f"input {args.input!r} does not exist")
    inputs = _read_inputs(args.input)
    _check_values(args.input, inputs, args.allow_nonfinite)
    model = zoo.load_model(run.model_path, compile=False)
    zoo.check_inputs(model, inputs)
    n = len(keras.tree.flatten(inputs)[0])
    names = list(model.output_names)  # the output layers' names, in output order
    if n == 0:  # Keras's predict can't run on no samples; the outputs are empty arrays
        outputs = [
            np.zeros((0, *(0 if d is None else d for d in o.shape[1:])), "float32")
            for o in model.outputs
        ]
    else:
        outputs = [np.asarray(o) for o in keras.tree.flatten(zoo.predict(model, inputs))]
    if not args.allow_nonfinite:
        _check_outputs(run.model_path, outputs, n)

    _save_arrays(
        output, outputs[0] if len(outputs) == 1 else dict(zip(names, outputs, strict=True))
    )
    shapes = ", ".join(
        f"{name} {o.shape} {o.dtype}" for name, o in zip(names, outputs, strict=True)
    )
    print(f"wrote {output}: {shapes}")
