"""The guide's convolutional encoder, decoder and autoencoder, both ways the guide
builds it: one shared graph of layers, and encoder/decoder models called as layers."""

from __future__ import annotations

import math

import keras
from keras import layers

from zoo import _validation as check
from zoo import recipes
from zoo.registry import Recipe, register, register_recipe

GUIDE = "Keras functional API guide"


def _stages(name, value):
    """Checks a tuple of stages, each a non-empty tuple of conv widths."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"{name} must be a non-empty tuple of tuples of positive ints, got {value!r}"
        )
    try:
        if not all(isinstance(stage, (list, tuple)) for stage in value):
            raise ValueError
        return tuple(check.positive_ints(name, stage) for stage in value)
    except ValueError:
        raise ValueError(
            f"{name} must be a non-empty tuple of tuples of positive ints, got {value!r}"
        ) from None


def _encoder_output_size(size, stages, kernel_size, pool_size):
    """Spatial size after the encoder's 'valid' convolutions and poolings."""
    for i, stage in enumerate(stages):
        if i:
            size //= pool_size
        size -= len(stage) * (kernel_size - 1)
    return size


def _decoder_output_size(size, stages, kernel_size, upsample_size):
    """Spatial size after the decoder's 'valid' transposed convolutions and upsamplings."""
    for i, stage in enumerate(stages):
        if i:
            size *= upsample_size
        size += len(stage) * (kernel_size - 1)
    return size


def _check_encoder(input_shape, stages, kernel_size, pool_size, activation):
    input_shape = check.shape("input_shape", input_shape, rank=3)
    stages = _stages("encoder_stages", stages)
    kernel_size = check.positive_int("kernel_size", kernel_size)
    pool_size = check.positive_int("pool_size", pool_size)
    activation = check.activation("activation", activation)
    for axis, size in zip(("height", "width"), input_shape[:2], strict=True):
        if _encoder_output_size(size, stages, kernel_size, pool_size) < 1:
            raise ValueError(
                f"input_shape {input_shape} is too small for encoder_stages {stages}: "
                f"the {axis} shrinks below 1"
            )
    return input_shape, stages, kernel_size, pool_size, activation


def _check_decoder(latent_dim, reshape_to, stages, kernel_size, upsample_size, activation):
    latent_dim = check.positive_int("latent_dim", latent_dim)
    reshape_to = check.shape("reshape_to", reshape_to, rank=3)
    stages = _stages("decoder_stages", stages)
    kernel_size = check.positive_int("kernel_size", kernel_size)
    upsample_size = check.positive_int("upsample_size", upsample_size)
    activation = check.activation("activation", activation)
    if math.prod(reshape_to) != latent_dim:
        raise ValueError(
            f"reshape_to must hold latent_dim={latent_dim} values, "
            f"got {reshape_to} ({math.prod(reshape_to)} values)"
        )
    return latent_dim, reshape_to, stages, kernel_size, upsample_size, activation


def _encode(x, stages, kernel_size, pool_size, activation):
    """The guide's encoder layers: Conv2D stages with MaxPooling2D between them."""
    for i, stage in enumerate(stages, start=1):
        if i > 1:
            x = layers.MaxPooling2D(pool_size, name=f"encoder_pool_{i - 1}")(x)
        for j, filters in enumerate(stage, start=1):
            x = layers.Conv2D(
                filters, kernel_size, activation=activation, name=f"encoder_conv_{i}_{j}"
            )(x)
    return layers.GlobalMaxPooling2D(name="encoder_output")(x)


def _decode(x, reshape_to, stages, kernel_size, upsample_size, activation):
    """The guide's decoder layers: Reshape, Conv2DTranspose stages with UpSampling2D."""
    x = layers.Reshape(reshape_to, name="decoder_reshape")(x)
    for i, stage in enumerate(stages, start=1):
        if i > 1:
            x = layers.UpSampling2D(upsample_size, name=f"decoder_upsample_{i - 1}")(x)
        for j, filters in enumerate(stage, start=1):
            x = layers.Conv2DTranspose(
                filters, kernel_size, activation=activation, name=f"decoder_deconv_{i}_{j}"
            )(x)
    return x


