"""A VGG19 feature extractor over ``keras.applications.VGG19`` (the guide's "extract
and reuse nodes in the graph of layers")."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from zoo import _validation as check
from zoo._io import keras_home
from zoo.registry import register
from zoo.utils import feature_extractor

GUIDE = "Keras functional API guide"
IMAGENET_FILES = {
    True: "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    False: "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


def _check_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        if not Path(weights).is_file():
            raise ValueError(
                f"weights must be None, 'imagenet' or the path of a weights file; "
                f"no file at {str(weights)!r}"
            )
        return str(weights)
    raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")


def vgg19_features(
    input_shape=(None, None, 3),
    include_top=False,
    weights=None,
    layer_names=None,
    name="vgg19_features",
) -> keras.Model:
    """Returns a VGG19 feature extractor: a model whose outputs are a dict from layer
    name to that layer's output, for every layer (the guide) or ``layer_names``.

    Built on ``keras.applications.VGG19``, so its weights are the real ones:
    ``weights="imagenet"`` goes through Keras's own hash-checked loader (cached in
    ``$KERAS_HOME/models``, default ``~/.keras/models``), and a path loads a local
    file. Without the top, any image of at least 32x32 works.

    Args:
        input_shape: (height, width, 3); None sizes accept any size >= 32 (no top),
            with the top it must be (224, 224, 3).
        include_top: include the three fully-connected layers (the guide's VGG19()).
        weights: None (random), ``"imagenet"`` or the path of a weights file.
        layer_names: layers whose outputs to return; None returns every layer's.
        name: the model's name.

    Example:
        >>> from zoo.models.vgg import vgg19_features
        >>> model = vgg19_features(layer_names=["block1_conv2", "block2_pool"])
        >>> sorted(model.output)
        ['block1_conv2', 'block2_pool']
    """
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    input_shape = check.shape("input_shape", input_shape, rank=3, allow_none=True)
    if input_shape[2] != 3:
        raise ValueError(f"input_shape must have 3 channels, got {input_shape}")
    if include_top and input_shape != (224, 224, 3):
        raise ValueError(
            f"input_shape must be (224, 224, 3) with include_top=True, got {input_shape}"
        )
    if any(s is not None and s < 32 for s in input_shape[:2]):
        raise ValueError(f"input_shape must be at least 32x32, got {input_shape}")
    weights = _check_weights(weights)
    if layer_names is not None and not isinstance(layer_names, (list, tuple)):
        raise ValueError(f"layer_names must be a list of layer names or None, got {layer_names!r}")
    name = check.model_name(name)

    inputs = keras.Input(shape=input_shape, name="img")
    if weights == "imagenet":
        cached = keras_home() / "models" / IMAGENET_FILES[include_top]
        try:
            base = keras.applications.VGG19(
                include_top=include_top, weights="imagenet", input_tensor=inputs
            )
        except Exception as err:  # Keras raises a bare Exception on a failed download
            raise RuntimeError(
                f"could not get the VGG19 ImageNet weights ({type(err).__name__}: {err}); "
                f"with no internet, put {cached.name} at {cached} (Keras checks its hash) "
                f"or pass weights='/path/to/{cached.name}'"
            ) from err
    else:
        base = keras.applications.VGG19(
            include_top=include_top, weights=weights, input_tensor=inputs
        )
    return feature_extractor(base, layer_names, name=name)


def _harness_inputs(model, batch_size, rng):
    # images scaled to [0, 1], of the model's size (224x224 with the top), else 32x32
    height, width = (32 if d is None else d for d in model.inputs[0].shape[1:3])
    return rng.random((batch_size, height, width, 3)).astype("float32")


register(
    "vgg19_features",
    vgg19_features,
    params=20_024_384,
    section=f"{GUIDE}: Extract and reuse nodes in the graph of layers (VGG19)",
    summary="Every layer's output of keras.applications.VGG19 (no top), any image >= 32x32.",
    sample_inputs=_harness_inputs,
    small_config={"layer_names": ("block1_pool",)},
)
