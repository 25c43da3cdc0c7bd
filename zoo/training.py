"""Training: runs that lose nothing, from each model's registered recipe.

``train(model_name, dataset=..., epochs=..., out=...)`` builds the model, trains it
with Keras's ``fit`` and leaves a run directory (``zoo.rundir.RunDir``: config.json,
history.csv, model.keras, metrics.json, curves.png). It is a short sequence of
pieces, each with one job:

- ``TrainArgs``: the checked arguments and the run's config (errors before any write);
- ``zoo.distribute.plan``: the distribution plan (one device, or data-parallel);
- ``DataPlan``: the train / validation / test splits of the recipe's dataset;
- ``RunDir``: the lock, the config check, atomic checkpoints, the finished files;
- ``fit``: Keras's ``fit`` with the backend's speed settings (``zoo.performance``) over
  batches in ``(seed, epoch)`` order, so a resumed run sees the same batches.

A run killed at any point (even SIGKILL) and started again with the same arguments
resumes from its last completed epoch and ends with the same metrics and history as
an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo import _validation as check
from zoo import datasets, interrupts, performance
from zoo import distribute as dist_lib
from zoo.control import Control
from zoo.factory import create, describe
from zoo.precision import float32_precision
from zoo.registry import Recipe, get_recipe
from zoo.rundir import RunDir, RunDirError
from zoo.zoo_model import VERSION, identity

__all__ = [
    "DEFAULT_MODEL",
    "DataPlan",
    "TrainArgs",
    "TrainingError",
    "default_run_dir",
    "evaluate",
    "fit",
    "load_data",
    "recipe_for",
    "train",
]

DEFAULT_MODEL = "mnist_mlp"
#: Keras dtype policies a run can train under (``--dtype-policy``).
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


class TrainingError(RuntimeError):
    """A run that could not go on (a NaN loss)."""


def recipe_for(model_name: str) -> Recipe:
    """The training recipe registered beside ``model_name`` (one-line error if none)."""
    describe(model_name)  # loads the built-in models; a clear error for an unknown name
    return get_recipe(model_name)


def default_run_dir(model_name: str, dataset: str, seed: int) -> Path:
    """``runs/<model>_<dataset>_<backend>_s<seed>``: the same command finds the same
    directory again, so running it again resumes it."""
    return Path("runs") / f"{model_name}_{dataset}_{keras.backend.backend()}_s{seed}"


# -- the pieces --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainArgs:
    """``train``'s arguments, checked and completed from the recipe."""

    model: str
    dataset: str
    epochs: int
    batch_size: int
    seed: int
    overrides: dict[str, Any]
    fast: str
    recipe: Recipe = field(repr=False)
    dtype_policy: str = "float32"
    control: Control = field(default_factory=Control)

    @classmethod
    def check(
        cls,
        model_name,
        dataset,
        epochs,
        batch_size,
        seed,
        overrides,
        fast,
        dtype_policy=None,
        control: dict[str, Any] | None = None,
    ) -> TrainArgs:
        recipe = recipe_for(model_name)
        dataset = recipe.datasets[0] if dataset is None else dataset
        if dataset not in recipe.datasets:
            raise ValueError(
                f"dataset must be one of {list(recipe.datasets)} for model {model_name!r}, "
                f"got {dataset!r}"
            )
        epochs = check.positive_int("epochs", recipe.epochs[dataset] if epochs is None else epochs)
        batch_size = recipe.batch_size if batch_size is None else batch_size
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            # numpy's range, which keras.utils.set_random_seed needs on every backend
            raise ValueError(f"seed must be an int in [0, 2**32 - 1], got {seed!r}")
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError(f"overrides must be a dict of builder arguments, got {overrides!r}")
        if control is not None and not isinstance(control, dict):
            raise ValueError(f"control must be a dict of training choices, got {control!r}")
        if overrides:  # a bad override fails here, before the run's folder is touched
            create(model_name, **overrides)
        return cls(
            model=model_name,
            dataset=dataset,
            epochs=epochs,
            batch_size=check.positive_int("batch_size", batch_size),
            seed=seed,
            overrides=dict(overrides or {}),
            fast=check.one_of("fast", fast, performance.MODES),
            recipe=recipe,
            dtype_policy=check.one_of("dtype_policy", dtype_policy or "float32", DTYPE_POLICIES),
            control=Control.check(**(control or {}), epochs=epochs),
        )

    def config(self) -> dict[str, Any]:
        """What config.json records: a rerun resumes only a run of exactly this."""
        return {
            "model": self.model,
            "overrides": self.overrides,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "backend": keras.backend.backend(),
            # only when not float32, so that runs from before the option still resume
            **({"dtype_policy": self.dtype_policy} if self.dtype_policy != "float32" else {}),
            # likewise: the training choices made (zoo.control), only when there are some
            **({"training": self.control.config()} if self.control.config() else {}),
        }

    def build(self, steps_per_epoch: int | None = None) -> keras.Model:
        """The seeded, compiled model, its layers made under the run's dtype policy; with
        ``steps_per_epoch``, compiled with the run's optimizer and schedule (``control``)."""
        keras.utils.set_random_seed(self.seed)
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.dtype_policy)
        try:
            model = create(self.model, **self.overrides)
        finally:
            keras.config.set_dtype_policy(previous)
        self.recipe.compile(model)  # Keras scales the loss itself under mixed_float16
        if steps_per_epoch is not None:
            self.control.compile(model, steps_per_epoch, self.epochs)
        return model


