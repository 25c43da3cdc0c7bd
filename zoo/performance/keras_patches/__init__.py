"""The one door to Keras's and torch's internals.

Every use of ``keras.src``, of ``torch._dynamo`` and of another underscore API of Keras
or torch lives in this package (``tests/test_house.py`` enforces it): ``trainer`` (Keras's
trainer), ``dynamo`` (``torch.compile``'s switches, aten's schemas) and ``torch_backend``
(Keras's torch functions, swapped for a fit or predict). Each is marked with
the version it was written against and the public API that would replace it. Each
patch is applied for the duration of a fit or a predict (``patched``) and restored after
it, never left on for the process. Where Keras or torch differ from the versions below,
a patch whose target is not there (or not of the same signature) is skipped: the plain
path then runs.

Written against Keras 3.15 and torch 2.13; ``docs/performance.md`` says which Keras
version drops which patch.
"""

from zoo.performance.keras_patches.dynamo import (
    aten_fresh,
    aten_function,
    aten_view,
    autograd_traced,
    fresh_code,
    inductor_cache_misses,
    light_metadata,
    tensor_guards_only,
    version,
)
from zoo.performance.keras_patches.torch_backend import (
    TORCH_UNROLL_MAX_STEPS,
    channels_last_torch_inputs,
    fused_torch_lstm,
    keras_device,
    patched,
    same_parameters,
    traceable_ordered_dict,
    traceable_rnn,
)
from zoo.performance.keras_patches.trainer import (
    build_for_training,
    set_train_function,
    train_functions,
)

__all__ = [
    "TORCH_UNROLL_MAX_STEPS",
    "aten_fresh",
    "aten_function",
    "aten_view",
    "autograd_traced",
    "build_for_training",
    "channels_last_torch_inputs",
    "fresh_code",
    "fused_torch_lstm",
    "inductor_cache_misses",
    "keras_device",
    "light_metadata",
    "patched",
    "same_parameters",
    "set_train_function",
    "tensor_guards_only",
    "traceable_ordered_dict",
    "traceable_rnn",
    "train_functions",
    "version",
]
