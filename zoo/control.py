"""Training control: the optimizer, its learning rate and schedule, early stopping and
learning-rate reduction on a plateau, chosen per run (``zoo train --optimizer adamw --lr
3e-4 --schedule cosine --warmup-epochs 1 --early-stopping 3``), all Keras's own pieces:
``keras.optimizers``, ``keras.optimizers.schedules.CosineDecay`` (its warmup included),
``keras.callbacks.EarlyStopping`` and ``ReduceLROnPlateau``.

A run records its choices in config.json (only those made, so that runs from before
these options still resume), and a killed run resumes exactly: the optimizer's state
(its step count, which the schedule reads, and the learning rate a plateau lowered) is
in the zoo's checkpoint, and so is each callback's own state (the best value, the wait
count, the epoch it stopped at) through ``Resumable``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras

from zoo import _validation as check

__all__ = ["OPTIMIZERS", "SCHEDULES", "Control", "Resumable"]

#: ``keras.optimizers`` names a run can choose (lowercase, as ``keras.optimizers.get`` takes).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adamax", "adagrad", "lion")
#: learning-rate schedules: constant, or cosine decay to 0 over the run; either after a
#: linear warmup of ``warmup_epochs``
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Control:
    """A run's training choices; None leaves the recipe's."""

    optimizer: str | None = None
    learning_rate: float | None = None
    schedule: str = "constant"
    warmup_epochs: int = 0
    early_stopping: int | None = None  # patience, in epochs
    reduce_lr_on_plateau: int | None = None  # patience, in epochs

    @classmethod
    def check(
        cls,
        optimizer=None,
        learning_rate=None,
        schedule=None,
        warmup_epochs=None,
        early_stopping=None,
        reduce_lr_on_plateau=None,
        epochs: int | None = None,
    ) -> Control:
        """Checks each choice (a one-line error naming it) against the run's ``epochs``."""
        if optimizer is not None:
            optimizer = check.one_of("optimizer", str(optimizer).lower(), OPTIMIZERS)
        if learning_rate is not None:
            if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
                raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
            if not 0 < learning_rate < float("inf"):
                raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
            learning_rate = float(learning_rate)
        schedule = check.one_of("schedule", schedule or "constant", SCHEDULES)
        warmup = 0 if warmup_epochs is None else warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup_epochs must be an int >= 0, got {warmup_epochs!r}")
        if epochs is not None and warmup >= epochs and warmup:
            raise ValueError(
                f"warmup_epochs must be fewer than the run's {epochs} epochs, got {warmup}"
            )
        for name, value in (
            ("early_stopping", early_stopping),
            ("reduce_lr_on_plateau", reduce_lr_on_plateau),
        ):
            if value is not None:
                check.positive_int(name, value)
        if reduce_lr_on_plateau is not None and (schedule != "constant" or warmup):
            raise ValueError(
                "reduce_lr_on_plateau can't be combined with a schedule or a warmup (Keras "
                "can't lower a scheduled learning rate); choose one"
            )
        return cls(optimizer, learning_rate, schedule, warmup, early_stopping, reduce_lr_on_plateau)

    def config(self) -> dict[str, Any]:
        """The choices made (the defaults left out), for config.json."""
        defaults = Control()
        return {k: v for k, v in asdict(self).items() if v != getattr(defaults, k)}

    def changes_optimizer(self) -> bool:
        return bool(
            self.optimizer
            or self.learning_rate
            or self.schedule != "constant"
            or self.warmup_epochs
        )

    def compile(self, model: keras.Model, steps_per_epoch: int, epochs: int) -> None:
        """Recompiles the recipe-compiled ``model`` with the chosen optimizer and learning
        rate (schedule), keeping the recipe's loss and metrics (through Keras's public
        compile config)."""
        if not self.changes_optimizer():
            return
        config = model.get_compile_config()
        recipe = config["optimizer"]
        if self.optimizer is None:  # the recipe's optimizer, with the new learning rate
            name, options = recipe["class_name"], dict(recipe["config"])
        else:
            name, options = self.optimizer, {}
        rate = self.learning_rate
        if rate is None:  # the recipe's (its optimizer's), else the new optimizer's default
            given = recipe["config"].get("learning_rate")
            rate = given if isinstance(given, float) else keras.optimizers.get(name).learning_rate
            rate = float(keras.ops.convert_to_numpy(rate))
        schedule = self._schedule(rate, steps_per_epoch, epochs)
        options["learning_rate"] = (
            rate if schedule is None else keras.optimizers.schedules.serialize(schedule)
        )
        optimizer = keras.optimizers.get({"class_name": name, "config": options})
        config["optimizer"] = keras.optimizers.serialize(optimizer)
        model.compile_from_config(config)

    def _schedule(self, rate: float, steps_per_epoch: int, epochs: int):
        """Keras's schedule for the choice; None for a constant rate (a float, which
        ReduceLROnPlateau can lower)."""
        if self.schedule == "constant" and not self.warmup_epochs:
            return None
        warmup = self.warmup_epochs * steps_per_epoch
        total = max(epochs * steps_per_epoch, warmup + 1)
        # Keras's CosineDecay: a linear warmup from 0 to the rate, then a cosine to 0
        # (alpha=0) or a constant rate (alpha=1: the cosine term weighs nothing)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else rate,
            decay_steps=total - warmup,
            alpha=1.0 if self.schedule == "constant" else 0.0,
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )

    def callbacks(self, monitor: str) -> list[keras.callbacks.Callback]:
        """Keras's EarlyStopping and ReduceLROnPlateau on ``monitor``, resumable."""
        found = []
        if self.early_stopping is not None:
            found.append(ResumableEarlyStopping(monitor=monitor, patience=self.early_stopping))
        if self.reduce_lr_on_plateau is not None:
            found.append(
                ResumableReduceLROnPlateau(monitor=monitor, patience=self.reduce_lr_on_plateau)
            )
        return found


class Resumable:
    """A Keras callback whose state (``STATE``, public attributes Keras's callback resets
    in ``on_train_begin``) the zoo's checkpoint keeps: ``get_state()`` at each epoch's
    checkpoint, ``set_state()`` before a resumed fit, applied after Keras's reset."""

    STATE: tuple[str, ...] = ()
    _pending: dict | None = None

    def get_state(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in self.STATE}

    def set_state(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for name, value in (self._pending or {}).items():
            setattr(self, name, value)
        self._pending = None


def _plain(value):
    """A JSON value: numpy and backend scalars as Python numbers."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(keras.ops.convert_to_numpy(value))


class ResumableEarlyStopping(Resumable, keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping, resumable (a ``stopped_epoch`` above 0: it ended the run)."""

    STATE = ("wait", "best", "stopped_epoch", "best_epoch")
    key = "early_stopping"


class ResumableReduceLROnPlateau(Resumable, keras.callbacks.ReduceLROnPlateau):
    """Keras's ReduceLROnPlateau, resumable (the learning rate it set is the
    optimizer's, which the checkpoint keeps)."""

    STATE = ("wait", "best", "cooldown_counter")
    key = "reduce_lr_on_plateau"
