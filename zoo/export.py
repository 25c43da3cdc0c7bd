"""Export for serving stacks that are not Keras, through Keras's ``model.export``.

``zoo export RUN_DIR --format {savedmodel,onnx}`` (or ``zoo.export.export``) writes
the artifact, loads it back with the serving stack's own loader (TensorFlow's
``tf.saved_model.load`` for a SavedModel, ``onnxruntime`` for ONNX), runs it on the
model's sample inputs and checks its outputs against the Keras model's within
``atol`` (1e-4 by default). The artifact is written under a temporary name and only
renamed into place once the check passed.

What works from which backend (``docs/export.md`` has the tested table):

============  =====================================  ======================================
backend       savedmodel                             onnx
============  =====================================  ======================================
tensorflow    yes                                    yes (``tf2onnx``)
jax           yes (``jax2tf``: needs ``tensorflow``)  yes (``jax2onnx``), except MaxPooling2D
torch         no: Keras needs ``torch_xla`` for it    yes (``torch.onnx``; variable lengths fixed)
============  =====================================  ======================================

The export extras install what each path needs: ``pip install
"keras-model-zoo[export-tensorflow]"`` (or ``export-jax``, ``export-torch``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo import _validation as check
from zoo._io import errors_name, replace_checked
from zoo.inputs import predict_numpy, sample_inputs
from zoo.targets import check_target, mark_onnx, mark_savedmodel
from zoo.utils import contains_layer
from zoo.zoo_model import identity

__all__ = ["FORMATS", "ExportError", "export", "supported"]

FORMATS = {"savedmodel": "tf_saved_model", "onnx": "onnx"}
# What each (backend, format) needs beyond the backend, as importable modules.
_NEEDS = {
    ("tensorflow", "savedmodel"): [],
    ("tensorflow", "onnx"): ["tf2onnx", "onnxruntime"],
    ("jax", "savedmodel"): ["tensorflow"],
    ("jax", "onnx"): ["jax2onnx", "onnxruntime"],
    ("torch", "onnx"): ["onnx", "onnxscript", "onnxruntime"],
}
_UNSUPPORTED = {
    ("torch", "savedmodel"): "Keras exports a SavedModel from torch only through torch_xla; "
    "export to onnx instead, or train under the tensorflow or jax backend",
}


class ExportError(RuntimeError):
    """An export that could not be made or did not reproduce the model's outputs."""


def supported(fmt: str, backend: str | None = None) -> tuple[bool, str]:
    """``(True, "")`` if ``fmt`` can be exported from ``backend`` here, else
    ``(False, why)``."""
    import importlib.util

    backend = backend or keras.backend.backend()
    if fmt not in FORMATS:
        return False, f"format must be one of {sorted(FORMATS)}, got {fmt!r}"
    if (backend, fmt) in _UNSUPPORTED:
        return False, f"format {fmt!r} from backend {backend!r}: {_UNSUPPORTED[backend, fmt]}"
    missing = [m for m in _NEEDS[backend, fmt] if importlib.util.find_spec(m) is None]
    if missing:
        return False, (
            f"format {fmt!r} from backend {backend!r} needs {missing}; "
            f'pip install "keras-model-zoo[export-{backend}]"'
        )
    return True, ""


def _fixed_lengths(model, inputs):
    """For torch.onnx: the input signature with every variable non-batch length fixed
    to the sample inputs' (None if there is none). torch.onnx traces the model at one
    length, and a recurrent layer's loop is unrolled to it, so an artifact marked as
    taking any length gives wrong outputs at other lengths (measured: 2.8e-2 off
    for ticket_router); a fixed length is at least stated and checked."""
    # Keras's own export signature of a functional model: one argument, the model's
    # input structure, with every batch axis free.
    signature = [
        keras.tree.map_structure(
            lambda t: keras.InputSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name),
            model.input,
        )
    ]
    specs, arrays = keras.tree.flatten(signature), keras.tree.flatten(inputs)
    if all(None not in tuple(s.shape)[1:] for s in specs):
        return None
    fixed = [
        keras.InputSpec(
            shape=(None, *np.shape(a)[1:]), dtype=s.dtype, name=getattr(s, "name", None)
        )
        for s, a in zip(specs, arrays, strict=True)
    ]
    return keras.tree.pack_sequence_as(signature, fixed)


