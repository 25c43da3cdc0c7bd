"""Training: each model's default recipe, and runs that lose nothing.

``train(model_name, dataset=..., epochs=..., out=...)`` builds the model, trains
it with Keras's ``fit`` and leaves a run directory::

    RUN/config.json     what was asked for (model, overrides, dataset, epochs, seed)
    RUN/history.csv     one row per completed epoch
    RUN/checkpoint/     Keras's BackupAndRestore state, while the run is unfinished
    RUN/model.keras     the trained model
    RUN/metrics.json    test metrics, backend, versions, seed, wall time
    RUN/curves.png      loss and metric curves

Every file is written under a temporary name and renamed, so none is ever
half-written. The checkpoint is taken at the end of every epoch: a run killed at
any point (even SIGKILL) and started again with the same arguments resumes from
its last completed epoch and ends with the same metrics as an uninterrupted run,
because the batches of each epoch are shuffled from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

import zoo
from zoo import _validation as check
from zoo import datasets, performance
from zoo._io import atomic_write
from zoo.distribute import distribution as _distribution
from zoo.registry import create, get_spec

__all__ = ["RECIPES", "Recipe", "TrainingError", "default_run_dir", "evaluate", "fit", "train"]


class TrainingError(RuntimeError):
    """A run that could not go on (a NaN loss, a run directory of another run)."""


def _sparse_classifier(model):
    model.compile(
        optimizer=keras.optimizers.RMSprop(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _autoencoder(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")


def _binary(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )


def _linear(model):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")


def _tickets(model):
    zoo.compile_ticket_router(model, by="name")


def _resnet(model):
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


@dataclass(frozen=True)
class Recipe:
    """How a model trains by default.

    Attributes:
        compile: ``f(model)`` compiling it (optimizer, losses, metrics).
        datasets: the datasets it can train on, the default first.
        epochs: default epochs per dataset.
        batch_size: default batch size.
        targets_are_inputs: train to reconstruct the inputs (autoencoders).
        validation_split: share of the training data held out for validation.
        dataset_kwargs: extra arguments per dataset (e.g. a sample shape).
    """

    compile: Callable[[keras.Model], None]
    datasets: tuple[str, ...]
    epochs: dict[str, int]
    batch_size: int = 64
    targets_are_inputs: bool = False
    validation_split: float = 0.2
    dataset_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


_IMAGES = {"mnist": {"shape": (28, 28, 1)}, "digits": {"shape": (28, 28, 1)}}
RECIPES: dict[str, Recipe] = {
    "mnist_mlp": Recipe(_sparse_classifier, ("digits", "mnist"), {"digits": 30, "mnist": 2}),
    "conv_autoencoder": Recipe(
        _autoencoder, ("digits", "mnist"), {"digits": 10, "mnist": 2}, 64, True, 0.2, _IMAGES
    ),
    "conv_autoencoder_nested": Recipe(
        _autoencoder, ("digits", "mnist"), {"digits": 10, "mnist": 2}, 64, True, 0.2, _IMAGES
    ),
    "ticket_router": Recipe(_tickets, ("tickets",), {"tickets": 5}, 32),
    "toy_resnet": Recipe(_resnet, ("cifar10",), {"cifar10": 1}, 64),
    "lstm_classifier": Recipe(_binary, ("sequences",), {"sequences": 10}, 32),
    "linear_regression": Recipe(_linear, ("study_hours",), {"study_hours": 300}, 32, False, 0.0),
}
DEFAULT_MODEL = "mnist_mlp"


def recipe_for(model_name: str) -> Recipe:
    get_spec(model_name)  # a clear error for an unknown name
    if model_name not in RECIPES:
        raise ValueError(
            f"model {model_name!r} has no training recipe; models with one: {sorted(RECIPES)}"
        )
    return RECIPES[model_name]


def default_run_dir(model_name: str, dataset: str, seed: int) -> Path:
    """``runs/<model>_<dataset>_<backend>_s<seed>``: the same command finds the same
    directory again, so running it again resumes it."""
    return Path("runs") / f"{model_name}_{dataset}_{keras.backend.backend()}_s{seed}"


# -- files that are never half-written ----------------------------------------------------
def _write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def _read_history(path: Path) -> list[dict[str, float]]:
    """The rows of history.csv: ``epoch`` as an int (0-based), metrics as floats."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: int(v) if k == "epoch" else float(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


