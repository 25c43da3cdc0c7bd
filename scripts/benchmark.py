"""Benchmarks the zoo's training path against the guide's code and hand-written loops.

Under one backend at a time, for ``mnist_mlp``, ``toy_resnet``, ``conv_autoencoder``
and ``ticket_router`` (batch 64 by default), it measures

- training throughput: samples/s over timed windows after a warm-up window (median,
  min and max of ``--windows`` windows, at least 5 for a real run; with ``--rounds N``
  each implementation runs N times, the rounds interleaved, and its windows are pooled);
- inference throughput over ``--infer-samples`` (batch 256): ``zoo.predict`` with
  ``--fast`` for the zoo, Keras's ``predict`` for the guide's code, the native forward
  loop for the native forms;
- time to first step: from the start of training to the end of its first step
  (tracing and compiling included);
- peak memory: the worker process's peak resident set size (each implementation runs
  in its own process, so the figures do not mix);
- side by side (``--side-by-side``, on unless ``--no-side-by-side``): the zoo's and the
  native forms' training throughput measured once more in one process per model, their
  windows alternating, and zoo / fastest native from those windows alone. This shared
  machine's speed drifts by more than the gaps measured (10-20% between runs minutes
  apart), and separate processes run minutes apart; alternating windows in one process
  share every slow spell.

The implementations are ``zoo`` (``zoo.training.fit`` with ``--fast``, the recipe's
compile), ``guide`` (the guide's model and ``compile`` + ``fit``, in
``benchmarks/guide.py``; for ``mnist_mlp`` and ``toy_resnet``) and ``native`` (each model
written directly in this backend's framework, ``benchmarks/native_*.py``; on torch also
``native_compiled``, its step under ``torch.compile``). Each is first checked to compute
the same thing as the zoo model: from the same weights, the same batches give the same
losses (native) or the same predictions (guide).

Usage::

    python scripts/benchmark.py --backend jax                       # all four models
    python scripts/benchmark.py --backend torch --models mnist_mlp
    python scripts/benchmark.py --backend tensorflow --docs docs/benchmarks.md
    python scripts/benchmark.py --backend jax --quick               # a few steps: smoke test

On a GPU (``--device gpu``, the default where the backend sees one) the defaults are a
GPU's: batch 256, ``GPU_WINDOW_STEPS``, 2 windows, the zoo against the native forms in
the side-by-side worker alone (``--no-separate``: each process costs its imports and
the device's start, 6-14 s there; no guide code), a 120 s budget
(``--budget``: half of it for the models, half for the probe; a worker that would run
past its share is stopped and named in the report),
and the precision probe (``--mixed``) of toy_resnet and vgg19_features: training and
predict samples/s in float32 with full precision, in float32 with TF32, and under
``mixed_bfloat16``, with the TFLOP/s they reach and their share of the GPU's bf16
matrix peak, measured in the same process (an 8192x8192x8192 bf16 product). Any flag
given overrides the profile's value.

End to end (``--end-to-end``, instead of the above): a run of N steps (``--e2e-steps``,
default 500, 5,000 and 50,000) with the zoo's defaults (``zoo.training.fit``,
``fast="auto"``) against each native loop, each in a fresh process, from the first
step's compile to the last step's end (the model built and the data in memory
before): what a user's run costs. The data is 500 batches, the zoo's epochs and the
native loops' batch order both cycling over them. A size whose predecessor took more
than a tenth of ``--e2e-budget`` (per form, 300 s by default) is not run: that the
report says, with the time it would take.

It prints a markdown table and the ratios zoo/native and zoo/guide, and writes JSON
(``--json``); ``--docs`` replaces this backend's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.cli import add_backend_argument, use_backend  # noqa: E402 (lazy: no keras yet)

MODELS = ("mnist_mlp", "toy_resnet", "conv_autoencoder", "ticket_router")
IMPLS = ("zoo", "guide", "native", "native_compiled")
# "native_compiled": the PyTorch reference with its step under torch.compile (torch only);
# the zoo is compared with the faster of the two native forms
NATIVE = ("native", "native_compiled")
SIDE_BY_SIDE = "side_by_side"  # the worker that alternates the zoo's and the natives' windows
GUIDED = ("mnist_mlp", "toy_resnet")  # the models with the guide's compile + fit code
# Steps per timed window: an MNIST epoch for the MLP, fewer for the slower models.
WINDOW_STEPS = {"mnist_mlp": 938, "toy_resnet": 15, "conv_autoencoder": 40, "ticket_router": 60}
# The GPU profile: steps per window at batch 256, a window of a few tenths of a second or
# more on an H200 while the whole benchmark of a backend stays within its budget
GPU_WINDOW_STEPS = {
    "mnist_mlp": 200,
    "toy_resnet": 60,
    "conv_autoencoder": 100,
    "ticket_router": 100,
}
# Each worker process costs its imports and the device's start before anything is timed:
# 13.5 s for Keras on torch and 6.6 s on JAX on the lent H200 (2026-12-04,
# docs/gpu.md), so on a GPU every implementation of a model runs in the side-by-side
# worker alone (its checks included) and the probe's models in one worker.
GPU_PROFILE = {
    "models": ["mnist_mlp", "toy_resnet"],
    "impls": ["zoo", "native", "native_compiled"],
    "batch_size": 256,
    "windows": 2,
    "separate": False,
    "side_by_side": True,
    "budget": 120.0,
    "mixed": ["toy_resnet", "vgg19_features"],
}
CPU_PROFILE = {
    "models": list(MODELS),
    "impls": list(IMPLS),
    "batch_size": 64,
    "windows": 5,
    "separate": True,
    "side_by_side": True,
    "budget": None,
    "mixed": [],
}
# The precision probe: the models, their batch and steps per window on a GPU (vgg19 at
# 224x224, the ImageNet size), and the settings each is timed under
PROBE_MODELS = ("toy_resnet", "vgg19_features")
PROBE_BATCH = {"toy_resnet": 256, "vgg19_features": 64}
PROBE_STEPS = {"toy_resnet": 30, "vgg19_features": 10}
PROBE_SETTINGS = (("float32", "highest"), ("float32", "tf32"), ("mixed_bfloat16", "tf32"))
PROBE = "precision_probe"  # the worker that runs the probe of one model
E2E = "end_to_end"  # the worker of one end-to-end run: "end_to_end:<form>:<steps>"
E2E_STEPS = (500, 5000, 50000)
E2E_WINDOW = 500  # batches of data an end-to-end run cycles over (divides every size)
FIRST_KEYS = ("first_step_s", "predict_samples_s")
FIRST = "first"  # the end-to-end worker of a one-step fit and predict: "end_to_end:<form>:first"
CHECK_STEPS = 10  # steps of the equivalence check
CHECK_RTOL = 1e-3  # relative tolerance of the equivalence check (float32, 10 steps)


# -- the worker: one implementation of one model, in its own process -----------------------
def _data(model_name, n, seed=0):
    """``(x, y)``: random inputs shaped as the model's data (tickets for the router)."""
    import numpy as np

    from benchmarks.common import synthetic

    if model_name in GUIDED:
        return synthetic(model_name, n, seed)
    if model_name == "conv_autoencoder":
        x = np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)
        return x, x
    from zoo import datasets

    # tickets() holds a fifth out for testing: ask for enough that n remain for training
    (x, y), _ = datasets.tickets(n=2 * n + 10, seed=seed)
    return _take((x, y), n)