def _reload_outputs(path: Path, fmt: str, model, inputs) -> list[np.ndarray]:
    flat = [np.asarray(a) for a in keras.tree.flatten(inputs)]
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        if isinstance(inputs, dict):  # Keras exports dict inputs as one dict argument
            outputs = loaded.serve({k: tf.constant(v) for k, v in inputs.items()})
        elif len(model.inputs) > 1:
            outputs = loaded.serve([tf.constant(a) for a in flat])
        else:
            outputs = loaded.serve(tf.constant(np.asarray(inputs)))
        return [np.asarray(o) for o in keras.tree.flatten(outputs)]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if isinstance(inputs, dict) and set(names) == set(inputs):
        feed = {n: np.asarray(inputs[n]) for n in names}
    else:
        feed = dict(zip(names, flat, strict=True))
    return [np.asarray(o) for o in session.run(None, feed)]


def export(
    model_or_run: keras.Model | str | os.PathLike,
    path: str | os.PathLike,
    fmt: str = "savedmodel",
    *,
    atol: float = 1e-4,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Exports a model (or a finished run's ``model.keras``) to ``path`` as ``fmt``
    (``"savedmodel"`` or ``"onnx"``), reloads it and checks its outputs.

    Returns:
        A report: format, backend, path, the inputs' batch size and the largest
        absolute difference from the Keras model's outputs.

    Raises:
        ValueError: an unknown format, or a format this backend can't export.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        zoo.targets.TargetError: ``path`` is a link, overlaps the run, or (with
            ``overwrite``) is not a zoo export of this format: nothing else is replaced.
        ExportError: Keras's export failed, or the reloaded artifact's outputs differ
            from the model's by more than ``atol`` (nothing is left at ``path``).
    """
    backend = keras.backend.backend()
    ok, why = supported(fmt, backend)
    if not ok:
        raise ValueError(why)
    sources = () if isinstance(model_or_run, keras.Model) else (model_or_run,)
    path = check_target(path, fmt, overwrite=overwrite, sources=sources, what="path")
    if isinstance(model_or_run, keras.Model):
        model = model_or_run
    else:
        from zoo.rundir import RunDir

        run = RunDir(model_or_run)
        _, _, model = run.finished_model()
    if backend == "jax" and fmt == "onnx" and contains_layer(model, keras.layers.MaxPooling2D):
        raise ValueError(
            "format 'onnx' from backend 'jax' does not work for a model with MaxPooling2D "
            f"({model.name!r}): jax2onnx writes a MaxPool node that onnxruntime refuses "
            "('Unsupported pooling size'); export it as savedmodel, or as onnx under the "
            "tensorflow or torch backend"
        )
    inputs = sample_inputs(model, 3)  # the model's own sampler when it is a zoo model
    # A direct call (not predict): Keras's ONNX export wants a model that was called.
    expected = predict_numpy(model, inputs)

    with errors_name(path):  # an OSError names the artifact, not the temporary folder
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        artifact = work / ("model.onnx" if fmt == "onnx" else "savedmodel")
        try:
            options, fixed = {}, _fixed_lengths(model, inputs) if backend == "torch" else None
            if fixed is not None:
                options["input_signature"] = fixed
            try:
                model.export(str(artifact), format=FORMATS[fmt], verbose=False, **options)
            except Exception as e:
                raise ExportError(
                    f"Keras could not export {model.name!r} as {fmt} from {backend}: "
                    f"{check.error_summary(e)}"
                ) from e
            try:
                actual = _reload_outputs(artifact, fmt, model, inputs)
            except Exception as e:
                loader = "onnxruntime" if fmt == "onnx" else "tf.saved_model.load"
                raise ExportError(
                    f"the {fmt} export of {model.name!r} from {backend} does not run in {loader}: "
                    f"{check.error_summary(e)}"
                ) from e
            if len(actual) != len(expected):
                raise ExportError(
                    f"the {fmt} export has {len(actual)} outputs, the model {len(expected)}"
                )
            diff = max(
                float(np.max(np.abs(a.reshape(e.shape) - e)))
                for a, e in zip(actual, expected, strict=True)
            )
            if not diff <= atol:
                raise ExportError(
                    f"the reloaded {fmt} export differs from the Keras model by {diff:.2e} "
                    f"(allowed: {atol:.0e}); nothing was written to {str(path)!r}"
                )
            # again: the target may have changed while the export ran
            check_target(path, fmt, overwrite=overwrite, sources=sources, what="path")
            stamp = identity(model) or {"name": None}
            mark = {"format": fmt, "backend": backend, "model": stamp["name"], "keras": model.name}
            (mark_onnx if fmt == "onnx" else mark_savedmodel)(artifact, mark)
            replace_checked(artifact, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "format": fmt,
        "backend": backend,
        "path": str(path),
        "batch_size": len(expected[0]),
        "max_abs_diff": diff,
        # inputs whose variable lengths the artifact fixes (torch.onnx), by position
        "fixed_input_shapes": None
        if fixed is None
        else [list(spec.shape) for spec in keras.tree.flatten(fixed)],
    }
