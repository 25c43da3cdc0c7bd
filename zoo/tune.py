"""Hyperparameter search: ``zoo tune MODEL --max-trials N`` runs KerasTuner's random
search over the search space declared beside the model's recipe
(``Recipe.search_space``), each trial a zoo training run (``zoo.training.fit``, its
recipe's data, loss and metrics; the trial's builder arguments and training choices,
``zoo.control``). KerasTuner keeps the oracle's state and every trial's best weights in
the tune directory (``TUNE/search``), so running the same command again after a kill
resumes the search where it stopped, and asking for more trials adds to it. The best
trial is saved as a preset (``TUNE/best``) with its hyperparameters, its score and its
test metrics in the preset's metadata.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import keras

from zoo import distribute as dist_lib
from zoo.training import DataPlan, TrainArgs, fit, recipe_for

__all__ = ["INSTALL_HINT", "default_tune_dir", "tune"]

INSTALL_HINT = "pip install 'keras-model-zoo[tune]' (keras-tuner)"


def default_tune_dir(model_name: str, dataset: str, seed: int) -> Path:
    return Path("tune") / f"{model_name}_{dataset}_{keras.backend.backend()}_s{seed}"


def _keras_tuner():
    try:
        import keras_tuner
    except ImportError as e:  # keras-tuner 1.4.8 also imports six, which it does not declare
        raise ValueError(f"zoo tune needs keras-tuner ({e}): {INSTALL_HINT}") from None
    return keras_tuner


def tune(
    model_name: str,
    *,
    dataset: str | None = None,
    epochs: int | None = None,
    max_trials: int = 3,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    verbose: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Searches ``model_name``'s declared space for ``max_trials`` trials (in total,
    counting those a previous call in ``out`` ran) and returns the best trial's
    ``{"hyperparameters", "score", "objective", "trials", "preset", "test_metrics"}``.

    Raises:
        ValueError: a bad argument, a model without a search space, or keras-tuner
            missing (one line, before anything is written).
    """
    kt = _keras_tuner()
    recipe = recipe_for(model_name)
    if recipe.search_space is None:
        from zoo.registry import get_recipe, recipe_names

        have = [n for n in recipe_names() if get_recipe(n).search_space is not None]
        raise ValueError(f"model {model_name!r} has no search space; zoo tune takes {have}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an int >= 1, got {max_trials!r}")
    base = TrainArgs.check(model_name, dataset, epochs, None, seed, None, "auto")
    out = default_tune_dir(model_name, base.dataset, seed) if out is None else Path(out)
    _check_tune_dir(out)
    data = DataPlan.load(base, dist_lib.plan(None, base.batch_size))
    steps = math.ceil(len(keras.tree.flatten(data.train[0])[0]) / base.batch_size)
    objective = "val_loss" if data.validation else "loss"

    mine = list(callbacks or [])  # the caller's callbacks, after KerasTuner's own

    def trial_args(hp) -> TrainArgs:
        overrides, control = recipe.search_space(hp)
        return TrainArgs.check(
            model_name, base.dataset, base.epochs, None, seed, overrides, "auto", None, control
        )

    class ZooHyperModel(kt.HyperModel):
        def build(self, hp):
            return trial_args(hp).build(steps)

        def fit(self, hp, model, *args, callbacks=None, **kwargs):
            history, _ = fit(
                model,
                *data.train,
                batch_size=base.batch_size,
                epochs=base.epochs,
                seed=seed,
                validation_data=data.validation,
                callbacks=[*(callbacks or []), *mine],
                verbose=verbose,
            )
            return history

    tuner = kt.RandomSearch(
        ZooHyperModel(),
        objective=objective,
        max_trials=max_trials,
        seed=seed,
        directory=str(out),
        project_name="search",
        overwrite=False,  # its oracle's state there: a second call resumes the search
    )
    tuner.search(verbose=verbose)
    return _save_best(tuner, trial_args, data, base, objective, out)


def _check_tune_dir(out: Path) -> None:
    """``out`` is new, empty or a tune directory (KerasTuner's ``search`` and the
    ``best`` preset in it): a user's folder is never written into."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file; choose a folder for the search")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in ("search", "best"))
        if others:
            raise ValueError(
                f"out {str(out)!r} is not a zoo tune directory (it holds {others[:5]}); choose "
                "a new or empty --out"
            )


def _save_best(tuner, trial_args, data, base, objective, out: Path) -> dict[str, Any]:
    """The best trial's model (its best epoch's weights, as KerasTuner kept them),
    tested and saved as the preset ``out/best``."""
    from zoo.presets import save_preset

    best = tuner.oracle.get_best_trials(1)[0]
    args = trial_args(best.hyperparameters)
    model = tuner.load_model(best)
    results = model.evaluate(*data.test, batch_size=base.batch_size, verbose=0, return_dict=True)
    summary = {
        "hyperparameters": dict(best.hyperparameters.values),
        "score": float(best.score),
        "objective": objective,
        "trials": len(tuner.oracle.trials),
        "test_metrics": {f"test_{k}": float(v) for k, v in results.items()},
    }
    metadata = {
        "dataset": base.dataset,
        "epochs": base.epochs,
        "seed": base.seed,
        "overrides": args.overrides,
        "control": args.control.config(),
        "tune": summary,
        "metrics": summary["test_metrics"],
    }
    preset = save_preset(model, out / "best", metadata, overwrite=(out / "best").exists())
    return {**summary, "preset": str(preset)}