def _count(data) -> int:
    """The number of samples in an array or a dict of arrays."""
    import keras

    return len(keras.tree.flatten(data)[0])


def _take(data, n):
    import keras

    return keras.tree.map_structure(lambda a: a[:n], data)


def _zoo_model(model_name, dropout=None):
    import keras

    import zoo
    from zoo.training import recipe_for

    keras.utils.set_random_seed(0)
    overrides = {} if dropout is None else {"dropout": dropout}
    model = zoo.create(model_name, **overrides)
    recipe_for(model_name).compile(model)
    return model


class _Timer:
    """A Keras callback timing each epoch (a window) and the first step."""

    def __new__(cls, start):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.start, self.first_step, self.epochs = start, None, []

            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                if self.first_step is None:
                    self.first_step = time.perf_counter() - self.start

            def on_epoch_end(self, epoch, logs=None):
                self.epochs.append(time.perf_counter() - self.t)

        return Timer()


def _zoo_fit(model, x, y, args, timer):
    """``zoo.training.fit`` for 1 + ``args.windows`` epochs, with the NaN check a zoo run
    has and ``timer`` (a callback) after it; returns the speed settings it chose."""
    from zoo.rundir import RunDir
    from zoo.training import _StopOnNaN, fit

    _, settings = fit(
        model,
        x,
        y,
        batch_size=args.batch_size,
        epochs=1 + args.windows,
        callbacks=[_StopOnNaN(RunDir(".")), timer],
        verbose=0,
        fast=args.fast,
    )
    return settings


def _steps(args, model_name) -> int:
    """Steps per timed window: ``--window-steps``, else the device profile's."""
    return (
        args.window_steps
        or (GPU_WINDOW_STEPS if args.device == "gpu" else WINDOW_STEPS)[model_name]
    )


def _keras_training(impl, model_name, args):
    """Trains through ``fit`` for 1 + windows epochs of one window each."""
    steps = _steps(args, model_name)
    x, y = _take(_data(model_name, steps * args.batch_size), steps * args.batch_size)
    epochs = 1 + args.windows
    if impl == "zoo":
        model = _zoo_model(model_name)
        timer = _Timer(time.perf_counter())
        settings = _zoo_fit(model, x, y, args, timer)
        extra = {"settings": settings.as_dict()}
    else:
        from benchmarks import guide

        model, labels = guide.BUILDERS[model_name](), guide.labels(model_name, y)
        timer = _Timer(time.perf_counter())
        guide.fit(model, x, labels, args.batch_size, epochs, [timer])
        extra = {}
    windows = timer.epochs[1:]
    return model, steps, windows, timer.first_step, extra


def _native_training(model_name, args, backend, compiled=False):
    import importlib

    from benchmarks.common import batch_order, keras_weights

    native = importlib.import_module(f"benchmarks.native_{_FRAMEWORK[backend]}")
    steps = _steps(args, model_name)
    x, y = _data(model_name, steps * args.batch_size)
    options = {"compiled": True} if compiled else {}
    weights = keras_weights(_zoo_model(model_name))
    trainer = native.Trainer(model_name, weights, x, y, **options)
    order = batch_order(_count(x), args.batch_size, steps * (1 + args.windows), seed=1)
    start = time.perf_counter()
    trainer.train(order[:1])
    first_step = time.perf_counter() - start
    windows = []
    for w in range(1 + args.windows):
        t = time.perf_counter()
        trainer.train(order[w * steps : (w + 1) * steps])
        windows.append(time.perf_counter() - t)
    return trainer, steps, windows[1:], first_step, {}


_FRAMEWORK = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}


def _check(impl, model_name, backend):
    """Whether ``impl`` computes what the zoo model computes, from the same weights."""
    if impl == "zoo":
        return {}
    from zoo.precision import float32_precision_scope

    # full float32 for the check, whatever the timed runs use: TF32 moves a loss by 1e-3
    with float32_precision_scope("highest"):
        return _checked(impl, model_name, backend)


def _checked(impl, model_name, backend):
    import importlib

    import numpy as np

    from benchmarks.common import batch_order, keras_weights, take

    x, y = _data(model_name, 4 * 64)
    if impl == "guide":
        from benchmarks import guide

        zoo_model, model = _zoo_model(model_name), guide.BUILDERS[model_name]()
        model.set_weights(zoo_model.get_weights())
        a = zoo_model.predict(x, batch_size=64, verbose=0)
        b = model.predict(x, batch_size=64, verbose=0)
        diff = float(np.max(np.abs(a - b)))
        same = zoo_model.count_params() == model.count_params() and diff <= 1e-5
        return {
            "check": f"same predictions from the same weights (max diff {diff:.1e})",
            "equivalent": bool(same),
        }
    # native: the same losses over CHECK_STEPS steps, without dropout (its random
    # masks differ between implementations)
    dropout = 0.0 if model_name == "toy_resnet" else None
    model = _zoo_model(model_name, dropout)
    native = importlib.import_module(f"benchmarks.native_{_FRAMEWORK[backend]}")
    # (the TensorFlow reference without XLA here: the math is the same, the compile shorter)
    options = {"jit_compile": False} if backend == "tensorflow" else {}
    if impl == "native_compiled":
        options = {"compiled": True}
    trainer = native.Trainer(model_name, keras_weights(model), x, y, dropout=0.0, **options)
    order = batch_order(_count(x), 64, CHECK_STEPS, seed=2)
    theirs = np.array(trainer.losses(order))
    ours = np.array(
        [
            float(model.train_on_batch(take(x, idx), take(y, idx), return_dict=True)["loss"])
            for idx in order
        ]
    )
    diff = float(np.max(np.abs(ours - theirs) / np.abs(ours)))
    return {
        "check": f"same loss over {CHECK_STEPS} steps (max relative diff {diff:.1e})",
        "equivalent": bool(diff <= CHECK_RTOL),
    }