def conv_encoder(
    input_shape=(28, 28, 1),
    encoder_stages=((16, 32), (32, 16)),
    kernel_size=3,
    pool_size=3,
    activation="relu",
    name="encoder",
) -> keras.Model:
    """Returns the guide's convolutional encoder: an image -> a feature vector.

    ``Conv2D`` stages (each a tuple of filter counts, 'valid' padding) with
    ``MaxPooling2D(pool_size)`` between them, then ``GlobalMaxPooling2D``. The
    feature size is the last stage's last filter count. At the defaults this is the
    guide's encoder: 28x28x1 -> 16, 18,672 parameters.

    Args:
        input_shape: (height, width, channels) of the images.
        encoder_stages: filter counts of the Conv2D layers, grouped into stages.
        kernel_size: the convolutions' kernel size.
        pool_size: the pooling size between stages.
        activation: the convolutions' activation.
        name: the model's name.

    Example:
        >>> from zoo.models.autoencoder import conv_encoder
        >>> conv_encoder().count_params()
        18672
    """
    input_shape, stages, kernel_size, pool_size, activation = _check_encoder(
        input_shape, encoder_stages, kernel_size, pool_size, activation
    )
    name = check.model_name(name)
    inputs = keras.Input(shape=input_shape, name="img")
    outputs = _encode(inputs, stages, kernel_size, pool_size, activation)
    return keras.Model(inputs, outputs, name=name)


def conv_decoder(
    latent_dim=16,
    reshape_to=(4, 4, 1),
    decoder_stages=((16, 32), (16, 1)),
    kernel_size=3,
    upsample_size=3,
    activation="relu",
    name="decoder",
) -> keras.Model:
    """Returns the guide's convolutional decoder: a feature vector -> an image.

    ``Reshape(reshape_to)``, then ``Conv2DTranspose`` stages with
    ``UpSampling2D(upsample_size)`` between them. At the defaults this is the
    guide's decoder: 16 -> 28x28x1, 9,569 parameters.

    Args:
        latent_dim: size of the input vector; must equal the product of ``reshape_to``.
        reshape_to: the (height, width, channels) the vector is reshaped to.
        decoder_stages: filter counts of the Conv2DTranspose layers, grouped in stages;
            the last one is the number of output channels.
        kernel_size: the transposed convolutions' kernel size.
        upsample_size: the upsampling factor between stages.
        activation: the transposed convolutions' activation.
        name: the model's name.

    Example:
        >>> from zoo.models.autoencoder import conv_decoder
        >>> conv_decoder().count_params()
        9569
    """
    latent_dim, reshape_to, stages, kernel_size, upsample_size, activation = _check_decoder(
        latent_dim, reshape_to, decoder_stages, kernel_size, upsample_size, activation
    )
    name = check.model_name(name)
    inputs = keras.Input(shape=(latent_dim,), name="encoded_img")
    outputs = _decode(inputs, reshape_to, stages, kernel_size, upsample_size, activation)
    return keras.Model(inputs, outputs, name=name)