def _n(data) -> int:
    return len(keras.tree.flatten(data[0])[0])


def _split(data, fraction):
    """Holds out the last ``fraction`` of ``data`` (arrays or dicts), as Keras's
    ``validation_split`` does."""
    cut = _n(data) - round(_n(data) * fraction)
    return (
        keras.tree.map_structure(lambda a: a[:cut], data),
        keras.tree.map_structure(lambda a: a[cut:], data),
    )


def _trim(data, multiple):
    """``data`` without its last ``n % multiple`` samples, and how many were dropped."""
    dropped = _n(data) % multiple
    if not dropped:
        return data, 0
    return keras.tree.map_structure(lambda a: a[: _n(data) - dropped], data), dropped


def load_data(model_name: str, dataset: str):
    """Returns ``(train, test)`` pairs of ``(x, y)`` for ``model_name`` on ``dataset``."""
    recipe = recipe_for(model_name)
    (x_train, y_train), (x_test, y_test) = datasets.load(
        dataset, **recipe.dataset_kwargs.get(dataset, {})
    )
    if recipe.targets_are_inputs:
        y_train, y_test = x_train, x_test
    return (x_train, y_train), (x_test, y_test)


@dataclass
class DataPlan:
    """The splits a run trains, validates and tests on, each an ``(x, y)`` pair."""

    train: tuple
    validation: tuple | None
    test: tuple

    @classmethod
    def load(cls, args: TrainArgs, plan: dist_lib.DistPlan) -> DataPlan:
        """The recipe's dataset, the validation split held out, and (when every batch
        must split evenly over the devices) trimmed to a multiple of the devices."""
        train_data, test_data = load_data(args.model, args.dataset)
        validation = None
        if args.recipe.validation_split:
            train_data, validation = _split(train_data, args.recipe.validation_split)
        if plan.even_batches:
            train_data, dropped = _trim(train_data, plan.devices)
            validation, dropped_val = _trim(validation, plan.devices) if validation else (None, 0)
            plan.dropped_samples = {"train": dropped, "validation": dropped_val}
        return cls(train_data, validation, test_data)