def _side_by_side(model_name, args, backend) -> dict:
    """Training samples/s of the zoo and of each native form on this backend, their
    windows alternating in this one process: the native forms are built and warmed up
    (compiled) first; then after each of the zoo's ``fit`` epochs (a window, the first
    the warm-up) each native form trains one window of the same batches. Returns
    ``{impl: [rate per window]}``."""
    import importlib

    import keras

    from benchmarks.common import batch_order, keras_weights

    native = importlib.import_module(f"benchmarks.native_{_FRAMEWORK[backend]}")
    steps = _steps(args, model_name)
    samples = steps * args.batch_size
    x, y = _take(_data(model_name, samples), samples)
    model = _zoo_model(model_name)
    order = batch_order(_count(x), args.batch_size, steps * (1 + args.windows), seed=1)
    trainers = {}
    for impl in [i for i in NATIVE if i != "native_compiled" or backend == "torch"]:
        options = {"compiled": True} if impl == "native_compiled" else {}
        trainers[impl] = native.Trainer(model_name, keras_weights(model), x, y, **options)
        trainers[impl].train(order[:steps])  # its warm-up window
    rates = {"zoo": [], **{impl: [] for impl in trainers}}

    class Alternate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.start
            if epoch == 0:  # the zoo's warm-up window
                return
            rates["zoo"].append(samples / elapsed)
            for impl, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train(order[epoch * steps : (epoch + 1) * steps])
                rates[impl].append(samples / (time.perf_counter() - start))

    _zoo_fit(model, x, y, args, Alternate())
    return rates


def _side_by_side_checked(model_name, args, backend) -> dict:
    """The side-by-side rates, after each native form's equivalence check (when no
    separate worker runs the check: ``--no-separate``)."""
    import keras

    checks = {}
    if not args.separate:
        for impl in [i for i in NATIVE if i != "native_compiled" or backend == "torch"]:
            checks[impl] = _check(impl, model_name, backend)
        keras.backend.clear_session()
    return {"rates": _side_by_side(model_name, args, backend), "checks": checks}


def _inference(impl, model, model_name, args, data=None, batch_size=256):
    import zoo

    n = args.infer_samples
    x = _data(model_name, n, seed=3)[0] if data is None else data
    n = _count(x)
    times = []
    for _ in range(1 + args.windows):
        t = time.perf_counter()
        if impl in NATIVE:
            model.predict(x, batch_size)
        elif impl in ("zoo", "zoo_auto"):
            fast = "auto" if impl == "zoo_auto" else args.fast
            zoo.predict(model, x, batch_size=batch_size, fast=fast)
        else:  # the guide's code: Keras's own predict
            model.predict(x, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - t)
    return [n / s for s in times[1:]]


def forward_flops(model) -> float:
    """Floating-point operations of one sample's forward pass through the convolutions
    and dense layers (2 per multiply-add; the rest is a rounding error for the probed
    models), nested models included."""
    import math

    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (kh, kw, in / groups, out)
            total += 2 * math.prod(layer.output.shape[1:3]) * math.prod(kernel)
        elif isinstance(layer, keras.layers.Dense):
            kernel = layer.kernel.shape
            total += 2 * math.prod(layer.output.shape[1:-1]) * math.prod(kernel)
    return total


def bf16_peak_tflops(size: int = 8192, repeats: int = 10) -> float | None:
    """This GPU's bf16 matrix rate, measured: ``size``-cubed products of random bf16
    matrices, the mean of ``repeats`` after warm-ups; None without a GPU."""
    import keras

    from zoo.precision import accelerator_present

    if not accelerator_present():
        return None
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        keys = jax.random.split(jax.random.key(0))
        a, b = (jax.random.normal(k, (size, size), jnp.bfloat16) for k in keys)
        matmul = jax.jit(jnp.matmul)
        for _ in range(3):
            matmul(a, b).block_until_ready()
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.block_until_ready()
    else:
        import tensorflow as tf

        a = tf.random.normal((size, size), dtype=tf.bfloat16)
        b = tf.random.normal((size, size), dtype=tf.bfloat16)
        for _ in range(3):
            tf.matmul(a, b).numpy()
        start = time.perf_counter()
        for _ in range(repeats):
            out = tf.matmul(a, b)
        out.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def _probe_model(model_name: str, policy: str, image: int):
    """The probed model built under ``policy`` and compiled: its recipe for toy_resnet;
    for vgg19_features (no recipe: a feature extractor) Adam and the mean squared error
    of its last pooling's features, a fine-tuning step as a throughput probe."""
    import keras

    import zoo
    from zoo.training import recipe_for

    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        if model_name == "vgg19_features":
            model = zoo.create(
                model_name, input_shape=(image, image, 3), layer_names=["block5_pool"]
            )
            model.compile(optimizer="adam", loss="mse")
        else:
            model = zoo.create(model_name)
            recipe_for(model_name).compile(model)
    finally:
        keras.config.set_dtype_policy("float32")
    return model


def _probe_data(model, model_name, n):
    import numpy as np

    if model_name != "vgg19_features":
        return _data(model_name, n)
    x = np.random.default_rng(0).random((n, *model.inputs[0].shape[1:]), dtype=np.float32)
    out = model.output["block5_pool"].shape[1:]
    return x, {"block5_pool": np.zeros((n, *out), np.float32)}


