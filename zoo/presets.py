"""Presets: a (trained) model as a folder that restores on any backend.

In the spirit of keras-hub's ``save_to_preset`` / ``from_preset``::

    DIR/metadata.json      zoo model name, format version, Keras / zoo versions, the
                           backend it was saved under, parameter count, the sha256 of
                           every other file and of its own content, and what the caller
                           adds (dataset, metrics, ...)
    DIR/config.json        the Keras model's serialized config (a ``zoo.ZooModel``)
    DIR/model.weights.h5   the weights (Keras's backend-neutral H5 format)

``zoo.save_preset(model, DIR, metadata)`` writes one (all of it or nothing: the folder
is written under a temporary name and renamed); ``zoo.create(name, preset=DIR)`` or
``zoo.load_preset(DIR)`` restores it under any backend (``zoo.factory``);
``preset_from_run(RUN, DIR)`` turns a finished training run into one. A preset of
another model, or a damaged one (a missing file, or any file changed after saving),
gives a one-line ``PresetError`` naming what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

from zoo._io import errors_name, fsync_file, replace_checked, sha256_file
from zoo.factory import (
    PRESET_FORMAT,
    PRESET_FORMAT_VERSION,
    PresetError,
    load_preset,
    metadata_digest,
    preset_path,
    read_preset_metadata,
)
from zoo.registry import get_spec
from zoo.targets import check_target
from zoo.zoo_model import VERSION, identity

__all__ = [
    "PRESET_FORMAT",
    "PresetError",
    "evaluate_preset",
    "load_preset",
    "preset_from_run",
    "read_metadata",
    "read_preset_metadata",
    "save_preset",
]

read_metadata = read_preset_metadata  # the name used in earlier releases
_RESERVED = {"format", "format_version", "model", "sha256", "metadata_sha256"}


def save_preset(
    model: keras.Model,
    directory: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    sources: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Writes ``model`` as a preset in ``directory`` and returns its path.

    Args:
        model: a zoo model (built by ``zoo.create``, or loaded from a run or preset):
            it says which registered model it is (``zoo.identity``).
        directory: the preset folder; it must not exist unless ``overwrite``.
        metadata: JSON-serializable extras kept in metadata.json (e.g. ``dataset``,
            ``metrics``).
        overwrite: replace an existing preset in ``directory`` (only a zoo preset folder
            is replaced: anything else there is refused, ``zoo.targets``).
        sources: paths the preset is made from (a run), which it must not replace.

    Example:
        >>> import zoo
        >>> path = zoo.save_preset(zoo.create("mnist_mlp"), "/tmp/p")  # doctest: +SKIP
        >>> model = zoo.create("mnist_mlp", preset="/tmp/p")  # doctest: +SKIP
    """
    stamp = identity(model)
    if stamp is None:
        raise ValueError(
            f"model {model.name!r} is not a zoo model (build it with zoo.create, or load it "
            "with zoo.load_model or zoo.load_preset)"
        )
    get_spec(stamp["name"])  # a clear error for a name this zoo does not know
    directory = check_target(
        directory, "preset", overwrite=overwrite, sources=sources, what="preset folder"
    )
    extras = dict(metadata or {})
    reserved = sorted(set(extras) & _RESERVED)
    if reserved:
        raise ValueError(f"metadata must not set {reserved}: the preset writes them")
    json.dumps(extras)  # fails here, before anything is written, if not JSON-serializable

    with errors_name(directory):  # an OSError names the preset folder, not the temporary one
        directory.parent.mkdir(parents=True, exist_ok=True)
        _write_preset(model, directory, stamp, extras, overwrite, sources)
    return directory


def _write_preset(model, directory: Path, stamp, extras, overwrite, sources) -> None:
    """The preset's files under a temporary name beside ``directory``, then renamed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; a preset is a folder like any other
        config = keras.saving.serialize_keras_object(model)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        model.save_weights(tmp / "model.weights.h5")
        info = {
            "format": PRESET_FORMAT,
            "format_version": PRESET_FORMAT_VERSION,
            "model": stamp["name"],
            "keras_name": model.name,
            "parameters": int(model.count_params()),
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "zoo_version": VERSION,
            **extras,
            "sha256": {f: sha256_file(tmp / f) for f in ("config.json", "model.weights.h5")},
        }
        info["metadata_sha256"] = metadata_digest(info)
        (tmp / "metadata.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        for name in ("config.json", "model.weights.h5", "metadata.json"):
            fsync_file(tmp / name)
        # again: the target may have changed while the preset was written
        check_target(
            directory, "preset", overwrite=overwrite, sources=sources, what="preset folder"
        )
        replace_checked(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def preset_from_run(
    run: str | os.PathLike, directory: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Turns a finished training run (``zoo train``'s directory) into a preset whose
    metadata keeps the run's dataset, test metrics, epochs, seed and backend."""
    from zoo.rundir import RunDir

    run = RunDir(run)
    run.finished_record()  # a one-line error for a folder that is not a finished run
    check_target(
        directory, "preset", overwrite=overwrite, sources=(run.path,), what="preset folder"
    )
    config, metrics, model = run.finished_model()
    metadata = {
        "dataset": config["dataset"],
        "overrides": config.get("overrides", {}),
        "training": {k: config[k] for k in ("epochs", "batch_size", "seed", "backend")},
        "metrics": {k: v for k, v in metrics.items() if k.startswith("test_")},
        "control": config.get("training", {}),  # the run's training choices (zoo.control)
    }
    return save_preset(model, directory, metadata, overwrite=overwrite, sources=(run.path,))


def evaluate_preset(preset: str | os.PathLike, dataset: str | None = None) -> dict[str, float]:
    """The test metrics of a preset (a folder, or a name of the catalog,
    ``zoo.list_presets()``) on its dataset's test split, or on another dataset its
    model's recipe takes, under the current backend: the model restored, compiled with
    its recipe and evaluated as ``zoo train`` evaluates a finished run.

    Raises:
        PresetError: the preset is missing or damaged.
        ValueError: no dataset (none recorded, none given), or one the recipe does not take.
    """
    from zoo.training import load_data, recipe_for

    path = preset_path(preset)
    info = read_preset_metadata(path)
    dataset = dataset or info.get("dataset")
    recipe = recipe_for(info["model"])
    if dataset not in recipe.datasets:
        raise ValueError(
            f"dataset must be one of {list(recipe.datasets)} for preset {str(preset)!r}, "
            f"got {dataset!r}"
        )
    model = load_preset(path)
    recipe.compile(model)
    _, test = load_data(info["model"], dataset)
    results = model.evaluate(*test, batch_size=recipe.batch_size, verbose=0, return_dict=True)
    return {f"test_{k}": float(v) for k, v in results.items()}