class _StopOnNaN(keras.callbacks.Callback):
    """Stops the run at the first non-finite batch loss by raising, so that nothing
    after it runs: the NaN epoch is neither written to history.csv nor checkpointed,
    and the checkpoint of the last good epoch stays. (Keras's TerminateOnNaN lets the
    epoch end, which would checkpoint the NaN weights.)"""

    # Keras may then run this check on a worker thread, so that reading the loss does
    # not stall each step; an error raised there stops fit at the next batch or at the
    # end of the epoch, before the epoch's own callbacks (history, checkpoint) run.
    async_safe = True

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(
                f"the loss became {'NaN' if math.isnan(float(loss)) else 'infinite'} at epoch "
                f"{self.epoch + 1}, batch {batch + 1}; training stopped (the last good epoch "
                f"is checkpointed in {str(self.run.checkpoint_dir)!r}; lower the learning "
                "rate or check the data)"
            )


class _Checkpoint(keras.callbacks.Callback):
    """At every epoch end: the history row, then one atomic checkpoint of everything a
    resume needs (``RunDir.save_checkpoint``), which also rewrites history.csv."""

    def __init__(self, run: RunDir, history: list[dict[str, float]], resumable=()):
        super().__init__()
        self.run, self.history, self.resumable = run, list(history), list(resumable)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        if not all(math.isfinite(v) for k, v in row.items() if k != "epoch"):
            raise TrainingError(
                f"epoch {epoch + 1} ended with non-finite metrics {row}; not checkpointed "
                f"(the last good epoch is in {str(self.run.checkpoint_dir)!r})"
            )
        self.history = [r for r in self.history if r["epoch"] < epoch] + [row]
        states = {c.key: c.get_state() for c in self.resumable}  # zoo.control.Resumable
        self.run.save_checkpoint(self.model, epoch + 1, self.history, states)


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
    initial_epoch: int = 0,
    plan: dist_lib.DistPlan | None = None,
) -> tuple[keras.callbacks.History, performance.Settings]:
    """Fits a compiled ``model`` on in-memory ``(x, y)`` the way ``train`` does, and
    returns Keras's ``History`` and the speed settings used.

    Each epoch's batches come in an order drawn from ``(seed, epoch)`` alone, so a
    resumed run (``initial_epoch``) sees the same batches as an uninterrupted one.
    ``fast`` picks the backend's speed settings (see ``zoo.performance``): ``"auto"``
    (the default), ``"on"`` (every setting, including compiling the torch step for
    short runs) or ``"off"`` (Keras's plain ``fit``). They change the speed, not the
    batches or the math. ``shard=(index, count)`` feeds only this process's share of
    every batch (multi-host data parallelism). ``plan``: the run's distribution plan
    (``zoo.distribute.plan``); by default the one whose scope is active.
    """
    steps_per_epoch = math.ceil(len(keras.tree.flatten(x)[0]) / batch_size)
    plan = dist_lib.active_plan() if plan is None else plan
    settings = performance.settings_for(fast, steps_per_epoch, epochs - initial_epoch, model, plan)
    with performance.prepare(model, x, y, batch_size, seed, settings, shard) as (data, hooks):
        history = performance.fit_function(model, settings)(
            data,
            shuffle=False,  # the batches are already in their (seed, epoch) order; Keras
            # would otherwise reorder them from Python's global random state (resume changes it)
            validation_data=validation_data,
            validation_batch_size=batch_size,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=[*hooks, *_progress_bar(callbacks), *(callbacks or [])],
            verbose=verbose,
        )
    return history, settings


def _progress_bar(callbacks):
    """Keras's progress bar with its count capped at the epoch (``performance.ProgressBar``),
    unless the caller brings a progress bar of its own."""
    if any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks or []):
        return []
    return [performance.ProgressBar()]


def _versions() -> dict[str, str]:
    versions = {"keras": keras.__version__, "zoo": VERSION, "numpy": np.__version__}
    versions["python"] = platform.python_version()
    backend = keras.backend.backend()
    versions[backend] = __import__(backend).__version__
    return versions