def _precision_probe(model_name: str, args, peak: float | None) -> list[dict]:
    """Training and predict samples/s of ``model_name`` under each of ``PROBE_SETTINGS``
    (the zoo's ``fit`` with ``fast="auto"``, what a user's run gets), the TFLOP/s
    they reach (3 x the forward pass per trained sample) and their share of ``peak``,
    this GPU's bf16 rate measured in the same process (None without a GPU)."""
    from zoo.precision import float32_precision_scope
    from zoo.training import fit

    quick = args.window_steps is not None and args.window_steps < 5
    image = 64 if quick else 224  # vgg19 at the ImageNet size; small for a smoke test
    batch = 8 if quick else PROBE_BATCH[model_name]
    steps = args.window_steps or PROBE_STEPS[model_name]
    flops = forward_flops(_probe_model(model_name, "float32", image))
    rows = []
    for policy, precision in PROBE_SETTINGS:
        with float32_precision_scope(precision):
            model = _probe_model(model_name, policy, image)
            x, y = _probe_data(model, model_name, steps * batch)
            timer = _Timer(time.perf_counter())
            fit(
                model,
                x,
                y,
                batch_size=batch,
                epochs=1 + args.windows,
                callbacks=[timer],
                verbose=0,
                fast="auto",
            )
            train = statistics.median(steps * batch / s for s in timer.epochs[1:])
            infer = _inference("zoo_auto", model, model_name, args, data=x, batch_size=batch)
        tflops = 3 * flops * train / 1e12
        rows.append(
            {
                "model": model_name,
                "policy": policy,
                "precision": precision,
                "batch_size": batch,
                "image": image if model_name == "vgg19_features" else None,
                "train_samples_per_s": train,
                "infer_samples_per_s": statistics.median(infer),
                "first_step_s": timer.first_step,
                "forward_gflop_per_sample": flops / 1e9,
                "train_tflops": tflops,
                "infer_tflops": flops * statistics.median(infer) / 1e12,
                "bf16_peak_tflops": peak,
                "share_of_bf16_peak": None if peak is None else tflops / peak,
            }
        )
    return rows