def conv_autoencoder(
    input_shape=(28, 28, 1),
    encoder_stages=((16, 32), (32, 16)),
    decoder_stages=((16, 32), (16, 1)),
    reshape_to=(4, 4, 1),
    kernel_size=3,
    pool_size=3,
    upsample_size=3,
    activation="relu",
    nested=False,
    name="autoencoder",
) -> keras.Model:
    """Returns the guide's convolutional autoencoder (28,241 parameters at the defaults).

    With ``nested=False`` (the guide's "same graph of layers" section) encoder and
    autoencoder share one graph of layers; with ``nested=True`` (the guide's "all
    models are callable" section) an ``encoder`` and a ``decoder`` model are called as
    layers, and the summary shows two nested Functional layers. ``extract_encoder``
    gets the encoder back out of either kind, sharing its weights.

    Args:
        input_shape: (height, width, channels) of the images; the decoder must give
            back the same shape.
        encoder_stages, kernel_size, pool_size: as in ``conv_encoder``.
        decoder_stages, reshape_to, upsample_size: as in ``conv_decoder``.
        activation: the activation of every convolution.
        nested: build from nested encoder and decoder models instead of one graph.
        name: the model's name.

    Example:
        >>> from zoo.models.autoencoder import conv_autoencoder
        >>> conv_autoencoder(nested=True).count_params()
        28241
    """
    input_shape, enc_stages, kernel_size, pool_size, activation = _check_encoder(
        input_shape, encoder_stages, kernel_size, pool_size, activation
    )
    latent_dim = enc_stages[-1][-1]
    _, reshape_to, dec_stages, _, upsample_size, _ = _check_decoder(
        latent_dim, reshape_to, decoder_stages, kernel_size, upsample_size, activation
    )
    output_shape = (
        _decoder_output_size(reshape_to[0], dec_stages, kernel_size, upsample_size),
        _decoder_output_size(reshape_to[1], dec_stages, kernel_size, upsample_size),
        dec_stages[-1][-1],
    )
    if output_shape != input_shape:
        raise ValueError(
            f"decoder_stages {dec_stages} give images of shape {output_shape}, "
            f"but input_shape is {input_shape}; change reshape_to or the stages to match"
        )
    if not isinstance(nested, bool):
        raise ValueError(f"nested must be True or False, got {nested!r}")
    name = check.model_name(name)

    inputs = keras.Input(shape=input_shape, name="img")
    if nested:
        encoder = conv_encoder(input_shape, enc_stages, kernel_size, pool_size, activation)
        decoder = conv_decoder(
            latent_dim, reshape_to, dec_stages, kernel_size, upsample_size, activation
        )
        outputs = decoder(encoder(inputs))
    else:
        encoded = _encode(inputs, enc_stages, kernel_size, pool_size, activation)
        outputs = _decode(encoded, reshape_to, dec_stages, kernel_size, upsample_size, activation)
    return keras.Model(inputs, outputs, name=name)


def extract_encoder(autoencoder: keras.Model, name: str = "encoder") -> keras.Model:
    """Returns the encoder of a ``conv_autoencoder`` (either kind), sharing its weights.

    Works on a freshly built, a trained or a loaded autoencoder: training the one
    trains the other.

    Args:
        autoencoder: a model built by ``conv_autoencoder`` (or loaded from one).
        name: the name of the returned model (shared-graph autoencoders only).

    Example:
        >>> import zoo
        >>> from zoo.models.autoencoder import extract_encoder
        >>> encoder = extract_encoder(zoo.create("conv_autoencoder"))
        >>> encoder.output.shape
        (None, 16)
    """
    names = {layer.name for layer in autoencoder.layers}
    if "encoder" in names and isinstance(autoencoder.get_layer("encoder"), keras.Model):
        return autoencoder.get_layer("encoder")
    if "encoder_output" in names:
        output = autoencoder.get_layer("encoder_output").output
        return keras.Model(autoencoder.input, output, name=check.model_name(name))
    raise ValueError(
        f"autoencoder must be built by conv_autoencoder (a layer 'encoder' or "
        f"'encoder_output'), got a model {autoencoder.name!r} with layers {sorted(names)}"
    )


register(
    "conv_encoder",
    conv_encoder,
    params=18_672,
    section=f"{GUIDE}: Use the same graph of layers to define multiple models (encoder)",
    summary="The guide's conv encoder: 28x28x1 image -> 16 features.",
)
register(
    "conv_decoder",
    conv_decoder,
    params=9_569,
    section=f"{GUIDE}: All models are callable, just like layers (decoder)",
    summary="The guide's conv decoder: 16 features -> 28x28x1 image.",
)
register(
    "conv_autoencoder",
    conv_autoencoder,
    params=28_241,
    section=f"{GUIDE}: Use the same graph of layers to define multiple models",
    summary="The guide's conv autoencoder, one graph of layers shared with its encoder.",
)
register(
    "conv_autoencoder_nested",
    conv_autoencoder,
    config=dict(nested=True),
    params=28_241,
    section=f"{GUIDE}: All models are callable, just like layers",
    summary="The guide's conv autoencoder from nested encoder and decoder models.",
)

_IMAGES = {"shape": (28, 28, 1)}
for _name in ("conv_autoencoder", "conv_autoencoder_nested"):
    register_recipe(
        _name,
        Recipe(
            compile=recipes.reconstruction,
            datasets=("digits", "mnist"),
            epochs={"digits": 10, "mnist": 2},
            targets_are_inputs=True,
            dataset_kwargs={"digits": _IMAGES, "mnist": _IMAGES},
        ),
    )
