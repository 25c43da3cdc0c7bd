"""Presets: a (trained) model as a folder that restores on any backend.

In the spirit of keras-hub's ``save_to_preset`` / ``from_preset``::

    DIR/metadata.json      zoo model name, format version, Keras / zoo versions, the
                           backend it was saved under, parameter count, the weights'
                           sha256, and what the caller adds (dataset, metrics, ...)
    DIR/config.json        the Keras model's serialized config
    DIR/model.weights.h5   the weights (Keras's backend-neutral H5 format)

``zoo.save_preset(model, DIR, metadata)`` writes one (all of it or nothing: the folder
is written under a temporary name and renamed); ``zoo.create(name, preset=DIR)`` or
``zoo.load_preset(DIR)`` restores it under any backend; ``preset_from_run(RUN, DIR)``
turns a finished training run into one. A preset of another model, or a damaged one
(a missing or changed file), gives a one-line error naming what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

import zoo
from zoo import _validation as check
from zoo._io import sha256_file

__all__ = ["PRESET_FORMAT", "PresetError", "load_preset", "preset_from_run", "save_preset"]

PRESET_FORMAT = "keras-model-zoo preset"
FORMAT_VERSION = 1
FILES = ("metadata.json", "config.json", "model.weights.h5")


class PresetError(ValueError):
    """A preset that can't be restored: missing, damaged, or of another model."""


def save_preset(
    model: keras.Model,
    directory: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    model_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes ``model`` as a preset in ``directory`` and returns its path.

    Args:
        model: a zoo model (built by ``zoo.create`` or loaded from a run).
        directory: the preset folder; it must not exist unless ``overwrite``.
        metadata: JSON-serializable extras kept in metadata.json (e.g. ``dataset``,
            ``metrics``).
        model_name: the zoo model it is; taken from ``zoo.create``'s mark if None.
        overwrite: replace an existing preset in ``directory``.

    Example:
        >>> import zoo
        >>> path = zoo.save_preset(zoo.create("mnist_mlp"), "/tmp/p")  # doctest: +SKIP
        >>> model = zoo.create("mnist_mlp", preset="/tmp/p")  # doctest: +SKIP
    """
    from zoo.registry import get_spec

    name = model_name or getattr(model, "_zoo_model", None)
    if name is None:
        raise ValueError(
            "model_name is required for a model not built by zoo.create "
            f"(got model {model.name!r} and model_name=None)"
        )
    get_spec(name)  # a clear error for an unknown name
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"directory {str(directory)!r} exists; pass overwrite=True")
    extras = dict(metadata or {})
    reserved = sorted(set(extras) & {"format", "format_version", "model", "weights_sha256"})
    if reserved:
        raise ValueError(f"metadata must not set {reserved}: the preset writes them")
    json.dumps(extras)  # fails here, before anything is written, if not JSON-serializable

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = keras.saving.serialize_keras_object(model)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        model.save_weights(tmp / "model.weights.h5")
        info = {
            "format": PRESET_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": name,
            "keras_name": model.name,
            "parameters": int(model.count_params()),
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "zoo_version": zoo.__version__,
            **extras,
            "weights_sha256": sha256_file(tmp / "model.weights.h5"),
        }
        (tmp / "metadata.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if directory.exists():  # overwrite: swap, so that a preset is always there whole
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The preset's metadata.json, after checking that every file is there and intact."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PresetError(f"preset {str(directory)!r} is not a directory")
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise PresetError(f"preset {str(directory)!r} is damaged: missing {missing}")
    try:
        info = json.loads((directory / "metadata.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"preset {str(directory)!r} is damaged: metadata.json: {e}") from None
    if not isinstance(info, dict) or info.get("format") != PRESET_FORMAT:
        raise PresetError(f"{str(directory)!r} is not a {PRESET_FORMAT} (metadata.json)")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise PresetError(
            f"preset {str(directory)!r} has format_version {info['format_version']}; "
            f"this zoo {zoo.__version__} reads up to {FORMAT_VERSION}"
        )
    if sha256_file(directory / "model.weights.h5") != info.get("weights_sha256"):
        raise PresetError(
            f"preset {str(directory)!r} is damaged: model.weights.h5 does not match the "
            "sha256 in metadata.json"
        )
    return info


def load_preset(directory: str | os.PathLike, model_name: str | None = None) -> keras.Model:
    """Restores the model of the preset in ``directory`` under the current backend.

    Raises:
        PresetError: the preset is missing or damaged, or holds another model than
            ``model_name``.
    """
    directory = Path(directory)
    info = read_metadata(directory)
    if model_name is not None and info.get("model") != model_name:
        raise PresetError(
            f"preset {str(directory)!r} holds model {info.get('model')!r}, not {model_name!r}"
        )
    import zoo.layers  # registers the custom layers for deserializing
    import zoo.models  # noqa: F401

    try:
        config = json.loads((directory / "config.json").read_text())
        model = keras.saving.deserialize_keras_object(config)
    except Exception as e:  # any parse or build error means the file is not what was saved
        raise PresetError(
            f"preset {str(directory)!r} is damaged: config.json does not build a model "
            f"({check.error_summary(e)})"
        ) from None
    try:
        model.load_weights(directory / "model.weights.h5")
    except Exception as e:
        raise PresetError(
            f"preset {str(directory)!r} is damaged: its weights do not fit its config "
            f"({check.error_summary(e)})"
        ) from None
    model._zoo_model = info["model"]
    return model


def preset_from_run(
    run: str | os.PathLike, directory: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Turns a finished training run (``zoo train``'s directory) into a preset whose
    metadata keeps the run's dataset, test metrics, epochs, seed and backend."""
    run = Path(run)
    needed = [run / "config.json", run / "metrics.json", run / "model.keras"]
    if not all(p.is_file() for p in needed):
        raise ValueError(
            f"run {str(run)!r} is not a finished run (needs config.json, metrics.json, model.keras)"
        )
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    model = keras.saving.load_model(run / "model.keras", compile=False)
    metadata = {
        "dataset": config["dataset"],
        "overrides": config.get("overrides", {}),
        "training": {k: config[k] for k in ("epochs", "batch_size", "seed", "backend")},
        "metrics": {k: v for k, v in metrics.items() if k.startswith("test_")},
    }
    return save_preset(model, directory, metadata, model_name=config["model"], overwrite=overwrite)