def _end_to_end(form: str, model_name: str, steps: int, args, backend) -> tuple[float, str]:
    """Seconds of one run of ``steps`` steps of ``form`` (zoo: the defaults), from the
    start of training to the end of its last step, compiling included, and the path the
    zoo's step took ("-" for the native forms and off torch)."""
    import importlib

    from benchmarks.common import batch_order, keras_weights

    samples = E2E_WINDOW * args.batch_size
    x, y = _take(_data(model_name, samples), samples)
    model = _zoo_model(model_name)
    if form in ("zoo", "zoo_again"):
        from zoo.training import fit

        switches = _watch_switches(backend)
        start = time.perf_counter()
        fit(model, x, y, batch_size=args.batch_size, epochs=steps // E2E_WINDOW, verbose=0)
        took = time.perf_counter() - start
        return took, _path_taken(switches)
    native = importlib.import_module(f"benchmarks.native_{_FRAMEWORK[backend]}")
    options = {"compiled": True} if form == "native_compiled" else {}
    order = batch_order(samples, args.batch_size, steps, seed=1)
    start = time.perf_counter()
    trainer = native.Trainer(model_name, keras_weights(model), x, y, **options)
    trainer.train(order)
    return time.perf_counter() - start, "-"


def _first_step_and_predict(form: str, model_name: str, args, backend) -> dict:
    """A new user's first impressions, in a fresh process: the seconds of a one-step
    fit (zoo: the defaults; native: making the trainer and one step), compiling
    included, then ``predict`` throughput (samples/s, the median of ``args.windows``
    after one untimed; zoo: ``zoo.predict`` with the defaults)."""
    import importlib

    from benchmarks.common import batch_order, keras_weights

    x, y = _take(_data(model_name, args.batch_size), args.batch_size)
    model = _zoo_model(model_name)
    if form == "zoo":
        from zoo.training import fit

        start = time.perf_counter()
        fit(model, x, y, batch_size=args.batch_size, epochs=1, verbose=0)
        took, predicting = time.perf_counter() - start, model
    else:
        native = importlib.import_module(f"benchmarks.native_{_FRAMEWORK[backend]}")
        start = time.perf_counter()
        predicting = native.Trainer(model_name, keras_weights(model), x, y)
        predicting.train(batch_order(args.batch_size, args.batch_size, 1, seed=1))
        took = time.perf_counter() - start
    rates = _inference("zoo_auto" if form == "zoo" else "native", predicting, model_name, args)
    return {"first_step_s": took, "predict_samples_s": statistics.median(rates)}


def _watch_switches(backend) -> list:
    """The switches made from now on (what ``fast="auto"`` decided): torch's ``Switch``,
    TensorFlow's ``XlaSwitch``; none on JAX."""
    if backend == "torch":
        from zoo.performance.torch.switch import Switch
    elif backend == "tensorflow":
        from zoo.performance.tensorflow import XlaSwitch as Switch
    else:
        return []
    made, init = [], Switch.__init__

    def keep(self, *a):
        init(self, *a)
        made.append(self)

    Switch.__init__ = keep
    return made


def _path_taken(switches) -> str:
    """What the zoo's step ran as: torch's recorded step replayed, or TensorFlow's plain
    graph; compiled (XLA on TensorFlow) from a step on; or Keras's eager torch step (and
    why); "-" on JAX."""
    if not switches:
        return "-"
    s = switches[-1]
    if s.compiled_at is not None:
        return f"compiled from step {s.compiled_at:,}"
    if s.kind == "eager":
        return f"eager ({s.captured.refused})"
    return "replayed" if s.kind == "captured" else s.kind


def worker(args) -> dict:
    import keras

    backend = keras.backend.backend()
    model_name, impl = args.model, args.impl
    result = {"model": model_name, "impl": impl, "backend": backend}
    if impl.startswith(f"{E2E}:"):
        _, form, steps = impl.split(":")
        if steps == FIRST:
            return {**result, **_first_step_and_predict(form, model_name, args, backend)}
        seconds, path = _end_to_end(form, model_name, int(steps), args, backend)
        return {**result, "seconds": seconds, "path": path}
    if args.precision != "default":
        from zoo.precision import set_float32_precision

        set_float32_precision(args.precision)
    if impl == SIDE_BY_SIDE:
        return {**result, **_side_by_side_checked(model_name, args, backend)}
    if impl == PROBE:  # every model of --mixed, in this one process, against one peak
        peak = bf16_peak_tflops()
        rows = [r for m in model_name.split(",") for r in _precision_probe(m, args, peak)]
        return {**result, "probe": rows}
    result.update(_check(impl, model_name, backend))
    keras.backend.clear_session()
    if impl in NATIVE:
        model, steps, windows, first, extra = _native_training(
            model_name, args, backend, compiled=impl == "native_compiled"
        )
    else:
        model, steps, windows, first, extra = _keras_training(impl, model_name, args)
    rates = [steps * args.batch_size / s for s in windows]
    infer = _inference(impl, model, model_name, args)
    result.update(extra)
    result.update(
        _rates(rates, infer),
        steps_per_window=steps,
        first_step_s=first,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return result


def _rates(train: list[float], infer: list[float]) -> dict:
    """The window rates and their summary: median, min and max training samples/s, the
    number of windows and the median inference samples/s."""
    return dict(
        train_rates=train,
        infer_rates=infer,
        train_samples_per_s=statistics.median(train),
        train_min=min(train),
        train_max=max(train),
        windows=len(train),
        infer_samples_per_s=statistics.median(infer),
    )


# -- the driver -------------------------------------------------------------------------------
def _versions(backend):
    import keras

    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return {
        "keras": keras.__version__,
        backend: __import__(module).__version__,
        "python": platform.python_version(),
    }


def _machine(device="cpu"):
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device != "gpu":
        return f"{cpu}, {os.cpu_count()} cores, {platform.system()} (CPU only)"
    return f"{_gpu_name()}; {cpu}, {os.cpu_count()} cores, {platform.system()}"


def _gpu_name() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    if backend == "jax":
        import jax

        return next(
            (d.device_kind for d in jax.devices() if d.platform == "gpu"), "no GPU seen by JAX"
        )
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        if gpus
        else "no GPU"
    )


def _merge(rounds: list[dict]) -> dict:
    """One implementation's result from its ``--rounds`` runs: the window rates pooled
    (median, min and max over all of them), the median first step, the highest peak RSS."""
    failed = [one for one in rounds if one.get("equivalent") is False]
    merged = dict(failed[0] if failed else rounds[0])  # a check that failed in any round shows
    merged.update(
        _rates(
            [r for one in rounds for r in one["train_rates"]],
            [r for one in rounds for r in one["infer_rates"]],
        ),
        rounds=len(rounds),
        first_step_s=statistics.median(r["first_step_s"] for r in rounds),
        peak_rss_mib=max(r["peak_rss_mib"] for r in rounds),
    )
    return merged


def _merge_side_by_side(model_name: str, rounds: list[dict]) -> dict:
    """One model's side-by-side windows from its rounds, pooled per implementation, and
    its checks (a failed one in any round shows)."""
    rates = {impl: [r for one in rounds for r in one["rates"][impl]] for impl in rounds[0]["rates"]}
    checks = {}
    for one in rounds:
        for impl, check in one.get("checks", {}).items():
            if impl not in checks or check.get("equivalent") is False:
                checks[impl] = check
    return {
        "model": model_name,
        "checks": checks,
        "rates": rates,
        "median": {impl: statistics.median(r) for impl, r in rates.items()},
        "windows": len(rates["zoo"]),
        "rounds": len(rounds),
    }


def run_all(args, backend) -> dict:
    results, side_by_side, probe, stopped = [], [], [], []
    start = time.monotonic()
    # with a budget and a probe, the models' runs get half of it, so that a slow compile
    # there cannot take the probe's share
    share = 0.5 if args.mixed else 1.0
    deadline = None if args.budget is None else start + args.budget * share

    def run(model_name, impl, round_):
        """A worker's result, or None (named in ``stopped``) when the budget ran out."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            stopped.append(f"{model_name} / {impl}: not started, its share of the budget spent")
            return None
        one = _run_worker(args, backend, model_name, impl, round_, timeout=left)
        if one is None:
            stopped.append(f"{model_name} / {impl}: stopped at the end of its share of the budget")
        return one

    for model_name in args.models:
        impls = [
            impl
            for impl in args.impls
            if (impl != "guide" or model_name in GUIDED)
            and (impl != "native_compiled" or backend == "torch")
        ]
        # rounds interleave the implementations (zoo, native, ..., zoo, native, ...), so that
        # a slow spell of this shared machine falls on all of them alike
        runs = {impl: [] for impl in impls}
        paired = []
        for round_ in range(args.rounds):
            for impl in impls if args.separate else ():
                one = run(model_name, impl, round_)
                if one is not None:
                    runs[impl].append(one)
            if args.side_by_side and "zoo" in impls and set(impls) & set(NATIVE):
                one = run(model_name, SIDE_BY_SIDE, round_)
                if one is not None:
                    paired.append(one)
        results += [_merge(runs[impl]) for impl in impls if runs[impl]]
        if paired:
            side_by_side.append(_merge_side_by_side(model_name, paired))
    if args.budget is not None:
        deadline = start + args.budget
    if args.mixed:
        one = run(",".join(args.mixed), PROBE, 0)
        if one is not None:
            probe += one["probe"]
    return {
        "backend": backend,
        "date": date.today().isoformat(),
        "machine": _machine(args.device),
        "device": args.device,
        "versions": _versions(backend),
        "batch_size": args.batch_size,
        "fast": args.fast,
        "precision": args.precision,
        "rounds": args.rounds,
        "results": results,
        "side_by_side": side_by_side,
        "probe": probe,
        "stopped": stopped,
    }


def run_end_to_end(args, backend) -> dict:
    """Every model's end-to-end runs (``--end-to-end``): per size, the zoo's defaults and
    each native form, each in its own process."""
    # run again: the zoo a second time, with what the first run cached (a returning user:
    # the compile costs on torch and TensorFlow, JAX's compiled programs)
    forms = ["zoo", "zoo_again", "native"] + (["native_compiled"] if backend == "torch" else [])
    cache = _cost_cache_note()  # before the runs, which add to it
    rows, firsts = [], []
    for model_name in args.models:
        last: dict[str, tuple[int, float]] = {}
        for steps in sorted(args.e2e_steps):
            row = {"model": model_name, "steps": steps, "seconds": {}, "skipped": {}}
            for form in forms:
                if form in last:
                    done, took = last[form]
                    guess = took * steps / done
                    if took > args.e2e_budget / 10 or guess > args.e2e_budget:
                        row["skipped"][form] = f"not run: about {guess:,.0f} s"
                        continue
                one = _run_worker(args, backend, model_name, f"{E2E}:{form}:{steps}", 0,
                                  timeout=args.e2e_budget)  # fmt: skip
                if one is None:
                    row["skipped"][form] = f"stopped after {args.e2e_budget:.0f} s"
                    last[form] = (steps, float("inf"))
                    continue
                row["seconds"][form] = one["seconds"]
                if form.startswith("zoo"):
                    row["path" if form == "zoo" else "path_again"] = one["path"]
                last[form] = (steps, one["seconds"])
            rows.append(row)
        first = {"model": model_name}  # a new user's first step and predict, each form fresh
        for form in ("zoo", "native"):
            one = _run_worker(args, backend, model_name, f"{E2E}:{form}:{FIRST}", 0,
                              timeout=args.e2e_budget)  # fmt: skip
            first[form] = None if one is None else {k: one[k] for k in FIRST_KEYS}
        firsts.append(first)
    return {
        "backend": backend,
        "date": date.today().isoformat(),
        "machine": _machine(args.device),
        "versions": _versions(backend),
        "batch_size": args.batch_size,
        "cost_cache": cache,
        "end_to_end": rows,
        "first_step": firsts,
    }


def _setting(report) -> str:
    """A report's first line: the date, the machine, the versions and the batch size."""
    versions = ", ".join(f"{k} {val}" for k, val in report["versions"].items())
    return f"{report['date']}; {report['machine']}; {versions}; batch {report['batch_size']}"


def _cost_cache_note() -> str:
    """Where ``fast="auto"``'s compile-cost cache is and what it held at the start."""
    from zoo.performance import costs

    path = costs.cache_dir() / costs.FILE
    try:
        entries = len(json.loads(path.read_text()))
    except (OSError, ValueError):
        entries = 0
    programs = len(list((costs.cache_dir() / "jax").glob("*-cache")))
    return f"{path} ({entries} entries and {programs} JAX programs at the start)"


def end_to_end_markdown(report) -> str:
    lines = [
        f"### {report['backend']}: end to end",
        "",
        _setting(report) + ". Seconds from the first step's start (compiling "
        "included) to the last step's end, each run in a fresh process; zoo / native is the "
        "fastest native form's time over the zoo's (above 1: the zoo is faster). Compile-"
        f"cost cache: {report.get('cost_cache', 'not recorded')}. Run again: the zoo's same "
        "run right after, with what the first one cached (a returning user: the compile "
        "costs; on JAX, its compiled programs).",
        "",
        "| model | steps | zoo, defaults (s) | native (s) | native compiled (s) | zoo / native "
        "| zoo's step | run again (s) | zoo / native, again | its step |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in report["end_to_end"]:
        seconds, skipped = row["seconds"], row["skipped"]

        def cell(form, seconds=seconds, skipped=skipped):
            if form in seconds:
                return f"{seconds[form]:,.2f}"
            return skipped.get(form, "-")

        natives = [seconds[f] for f in NATIVE if f in seconds]

        def ratio(form, seconds=seconds, natives=natives):
            if not natives or form not in seconds:
                return "-"
            return f"**{min(natives) / seconds[form]:.2f}x**"

        lines.append(
            f"| `{row['model']}` | {row['steps']:,} | {cell('zoo')} | {cell('native')} | "
            f"{cell('native_compiled')} | {ratio('zoo')} | {row.get('path', '-')} | "
            f"{cell('zoo_again')} | {ratio('zoo_again')} | {row.get('path_again', '-')} |"
        )
    if report.get("first_step"):
        lines += [
            "",
            "A new user's first step and predict, with the defaults, each in a fresh process: "
            "the seconds of a one-step fit (native: making the trainer and one step), "
            "compiling included; then predict samples/s (batch 256; zoo: `zoo.predict`).",
            "",
            "| model | first step, zoo (s) | first step, native (s) | predict, zoo (samples/s) "
            "| predict, native (samples/s) | zoo / native predict |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for first in report["first_step"]:
            zoo_, native = first.get("zoo"), first.get("native")

            def value(one, key, form):
                return "not run" if one is None else form.format(one[key])

            ratio = "-"
            if zoo_ is not None and native is not None:
                ratio = f"**{zoo_['predict_samples_s'] / native['predict_samples_s']:.2f}x**"
            lines.append(
                f"| `{first['model']}` | {value(zoo_, 'first_step_s', '{:,.2f}')} | "
                f"{value(native, 'first_step_s', '{:,.2f}')} | "
                f"{value(zoo_, 'predict_samples_s', '{:,.0f}')} | "
                f"{value(native, 'predict_samples_s', '{:,.0f}')} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def _run_worker(args, backend, model_name, impl, round_, timeout=None) -> dict | None:
    """One implementation of one model, timed in its own process; None when it ran past
    ``timeout`` seconds."""
    cmd = [
        sys.executable,
        __file__,
        "--backend",
        backend,
        "--worker",
        "--model",
        model_name,
        "--impl",
        impl,
        *args.passthrough,
    ]
    round_note = f" (round {round_ + 1} of {args.rounds})" if args.rounds > 1 else ""
    print(f"[{backend}] {model_name} / {impl}{round_note} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"benchmark: {model_name} / {impl} failed on {backend}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(report) -> list[dict]:
    """zoo/native and zoo/guide training throughput, per model."""
    by = {(r["model"], r["impl"]): r for r in report["results"]}
    rows = []
    for model_name in MODELS:
        zoo_result = by.get((model_name, "zoo"))
        if zoo_result is None:  # the side-by-side worker alone (--no-separate)
            row = {"model": model_name}
            pooled, paired = (
                _side_by_side_ratio(report, model_name),
                _paired_ratio(report, model_name),
            )
            if pooled is not None:
                rows.append(row | {"zoo/native side by side": pooled, "zoo/native paired": paired})
            continue
        row = {"model": model_name}
        natives = [by[(model_name, i)] for i in NATIVE if (model_name, i) in by]
        if natives:  # the fastest native form on this backend
            best = max(r["train_samples_per_s"] for r in natives)
            row["zoo/native"] = zoo_result["train_samples_per_s"] / best
        if (model_name, "guide") in by:
            row["zoo/guide"] = (
                zoo_result["train_samples_per_s"] / by[(model_name, "guide")]["train_samples_per_s"]
            )
        pooled, paired = _side_by_side_ratio(report, model_name), _paired_ratio(report, model_name)
        if pooled is not None:
            row["zoo/native side by side"] = pooled
        if paired is not None:
            row["zoo/native paired"] = paired
        rows.append(row)
    return rows


def _side_by_side_ratio(report, model_name: str) -> float | None:
    """The zoo's median side-by-side window rate over the fastest native form's."""
    for one in report.get("side_by_side", []):
        if one["model"] == model_name:
            median = one["median"]
            return median["zoo"] / max(v for impl, v in median.items() if impl in NATIVE)
    return None


def _paired_ratio(report, model_name: str) -> float | None:
    """The median, over the side-by-side windows, of each zoo window's rate over the
    rate of the fastest native form's window right after it (the fastest by median
    rate, as in ``_side_by_side_ratio``). The ratio of medians compares two medians
    taken over the whole run, so a slow spell that hits more of one form's windows than
    the other's moves it; each pair's windows ran within a second of each other (this
    machine's speed moved 40% between two rounds a minute apart, both forms alike:
    torch ticket_router 7,000 -> 4,200 samples/s, 2026-11-29)."""
    for one in report.get("side_by_side", []):
        if one["model"] == model_name and "rates" in one:
            median = {impl: v for impl, v in one["median"].items() if impl in NATIVE}
            fastest = max(median, key=median.get)
            pairs = zip(one["rates"]["zoo"], one["rates"][fastest], strict=True)
            return statistics.median(z / n for z, n in pairs)
    return None


def markdown(report) -> str:
    lines = [
        f"### {report['backend']}",
        "",
        _setting(report)
        + f"; zoo with `fast={report['fast']!r}`"
        + (
            f"; {report['rounds']} interleaved rounds of each implementation, their windows pooled."
            if report.get("rounds", 1) > 1
            else "."
        ),
        "",
        "| model | implementation | train samples/s (median [min, max]) | steps/s | "
        "time to first step (s) | predict samples/s | peak RSS (MiB) | same math |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        check = {True: "yes", False: "**NO**"}.get(r.get("equivalent"), "(is the zoo)")
        lines.append(
            f"| `{r['model']}` | {r['impl']} | {r['train_samples_per_s']:,.0f} "
            f"[{r['train_min']:,.0f}, {r['train_max']:,.0f}] | "
            f"{r['train_samples_per_s'] / report['batch_size']:,.0f} | {r['first_step_s']:.2f} | "
            f"{r['infer_samples_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} | {check} |"
        )
    if report.get("side_by_side"):
        lines += [
            "",
            "Side by side: the zoo's and the native forms' windows alternating in one process "
            "per model (train samples/s, median [min, max]).",
            "",
            "| model | implementation | train samples/s | windows | same math |",
            "|---|---|---:|---:|---|",
        ]
        for one in report["side_by_side"]:
            for impl, rates in one["rates"].items():
                check = one.get("checks", {}).get(impl, {})
                same = {True: "yes", False: "**NO**"}.get(check.get("equivalent"), "-")
                lines.append(
                    f"| `{one['model']}` | {impl} | {one['median'][impl]:,.0f} "
                    f"[{min(rates):,.0f}, {max(rates):,.0f}] | {len(rates)} | {same} |"
                )
    keys = ("zoo/native", "zoo/native side by side", "zoo/native paired", "zoo/guide")
    lines += [
        "",
        "| model | zoo / fastest native | zoo / fastest native, side by side | "
        "side by side, median of paired windows | zoo / guide code |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in ratios(report):
        cells = [f"{row[k]:.2f}x" if k in row else "-" for k in keys]
        lines.append(f"| `{row['model']}` | " + " | ".join(cells) + " |")
    lines += _probe_markdown(report.get("probe", []))
    if report.get("stopped"):
        lines += ["", "Not measured: " + "; ".join(report["stopped"]) + "."]
    return "\n".join(lines) + "\n"


def _probe_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    peak = rows[0]["bf16_peak_tflops"]
    lines = [
        "",
        'Precision probe: the zoo\'s `fit` and `predict` with `fast="auto"`; TFLOP/s from '
        "the convolutions' and dense layers' operations (3 x the forward pass per trained "
        "sample); the bf16 peak "
        + ("measured here (8192-cubed bf16 products)" if peak else "not measured (no GPU)")
        + (f": {peak:,.0f} TFLOP/s." if peak else "."),
        "",
        "| model | dtype policy | float32 matmuls | batch | forward GFLOP/sample "
        "| train samples/s | train TFLOP/s | share of the bf16 peak | predict samples/s "
        "| time to first step (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = "-" if r["share_of_bf16_peak"] is None else f"{r['share_of_bf16_peak']:.1%}"
        size = f" ({r['image']}x{r['image']})" if r.get("image") else ""
        lines.append(
            f"| `{r['model']}`{size} | {r['policy']} | {r['precision']} | {r['batch_size']} | "
            f"{r['forward_gflop_per_sample']:.3g} | {r['train_samples_per_s']:,.0f} | "
            f"{r['train_tflops']:,.1f} | {share} | "
            f"{r['infer_samples_per_s']:,.0f} | {r['first_step_s']:.2f} |"
        )
    return lines


BACKENDS = ("tensorflow", "jax", "torch")


def _fastest(results):
    return max(results, key=lambda r: r["train_samples_per_s"]) if results else None


def summary(reports: list[dict]) -> str:
    """One table across backends (from each backend's JSON report): per model and
    backend the zoo's and the fastest native form's training and predict throughput,
    time to first step and peak RSS, their ratios, and per model the best zoo backend
    against the best native implementation on any backend."""
    lines = [
        "### All backends",
        "",
        "From the JSON reports of "
        + ", ".join(f"{r['backend']} ({r['date']}, zoo `fast={r['fast']!r}`)" for r in reports)
        + f"; batch {reports[0]['batch_size']}; {reports[0]['machine']}. Native: the fastest "
        "native form on that backend (on torch, eager or `torch.compile`d).",
        "",
        "| model | backend | zoo train samples/s | native train samples/s | zoo / native train | "
        "zoo predict samples/s | native predict samples/s | zoo / native predict | "
        "first step zoo / native (s) | peak RSS zoo / native (MiB) | "
        "zoo / native train, side by side (medians; paired windows) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best_lines = []
    for model_name in MODELS:
        zoos, natives = [], []
        for report in reports:
            rows = [r for r in report["results"] if r["model"] == model_name]
            zoo_row = next((r for r in rows if r["impl"] == "zoo"), None)
            native = _fastest([r for r in rows if r["impl"] in NATIVE])
            if zoo_row is None:
                continue
            zoos.append((report["backend"], zoo_row))
            if native is not None:
                natives.append((report["backend"], native))
            cells = [f"{zoo_row['train_samples_per_s']:,.0f}"]
            pooled = _side_by_side_ratio(report, model_name)
            paired = _paired_ratio(report, model_name)
            side = (
                "-"
                if pooled is None
                else f"{pooled:.2f}x" + ("" if paired is None else f"; {paired:.2f}x")
            )
            if native is None:
                cells += ["-", "-", f"{zoo_row['infer_samples_per_s']:,.0f}", "-", "-"]
                cells += [
                    f"{zoo_row['first_step_s']:.2f} / -",
                    f"{zoo_row['peak_rss_mib']:,.0f} / -",
                    side,
                ]
            else:
                cells += [
                    f"{native['train_samples_per_s']:,.0f} ({native['impl']})",
                    f"**{zoo_row['train_samples_per_s'] / native['train_samples_per_s']:.2f}x**",
                    f"{zoo_row['infer_samples_per_s']:,.0f}",
                    f"{native['infer_samples_per_s']:,.0f}",
                    f"{zoo_row['infer_samples_per_s'] / native['infer_samples_per_s']:.2f}x",
                    f"{zoo_row['first_step_s']:.2f} / {native['first_step_s']:.2f}",
                    f"{zoo_row['peak_rss_mib']:,.0f} / {native['peak_rss_mib']:,.0f}",
                    side,
                ]
            lines.append(f"| `{model_name}` | {report['backend']} | " + " | ".join(cells) + " |")
        if zoos and natives:
            zb, zr = max(zoos, key=lambda t: t[1]["train_samples_per_s"])
            nb, nr = max(natives, key=lambda t: t[1]["train_samples_per_s"])
            best_lines.append(
                f"| `{model_name}` | {zb} ({zr['train_samples_per_s']:,.0f}) | "
                f"{nb} {nr['impl']} ({nr['train_samples_per_s']:,.0f}) | "
                f"**{zr['train_samples_per_s'] / nr['train_samples_per_s']:.2f}x** |"
            )
    lines += [
        "",
        "| model | best zoo backend (train samples/s) | best native, any backend "
        "| best zoo / best native |",
        "|---|---|---|---:|",
        *best_lines,
    ]
    return "\n".join(lines) + "\n"


def update_summary(docs: Path, reports_dir: Path) -> None:
    """Rewrites the cross-backend section of ``docs`` from the reports in ``reports_dir``."""
    reports = [
        json.loads((reports_dir / f"{b}.json").read_text())
        for b in BACKENDS
        if (reports_dir / f"{b}.json").exists()
    ]
    if reports:
        update_docs(docs, "summary", summary(reports))


def update_docs(path: Path, backend: str, text: str) -> None:
    """Replaces this backend's section of ``path`` (between its markers)."""
    from zoo._io import atomic_write

    begin, end = f"<!-- bench:{backend}:begin -->", f"<!-- bench:{backend}:end -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"benchmark: {path} has no {begin} ... {end} section")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{text}{end}{tail}"
    atomic_write(path, lambda p: p.write_text(new))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="the profile's defaults: a GPU's (batch 256, longer windows, the zoo against "
        "the native forms, a 120 s budget, the precision probe) or a CPU's; auto picks gpu "
        "where the backend sees one",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS)
    parser.add_argument("--impls", nargs="+", choices=IMPLS)
    parser.add_argument("--batch-size", type=int, help="default 64 (CPU), 256 (GPU)")
    parser.add_argument("--windows", type=int, help="timed windows (default 5; 2 on a GPU)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of each implementation, interleaved; their windows are pooled (default 1)",
    )
    parser.add_argument("--window-steps", type=int, help="steps per window (default: per model)")
    parser.add_argument(
        "--side-by-side",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the zoo and the native forms in one process, their windows "
        "alternating, once per round (default: on, off on a GPU)",
    )
    parser.add_argument(
        "--separate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time each implementation in its own process too (default: on; off on a GPU, "
        "where the side-by-side worker runs the checks)",
    )
    parser.add_argument(
        "--mixed",
        nargs="*",
        choices=PROBE_MODELS,
        help="the precision probe of these models (default: none; both on a GPU)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for all the workers; one still running at the end is stopped and "
        "named (default: none; 120 on a GPU)",
    )
    parser.add_argument(
        "--precision",
        choices=("default", "highest", "tf32"),
        default="default",
        help="float32 matrix precision of the timed runs (default: the backend's own; "
        "the equivalence checks always run at highest)",
    )
    parser.add_argument("--infer-samples", type=int, default=4096)
    parser.add_argument(
        "--fast",
        choices=("auto", "on", "off"),
        default="on",
        help="the zoo's speed settings (default: on, as for a long run)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 windows of 3 steps, fast=auto: a smoke test, not a measurement",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="instead: runs of --e2e-steps steps with the zoo's defaults against each native "
        "loop, compiling included, each in a fresh process",
    )
    parser.add_argument("--e2e-steps", type=int, nargs="+", default=list(E2E_STEPS))
    parser.add_argument(
        "--e2e-budget", type=float, default=300.0, help="seconds per end-to-end run at most"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--docs", type=Path, help="replace this backend's section of this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.window_steps, args.infer_samples, args.fast = 2, 3, 256, "auto"
    for name in ("batch_size", "windows", "rounds", "infer_samples", "window_steps", "budget"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    return args


def apply_profile(args, gpu: bool):
    """Fills what the command line left unset from the device's profile (``--device
    auto``: ``gpu`` says whether the backend sees a GPU) and the workers' arguments."""
    if args.device == "auto":
        args.device = "gpu" if gpu else "cpu"
    elif args.device == "gpu" and not gpu and not args.worker:
        raise SystemExit("benchmark: --device gpu but the backend sees no GPU; use --device cpu")
    profile = GPU_PROFILE if args.device == "gpu" else CPU_PROFILE
    for name, value in profile.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.passthrough = [
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--windows",
        str(args.windows),
        "--infer-samples",
        str(args.infer_samples),
        "--fast",
        args.fast,
        "--precision",
        args.precision,
        "--separate" if args.separate else "--no-separate",
        *(["--window-steps", str(args.window_steps)] if args.window_steps else []),
    ]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    backend = use_backend(args.backend)
    from zoo.precision import accelerator_present

    apply_profile(args, accelerator_present())
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.end_to_end:
        bad = [n for n in args.e2e_steps if n < E2E_WINDOW or n % E2E_WINDOW]
        if bad:
            raise SystemExit(f"benchmark: --e2e-steps must be multiples of {E2E_WINDOW}, got {bad}")
        report = run_end_to_end(args, backend)
        text = end_to_end_markdown(report)
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if args.docs:
            update_docs(args.docs, f"{backend}-e2e", text)
        return 0
    report = run_all(args, backend)
    text = markdown(report)
    print(text)
    for row in ratios(report):
        print(
            f"{backend} {row['model']}: "
            + ", ".join(f"{k} = {v:.2f}x" for k, v in row.items() if k != "model")
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.docs:
        update_docs(args.docs, backend, text)
        if args.json:  # the cross-backend table, from every backend's report there
            update_summary(args.docs, args.json.parent)
    failed = [r for r in report["results"] if r.get("equivalent") is False]
    failed += [
        {"model": one["model"], "impl": impl, **check}
        for one in report["side_by_side"]
        for impl, check in one.get("checks", {}).items()
        if check.get("equivalent") is False
    ]
    if failed:
        print(
            "benchmark: not the same math: "
            + ", ".join(f"{r['model']}/{r['impl']} ({r['check']})" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