class _History(keras.callbacks.Callback):
    """Keeps RUN/history.csv: one row per completed epoch, rewritten atomically, so a
    resumed run never repeats or loses a row (Keras's CSVLogger appends in place)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in _read_history(self.path) if r["epoch"] < epoch]
        rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        _write_history(self.path, rows)


class _StopOnNaN(keras.callbacks.Callback):
    """Stops the run at the first non-finite batch loss by raising, so that nothing
    after it runs: the NaN epoch is neither written to history.csv nor checkpointed,
    and the checkpoint of the last good epoch stays. (Keras's TerminateOnNaN lets the
    epoch end, and BackupAndRestore would then save the NaN weights and, at the end
    of training, delete the checkpoint.)"""

    # Keras may then run this check on a worker thread, so that reading the loss does
    # not stall each step; an error raised there stops fit at the next batch or at the
    # end of the epoch, before the epoch's own callbacks (history, checkpoint) run.
    async_safe = True

    def __init__(self, run: Path):
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(
                f"the loss became {'NaN' if math.isnan(float(loss)) else 'infinite'} at epoch "
                f"{self.epoch + 1}, batch {batch + 1}; "
                f"training stopped (the last good epoch is checkpointed in "
                f"{self.run / 'checkpoint'}; lower the learning rate or check the data)"
            )


class _SetEpoch(keras.callbacks.Callback):
    def __init__(self, set_epoch):
        super().__init__()
        self.set_epoch = set_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.set_epoch(epoch)


# -- data ------------------------------------------------------------------------------------
def _process_shard(info):
    """``(index, count)`` of this process when several processes share each batch."""
    if info and info["processes"] > 1:
        return info["process_index"], info["processes"]
    return None


def _trim(data, multiple):
    """``data`` without its last ``n % multiple`` samples, and how many were dropped."""
    n = len(keras.tree.flatten(data[0])[0])
    dropped = n % multiple
    if not dropped:
        return data, 0
    return keras.tree.map_structure(lambda a: a[: n - dropped], data), dropped


def _split(data, fraction):
    """Holds out the last ``fraction`` of ``data`` (arrays or dicts), as Keras's
    ``validation_split`` does."""
    n = len(keras.tree.flatten(data[0])[0])
    cut = n - round(n * fraction)
    head = keras.tree.map_structure(lambda a: a[:cut], data)
    tail = keras.tree.map_structure(lambda a: a[cut:], data)
    return head, tail


def _check_dataset(model_name: str, recipe: Recipe, dataset: str) -> str:
    if dataset not in recipe.datasets:
        raise ValueError(
            f"dataset must be one of {list(recipe.datasets)} for model {model_name!r}, "
            f"got {dataset!r}"
        )
    return dataset


def load_data(model_name: str, dataset: str):
    """Returns ``(train, test)`` pairs of ``(x, y)`` for ``model_name`` on ``dataset``."""
    recipe = recipe_for(model_name)
    _check_dataset(model_name, recipe, dataset)
    data = datasets.load(dataset, **recipe.dataset_kwargs.get(dataset, {}))
    if dataset == "study_hours":  # the tutorial's 9 points: no test split
        data = (data, data)
    (x_train, y_train), (x_test, y_test) = data
    if recipe.targets_are_inputs:
        y_train, y_test = x_train, x_test
    return (x_train, y_train), (x_test, y_test)


# -- training --------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    versions = {"keras": keras.__version__, "zoo": zoo.__version__, "numpy": np.__version__}
    versions["python"] = platform.python_version()
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module:
        versions[backend] = __import__(module).__version__
    return versions


def _plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [k for k in history[0] if k != "epoch" and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    epochs = [int(r["epoch"]) + 1 for r in history]
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(epochs, [r[name] for r in history], marker="o", label="train")
        if f"val_{name}" in history[0]:
            ax.plot(epochs, [r[f"val_{name}"] for r in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)


def fit(
    model: keras.Model,
    x,
    y,
    *,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    validation_data=None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    fast: str = "auto",
    shard: tuple[int, int] | None = None,
) -> tuple[keras.callbacks.History, performance.Settings]:
    """Fits a compiled ``model`` on in-memory ``(x, y)`` the way ``train`` does, and
    returns Keras's ``History`` and the speed settings used.

    Each epoch's batches come in an order drawn from ``(seed, epoch)`` alone, so a run
    resumed by ``keras.callbacks.BackupAndRestore`` sees the same batches as an
    uninterrupted one. ``fast`` picks the backend's speed settings (see
    ``zoo.performance``): ``"auto"`` (the default), ``"on"`` (every setting, including
    compiling the torch step for short runs) or ``"off"`` (Keras's plain ``fit``). They
    change the speed, not the batches or the math. ``shard=(index, count)`` feeds
    only this process's share of every batch (multi-host data parallelism).
    """
    steps_per_epoch = math.ceil(len(keras.tree.flatten(x)[0]) / batch_size)
    settings = performance.settings_for(fast, steps_per_epoch, epochs, model)
    data, set_epoch = performance.batches(x, y, batch_size, seed, settings, shard)
    performance.apply(model, settings, batch_size)
    history = model.fit(
        data,
        shuffle=False,  # the batches are already in their (seed, epoch) order; Keras would
        # otherwise reorder them from Python's global random state, which a resume changes
        validation_data=validation_data,
        validation_batch_size=batch_size,
        epochs=epochs,
        callbacks=[_SetEpoch(set_epoch), *(callbacks or [])],
        verbose=verbose,
    )
    return history, settings


def train(
    model_name: str = DEFAULT_MODEL,
    dataset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    overrides: dict[str, Any] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    fast: str = "auto",
    distribute: str | None = None,
) -> dict[str, Any]:
    """Trains ``model_name`` on ``dataset`` and returns its metrics (also in
    ``RUN/metrics.json``). Run it again with the same arguments after an
    interruption and it resumes from the last completed epoch.

    Args:
        model_name: a registered model with a recipe (see ``RECIPES``).
        dataset: one of the recipe's datasets; its first (offline) one by default.
        epochs: total epochs; the recipe's default for the dataset if None.
        batch_size: the recipe's default if None.
        seed: seeds the weights and the batch order.
        out: the run directory; ``default_run_dir(...)`` if None.
        verbose: Keras's progress setting (``"auto"`` shows the progress bar).
        overrides: builder arguments for the model.
        callbacks: more Keras callbacks, run before the run's own.
        fast: the backend's speed settings, ``"auto"``, ``"on"`` or ``"off"`` (see
            ``fit`` and ``zoo.performance``); they do not change the results.
        distribute: ``"data"`` to train data-parallel over all local devices (JAX,
            TensorFlow; see ``zoo.distribute``), None for one device.

    Raises:
        TrainingError: on a NaN loss, or when ``out`` holds another or a finished run.

    Example:
        >>> from zoo.training import train
        >>> metrics = train("mnist_mlp", epochs=1, out="/tmp/run")  # doctest: +SKIP
    """
    recipe = recipe_for(model_name)
    dataset = _check_dataset(model_name, recipe, dataset or recipe.datasets[0])
    epochs = check.positive_int("epochs", recipe.epochs[dataset] if epochs is None else epochs)
    batch_size = check.positive_int("batch_size", batch_size or recipe.batch_size)
    check.one_of("fast", fast, performance.MODES)
    scope = _distribution(distribute, batch_size)  # errors before any file is written
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    run = Path(out) if out is not None else default_run_dir(model_name, dataset, seed)
    config = {
        "model": model_name,
        "overrides": overrides or {},
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "backend": keras.backend.backend(),
    }
    config_path = run / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != json.loads(json.dumps(config, default=str)):
            raise TrainingError(
                f"out {str(run)!r} holds another run ({previous}); "
                f"choose another --out or repeat that run's arguments to resume it"
            )
        if (run / "metrics.json").exists():
            raise TrainingError(f"out {str(run)!r} holds a finished run; choose another --out")
    (train_data, test_data) = load_data(model_name, dataset)  # before touching the run dir
    run.mkdir(parents=True, exist_ok=True)
    _write_json(config_path, config)

    with scope as distribution_info:
        keras.utils.set_random_seed(seed)
        model = create(model_name, **(overrides or {}))
        recipe.compile(model)
        if recipe.validation_split:
            train_data, val_data = _split(train_data, recipe.validation_split)
        else:
            val_data = None
        if distribution_info and distribution_info["even_batches"]:
            # every batch, the last included, must split evenly over the devices
            devices = distribution_info["devices"]
            train_data, dropped = _trim(train_data, devices)
            val_data, dropped_val = _trim(val_data, devices) if val_data else (None, 0)
            distribution_info["dropped_samples"] = {"train": dropped, "validation": dropped_val}
        history_path = run / "history.csv"
        checkpoint = run / "checkpoint"
        callbacks = [
            *(callbacks or []),
            _StopOnNaN(run),
            _History(history_path),
            # Last, so that an epoch is checkpointed only once its history row is written.
            # Kept after fit (delete_checkpoint=False) until metrics.json marks the run
            # finished: a run killed while evaluating or saving then resumes at its last
            # epoch and only finishes, instead of training again from the start.
            keras.callbacks.BackupAndRestore(
                str(checkpoint), double_checkpoint=True, delete_checkpoint=False
            ),
        ]
        start = time.perf_counter()
        _, settings = fit(
            model,
            *train_data,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            validation_data=val_data,
            callbacks=callbacks,
            verbose=verbose,
            fast=fast,
            shard=_process_shard(distribution_info),
        )
        wall_time = time.perf_counter() - start
        history = _read_history(history_path)  # fewer rows than epochs if a callback stopped early

        atomic_write(run / "model.keras", lambda p: model.save(p))
        weights = model.get_weights()
    if distribution_info and distribution_info["even_batches"]:
        # the test split as it is (its last batch need not split evenly), on one device
        model = create(model_name, **(overrides or {}))
        recipe.compile(model)
        model.set_weights(weights)
    results = model.evaluate(*test_data, batch_size=batch_size, verbose=0, return_dict=True)
    _plot_curves(history, run / "curves.png", f"{model_name} on {dataset}")
    metrics = {
        **{f"test_{k}": float(v) for k, v in results.items()},
        "model": model_name,
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "backend": keras.backend.backend(),
        "versions": _versions(),
        "wall_time_s": round(wall_time, 3),  # this process's fit (after a resume: the rest)
        "speed_settings": settings.as_dict(),
        "distribution": distribution_info,
    }
    _write_json(run / "metrics.json", metrics)  # the run is finished from here on
    shutil.rmtree(checkpoint, ignore_errors=True)
    return metrics


def evaluate(run: str | os.PathLike, dataset: str | None = None) -> dict[str, float]:
    """Evaluates a finished run's ``model.keras`` on its (or another) dataset's test
    split and returns the metrics."""
    run = Path(run)
    config_path, model_path = run / "config.json", run / "model.keras"
    if not model_path.exists() or not config_path.exists():
        raise ValueError(f"run {str(run)!r} is not a finished run (no model.keras or config.json)")
    config = json.loads(config_path.read_text())
    model = keras.saving.load_model(model_path)
    _, test_data = load_data(config["model"], dataset or config["dataset"])
    results = model.evaluate(
        *test_data, batch_size=config["batch_size"], verbose=0, return_dict=True
    )
    return {f"test_{k}": float(v) for k, v in results.items()}