def _draw_curves(history: list[dict[str, float]], title: str):
    """``draw(path)``: writes the loss and metric curves of ``history`` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def draw(path):
        names = [k for k in history[0] if k != "epoch" and not k.startswith("val_")]
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        epochs = [int(r["epoch"]) + 1 for r in history]
        for ax, name in zip(axes[0], names, strict=True):
            ax.plot(epochs, [r[name] for r in history], marker="o", label="train")
            if f"val_{name}" in history[0]:
                ax.plot(epochs, [r[f"val_{name}"] for r in history], marker="o", label="val")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        try:
            fig.savefig(path, format="png", dpi=80)
        finally:
            plt.close(fig)

    return draw


def _fit_run(model, args, data, plan, run, callbacks, verbose, tensorboard=False):
    """Resumes ``model`` from the run's checkpoint (its callbacks' state too) and fits the
    remaining epochs, none where early stopping had ended the run; returns ``(speed
    settings, this process's fit time, history rows)``."""
    done, history = run.restore(model)
    controls = args.control.callbacks("val_loss" if data.validation else "loss")
    for callback in controls:
        if callback.key in run.restored_callbacks:
            callback.set_state(run.restored_callbacks[callback.key])
    stopped = run.restored_callbacks.get("early_stopping", {}).get("stopped_epoch", 0) > 0
    checkpoint = _Checkpoint(run, history, controls)
    watch = []  # after the checkpoint: events of checkpointed epochs only (zoo.tracking)
    if tensorboard and plan.is_chief:
        from zoo.tracking import TensorBoardWriter

        watch.append(TensorBoardWriter(run.path / "tensorboard", history))
    start = time.perf_counter()
    _, settings = fit(
        model,
        *data.train,
        batch_size=args.batch_size,
        epochs=done if stopped else args.epochs,  # stopped: Keras's fit runs no epoch
        seed=args.seed,
        validation_data=data.validation,
        # the controls before the checkpoint, which keeps what they decided at the epoch's
        # end; last: an ending epoch is checkpointed before a signal stops the run
        callbacks=[
            *(callbacks or []),
            *controls,
            _StopOnNaN(run),
            checkpoint,
            *watch,
            interrupts.StopAtSafePoint(),
        ],
        verbose=verbose,
        fast=args.fast,
        shard=plan.shard,
        initial_epoch=done,
        plan=plan,
    )
    return settings, time.perf_counter() - start, checkpoint.history  # = history.csv


def _finish(run, model, args, data, plan, settings, wall_time, history) -> dict[str, Any]:
    """Tests the trained model, draws the curves and writes metrics.json (the run is
    finished from there), then drops the checkpoints: on the chief, once; the other
    processes of a multi-process run return ``{}``."""
    if not plan.is_chief:
        return {}
    if plan.even_batches:  # the test split as it is (its last batch need not split evenly)
        weights, model = model.get_weights(), args.build()
        model.set_weights(weights)
    results = model.evaluate(*data.test, batch_size=args.batch_size, verbose=0, return_dict=True)
    interrupts.check()  # a safe point: the next run finds every epoch checkpointed
    run.write_curves(_draw_curves(history, f"{args.model} on {args.dataset}"))
    metrics = {
        **{f"test_{k}": float(v) for k, v in results.items()},
        **{k: v for k, v in args.config().items() if k != "overrides"},
        "versions": _versions(),
        "wall_time_s": round(wall_time, 3),  # this process's fit (after a resume: the rest)
        "epochs_done": len(history),  # fewer than "epochs" where early stopping ended it
        "speed_settings": settings.as_dict(),
        "float32_precision": float32_precision(),
        "distribution": plan.as_dict(),
    }
    run.write_metrics(metrics)
    run.finish()
    return metrics


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
    dtype_policy: str | None = None,
    control: dict[str, Any] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Trains ``model_name`` on ``dataset`` and returns its metrics (also in
    ``RUN/metrics.json``). Run it again with the same arguments after an
    interruption and it resumes from the last completed epoch. In a multi-process run
    only the chief (process 0) writes the run and returns the metrics; the others
    return ``{}``.

    Args:
        model_name: a registered model with a recipe (``zoo.describe(name).as_dict()``).
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
        dtype_policy: Keras's dtype policy for the model's layers, one of
            ``DTYPE_POLICIES`` (None: float32); recorded in config.json.
        control: training choices, ``zoo.control.Control``'s fields (``optimizer``,
            ``learning_rate``, ``schedule``, ``warmup_epochs``, ``early_stopping``,
            ``reduce_lr_on_plateau``); None keeps the recipe's. Recorded in config.json.
        tensorboard: write TensorBoard event files under ``RUN/tensorboard``
            (``zoo.tracking``; needs the ``tensorboard`` package).
        distribute: ``"data"`` to train data-parallel (over all local devices on JAX
            and TensorFlow; over the processes of ``torchrun`` or ``zoo train --processes
            N``; see ``zoo.distribute``), None for one device.

    Raises:
        ValueError: a bad argument (nothing is written).
        zoo.rundir.RunDirError: ``out`` is in use, holds something else, another or a
            finished run, has no usable checkpoint, or can't be written (disk full).
        TrainingError: a NaN loss.
        zoo.interrupts.RunInterrupted: a SIGINT or SIGTERM stopped the run at a safe point
            (the last completed epoch is checkpointed: the same call resumes it).

    Example:
        >>> from zoo.training import train
        >>> metrics = train("mnist_mlp", epochs=1, out="/tmp/run")  # doctest: +SKIP
    """
    args = TrainArgs.check(
        model_name, dataset, epochs, batch_size, seed, overrides, fast, dtype_policy, control
    )
    if tensorboard:
        from zoo.tracking import check_tensorboard

        check_tensorboard()
    plan = dist_lib.plan(distribute, args.batch_size)  # errors before any file is written
    # Ctrl-C / SIGTERM stop at the next safe point (interrupts.check), one process only
    with interrupts.handled(plan.processes == 1):
        data = DataPlan.load(args, plan)
        interrupts.check()
        path = default_run_dir(args.model, args.dataset, seed) if out is None else out
        run = RunDir(path, writer=plan.is_chief)  # one writer: the other processes only read
        with run.lock():
            run.prepare(args.config())
            plan.barrier("zoo-run-prepared")  # the chief has checked the folder: restore it
            with plan.scope():
                model = args.build(math.ceil(_n(data.train) / args.batch_size))
                interrupts.check()
                settings, wall_time, history = _fit_run(
                    model,
                    args,
                    data,
                    plan,
                    run,
                    callbacks,
                    verbose if plan.is_chief else 0,
                    tensorboard,
                )
            interrupts.check()
            # outside the scope: saving makes variables, which under a multi-process
            # distribution every process would have to make together (the chief saves alone)
            run.write_model(model)
            return _finish(run, model, args, data, plan, settings, wall_time, history)


def evaluate(run: str | os.PathLike, dataset: str | None = None) -> dict[str, float]:
    """Evaluates a finished run's ``model.keras`` on the test split of its dataset (or of
    another one its recipe takes) and returns the metrics. The model says which zoo
    model it is (``zoo.identity``); the run's config gives the dataset and batch size."""
    run = RunDir(run)
    config, _, model = run.finished_model(compile=False)  # compiled from the recipe below
    stamp = identity(model)
    if stamp is None:
        raise RunDirError(f"{str(run.model_path)!r} is not a zoo model; it can't be evaluated")
    args = TrainArgs.check(
        stamp["name"], dataset or config["dataset"], None, config["batch_size"], 0, None, "off"
    )
    args.recipe.compile(model)  # the run's loss and metrics, whatever backend saved it
    _, test_data = load_data(args.model, args.dataset)
    results = model.evaluate(*test_data, batch_size=args.batch_size, verbose=0, return_dict=True)
    return {f"test_{k}": float(v) for k, v in results.items()}
