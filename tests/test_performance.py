"""The training path's speed settings (``zoo.performance``) change the speed, never the
results; the benchmark's reference implementations compute what the zoo computes.
(No timings are asserted here: ``scripts/benchmark.py`` measures them.)"""

import contextlib
import importlib.util
import json
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import instances_made, quick_torch_compile

import zoo
from zoo import performance
from zoo.performance import costs, keras_patches
from zoo.performance import settings as perf_settings
from zoo.performance.torch import step as torch_step
from zoo.performance.torch import switch as torch_switch
from zoo.performance.torch import window as torch_window
from zoo.testing import ROUND_TRIP_TOLERANCE as TOLERANCE
from zoo.training import fit, recipe_for, train

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parent.parent


def _history(model_name, x, y, fast, epochs=3, batch_size=64):
    keras.utils.set_random_seed(0)
    model = zoo.create(model_name)
    recipe_for(model_name).compile(model)
    history, settings = fit(
        model, x, y, batch_size=batch_size, epochs=epochs, seed=1, verbose=0, fast=fast
    )
    return history.history, settings, model


def _mnist_like(n=300):
    rng = np.random.default_rng(0)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype("int32")


def test_fast_settings_give_the_plain_paths_loss_curve(monkeypatch):
    steps = []  # the compiled torch step, to check which kind ran
    make_step = torch_window.compiled_train_step
    monkeypatch.setattr(
        torch_window, "compiled_train_step", lambda *a: steps.append(make_step(*a)) or steps[-1]
    )
    switches = instances_made(monkeypatch, torch_switch.Switch)
    x, y = _mnist_like()  # 300 samples: 4 full batches and a partial one per epoch
    plain, off, plain_model = _history("mnist_mlp", x, y, "off")
    fast, on, fast_model = _history("mnist_mlp", x, y, "on")
    assert off.steps_per_execution == 1 and off.pipeline == "pydataset"
    assert on != off  # something really changed on every backend
    if BACKEND == "torch":  # the recording compiled at once (inductor), from the third step
        (switch,) = switches
        assert switch.kind == "compiled" and switch.compiled_at == 2 and not steps
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(fast[key], plain[key], rtol=1e-4, atol=1e-6)
    for a, b in zip(fast_model.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_fast_pipeline_feeds_multi_input_multi_output_models():
    from zoo import datasets

    (x, y), _ = datasets.tickets(n=200, seed=0, num_words=500)
    x = {k: v for k, v in x.items()}

    def run(fast):
        keras.utils.set_random_seed(0)
        model = zoo.create("ticket_router", num_words=500)
        recipe_for("ticket_router").compile(model)
        history, _ = fit(model, x, y, batch_size=32, epochs=2, seed=3, verbose=0, fast=fast)
        return history.history

    plain, fast = run("off"), run("auto")
    assert set(fast) == set(plain)
    for key in plain:
        np.testing.assert_allclose(fast[key], plain[key], rtol=1e-4, atol=1e-6)


def test_settings_per_backend():
    on = performance.settings_for("on", steps_per_epoch=5, epochs=1)
    auto_short = performance.settings_for("auto", steps_per_epoch=10, epochs=2)
    auto_long = performance.settings_for("auto", steps_per_epoch=1024, epochs=20)
    off = performance.settings_for("off", steps_per_epoch=1000, epochs=20)
    conv = performance.settings_for("on", 1000, 1, zoo.create("toy_resnet"))
    assert off == performance.Settings("off", BACKEND)
    assert on.window and auto_long.window
    # JAX runs convolutions in Keras's own loop (XLA ran them far slower inside a loop)
    assert conv.window == (BACKEND != "jax")
    assert on.steps_per_execution == 5  # never more than an epoch
    if BACKEND == "tensorflow":
        assert on.jit_compile is True and on.pipeline == "in-graph"
        # "auto" starts as a plain graph, XLA-compiled from where it pays (XlaSwitch)
        assert auto_long.jit_compile is False and auto_short.jit_compile is False
        assert auto_long.compile_when_pays and auto_long.planned_steps == 20480
        assert not on.compile_when_pays and not conv.compile_when_pays
        assert auto_short.window and auto_short.pipeline == "in-graph"
        assert conv.jit_compile is False  # XLA ran convolutions in a loop ~35x slower here
    elif BACKEND == "jax":
        assert on.pipeline == "in-graph" and on.jit_compile is None
        assert conv.steps_per_execution == 8 and conv.pipeline == "pydataset"
    if BACKEND in ("tensorflow", "jax"):
        # the window reads its own batches, so it need not divide the epoch
        assert auto_long.steps_per_execution == performance.STEPS_PER_EXECUTION
        if BACKEND == "tensorflow":
            assert conv.steps_per_execution == performance.CONV_STEPS_PER_EXECUTION
    else:
        # "auto" never compiles from the start: it replays Keras's recorded step and
        # compiles mid-run where the measured costs say it pays (torch.switch)
        assert on.torch_compile and not on.compile_when_pays
        assert not auto_long.torch_compile and auto_long.compile_when_pays
        assert auto_long.planned_steps == 20480 and auto_short.compile_when_pays
        assert on.pipeline == "torch"
        assert on.held_heap and auto_short.held_heap and not off.held_heap  # heap.held
        # torch's window takes its batches from Keras's iterator: it divides the epoch
        # (a shorter last window made Keras warn that the input ran out of data)
        for steps in (18, 1000, 23, 938):
            spe = performance.settings_for("on", steps, 1).steps_per_execution
            assert steps % spe == 0 and spe <= performance.STEPS_PER_EXECUTION
            most = min(performance.STEPS_PER_EXECUTION, steps)
            assert all(steps % d for d in range(spe + 1, most + 1))
        # convolution models compile too (as one graph), reading channels-last images
        for name in ("toy_resnet", "conv_autoencoder_nested"):
            conv = performance.settings_for("on", 5, 1, zoo.create(name))
            assert conv.torch_compile and conv.pipeline == "torch" and conv.channels_last
        recurrent = performance.settings_for("on", 5, 1, zoo.create("lstm_classifier"))
        assert recurrent.torch_compile and recurrent.fused_lstm and not recurrent.channels_last


def test_the_window_gives_the_plain_paths_curve_for_a_conv_model_and_short_windows(monkeypatch):
    """A model with convolutions (a plain-graph window on TensorFlow), windows that do not
    divide the epoch (9 steps in windows of 4) and a partial last batch (130 = 8 x 16 + 2)."""
    monkeypatch.setattr(perf_settings, "CONV_STEPS_PER_EXECUTION", 4)
    graphs = quick_torch_compile(monkeypatch) if BACKEND == "torch" else []
    x = np.random.default_rng(0).random((130, 28, 28, 1), dtype=np.float32)

    def run(fast):
        keras.utils.set_random_seed(0)
        model = zoo.create("conv_autoencoder")
        recipe_for("conv_autoencoder").compile(model)
        history, settings = fit(model, x, x, batch_size=16, epochs=2, seed=4, verbose=0, fast=fast)
        return history.history, settings, model

    (plain, _, plain_model), (fast, settings, fast_model) = run("off"), run("on")
    # TensorFlow: windows of 4; torch: of 3 (a divisor of 9); JAX: Keras's loop, 3 steps a call
    assert settings.window == (BACKEND != "jax") and settings.steps_per_execution in (3, 4)
    assert settings.channels_last == (BACKEND == "torch")
    if BACKEND == "torch":  # the step compiled as one graph; Keras's own function is back
        assert settings.torch_compile and len(graphs) == 1
        from keras.src.backend.torch import nn as torch_nn

        assert torch_nn._transpose_spatial_inputs.__module__ == torch_nn.__name__
    np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-4, atol=1e-6)
    for a, b in zip(fast_model.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_validation_inside_the_window_path_matches_the_plain_path():
    x, y = _mnist_like(300)  # 5 training steps, and 2 validation steps (70 samples)
    val = _mnist_like(370)
    val = (val[0][300:], val[1][300:])

    def run(fast):
        keras.utils.set_random_seed(0)
        model = zoo.create("mnist_mlp")
        recipe_for("mnist_mlp").compile(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history, _ = fit(
                model,
                x,
                y,
                batch_size=64,
                epochs=2,
                seed=1,
                verbose=0,
                fast=fast,
                validation_data=val,
            )
        assert not [w for w in caught if "ran out of data" in str(w.message)]
        return history.history, model

    (plain, _), (fast, model) = run("off"), run("on")
    for key in ("val_loss", "val_accuracy", "loss"):
        np.testing.assert_allclose(fast[key], plain[key], rtol=1e-4, atol=1e-6)
    model.evaluate(*val, verbose=0)  # after fit, Keras's own functions work again


def test_the_progress_bar_never_counts_past_the_epoch(monkeypatch, capsys):
    monkeypatch.setattr(perf_settings, "STEPS_PER_EXECUTION", 4)  # 5 steps: windows of 4 and 1
    x, y = _mnist_like(300)
    model = zoo.create("mnist_mlp")
    recipe_for("mnist_mlp").compile(model)
    fit(model, x, y, batch_size=64, epochs=1, verbose=1, fast="on")
    out = capsys.readouterr().out
    assert "5/5" in out and "8/5" not in out and "ran out of data" not in out


def test_bad_fast_is_one_clear_line(tmp_path):
    with pytest.raises(
        ValueError, match=r"^fast must be one of \['auto', 'off', 'on'\], got 'yes'$"
    ):
        performance.settings_for("yes", 1, 1)
    with pytest.raises(ValueError, match="fast must be one of"):
        train(epochs=1, out=tmp_path / "run", fast="fastest")
    assert not (tmp_path / "run").exists()  # nothing half-made


def test_train_records_its_speed_settings_and_keeps_the_compile_config(tmp_path):
    metrics = train(epochs=1, out=tmp_path / "run", verbose=0)
    expected = performance.settings_for("auto", 18, 1, zoo.create("mnist_mlp")).as_dict()
    assert metrics["speed_settings"] == expected
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["speed_settings"] == expected
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.steps_per_execution == 1  # the recipe's compile, not the speed settings


def test_the_held_heap_keeps_freed_memory_for_the_next_allocation():
    """heap.held: glibc keeps the memory of freed blocks at its heap's top for the next
    allocation, where by its own rule it gives it back and the next allocation touches
    every page again (what a torch step's tensors do: 6,000 page faults a step for
    conv_autoencoder); after the block, glibc's thresholds are its dynamic rule's largest.
    Each in a fresh process (malloc's settings are the process's)."""
    script = """
import contextlib, ctypes, resource, sys
from zoo.performance import heap
libc = heap.glibc()
assert libc is not None, "not glibc"
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 10 << 20
def one_step():  # three 10 MiB tensors made, written, freed
    blocks = [libc.malloc(size) for _ in range(3)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    for b in blocks:
        libc.free(b)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with heap.held() if sys.argv[1] == "held" else contextlib.nullcontext() as held:
    for _ in range(2):
        one_step()
    start = faults()
    for _ in range(5):
        one_step()
    print(held, (faults() - start) / 5)
"""
    pages = (30 << 20) // 4096

    def faults_per_step(mode):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                             text=True, check=True, cwd=ROOT)  # fmt: skip
        held, faults = out.stdout.split()
        return held, float(faults)

    held, faults = faults_per_step("plain")
    assert held == "None" and faults > pages / 2  # glibc's own rule: most pages again
    held, faults = faults_per_step("held")
    assert held == "True" and faults < pages / 100
    from zoo.performance import heap

    with heap.held() as outer, heap.held() as inner:  # nested: held until the last ends
        assert outer and inner and heap._depth == 2
    assert heap._depth == 0


def test_predict_of_a_bfloat16_model_gives_kerass_predictions():
    """zoo.predict where the outputs are bfloat16 (a mixed-precision model, the GPU
    check's precision probe): Keras's dtype and values (torch's tensors of it have no
    numpy view)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, dtype="mixed_bfloat16")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).random((10, 5), dtype=np.float32)
    expected = model.predict(x, batch_size=4, verbose=0)
    got = zoo.predict(model, x, batch_size=4)
    assert got.dtype == expected.dtype and str(got.dtype) == "bfloat16"
    from zoo.precision import accelerator_present

    # the same kernels on the CPU; a GPU may sum in another order per call, which can
    # round to the next bfloat16 (one step: 2**-7 relative)
    rtol = 2**-7 if accelerator_present() else 0.0
    np.testing.assert_allclose(got.astype("float32"), expected.astype("float32"), rtol=rtol)


@pytest.mark.parametrize(
    "model_name, fast",
    [
        ("mnist_mlp", "auto"),
        ("mnist_mlp", "on"),
        ("conv_autoencoder", "on"),
        ("conv_autoencoder", "auto"),  # torch: the bias folded into the convolution
        ("ticket_router", "on"),
        ("ticket_router", "auto"),
    ],
)
def test_predict_gives_kerass_predictions(model_name, fast):
    """zoo.predict: Keras's predict's outputs in its structure, for a partial last batch
    (100 samples, batch 32), float64 inputs, a conv model (channels-last on torch) given
    a read-only Fortran-order array, and a two-input, two-output model (torch's fused
    LSTM); the inputs unchanged, Keras's functions put back after."""
    from keras.src import backend as keras_backend

    keras.utils.set_random_seed(0)
    model = zoo.create(model_name)
    x = zoo.sample_inputs(model, 100, seed=1)
    if model_name == "mnist_mlp" and fast == "auto":
        x = x.astype("float64")
    if model_name == "conv_autoencoder":  # an array torch cannot share: converted by Keras
        x = np.asfortranarray(x)
        x.setflags(write=False)
    before = keras.tree.map_structure(np.copy, x)
    expected = model.predict(x, batch_size=32, verbose=0)
    kept = [keras_backend.lstm]
    if BACKEND == "torch":
        from keras.src.backend.torch import nn as torch_nn

        kept.append(torch_nn._transpose_spatial_inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = zoo.predict(model, x, batch_size=32, fast=fast)
        again = zoo.predict(model, x[:40] if isinstance(x, np.ndarray) else x, 32, fast)
    assert not [w for w in caught if "could not compile" in str(w.message)]  # not a fallback
    for a, b in zip(keras.tree.flatten(x), keras.tree.flatten(before), strict=True):
        np.testing.assert_array_equal(a, b)  # the inputs (shared with torch) unchanged
    # the zoo's loop ran (its cached forward pass), not Keras's predict; JAX runs Keras's
    assert bool(model.__dict__.get("_zoo_forward")) == (BACKEND != "jax")
    if BACKEND == "torch" and fast == "auto":  # the forward pass recorded and replayed
        recorded = model.__dict__["_zoo_forward"]["torch-auto"].run
        assert recorded.refused is None and recorded.graphs, recorded.refused
    assert type(outputs) is type(expected)
    for a, b in zip(keras.tree.flatten(outputs), keras.tree.flatten(expected), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    few = zoo.predict(model, keras.tree.map_structure(lambda a: a[:5], x), 32, fast)
    assert [len(a) for a in keras.tree.flatten(few)] == [5] * len(keras.tree.flatten(few))
    if BACKEND == "torch" and fast == "auto":  # one padded batch: no batch of no rows
        assert not any("Size([0," in repr(key) for key in recorded.graphs), recorded.graphs
    first = keras.tree.flatten(again)[0]
    # another batch size, which a GPU may compute with other kernels: the round-trip tolerance
    np.testing.assert_allclose(
        first, keras.tree.flatten(outputs)[0][: len(first)], rtol=TOLERANCE, atol=TOLERANCE
    )
    if BACKEND == "torch":
        assert [keras_backend.lstm, torch_nn._transpose_spatial_inputs] == kept
    assert performance.predict(model, x, 32, "off") is not None  # Keras's own predict
    with pytest.raises(ValueError, match="fast must be one of"):
        zoo.predict(model, x, fast="fastest")
    with pytest.raises(ValueError, match="batch_size"):
        zoo.predict(model, x, batch_size=0)


def _host(tensor):
    """A torch tensor's values as numpy, from whichever device Keras put it on."""
    return tensor.detach().cpu().numpy()


if BACKEND == "torch":

    def test_the_replayed_forward_pass_folds_weights_and_follows_changed_ones():
        """torch's recorded forward pass (predict.Recorded): what it computes from the
        weights alone (the LSTMs' kernels transposed for torch's kernel, their zero
        states) is computed once (passes.fold_weights), three inputs and two outputs run
        as torch.direct's code; after the weights change in place (assign, set_weights:
        what a fit between two predictions does), the predictions are Keras's for the new
        weights (the folded results computed again)."""
        keras.utils.set_random_seed(0)
        model = zoo.create("ticket_router")
        x = zoo.sample_inputs(model, 64, seed=1)

        def same_as_keras():
            got = zoo.predict(model, x, batch_size=32)
            expected = model.predict(x, batch_size=32, verbose=0)
            for a, b in zip(keras.tree.flatten(got), keras.tree.flatten(expected), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

        same_as_keras()
        recorded = model.__dict__["_zoo_forward"]["torch-auto"].run
        (replay,) = recorded.graphs.values()
        assert recorded.refused is None
        assert "def run(x0, x1, x2)" in replay.run.source  # the direct code, three inputs
        import torch

        aten = torch.ops.aten
        from zoo.precision import accelerator_present

        ops = [n.target for n in replay.graph.graph.nodes]
        if not accelerator_present():  # the CPU's fused kernel (Keras runs cuDNN's on CUDA)
            assert replay.refresh is not None  # something was folded
            assert ops.count(aten.mkldnn_rnn_layer.default) == 2  # torch's fused LSTM kernel
            assert aten.zeros.default not in ops and aten.zeros_like.default not in ops
            # left: each LSTM's input made time-major (the kernels' transposes are folded)
            assert ops.count(aten.clone.default) == 2
        lstm = model.get_layer("title_lstm").cell.kernel
        lstm.assign(lstm.numpy() * 0.5)  # in place: torch's copy_
        same_as_keras()
        model.set_weights([w * 0.9 + 0.01 for w in model.get_weights()])
        same_as_keras()
        assert recorded.graphs == {next(iter(recorded.graphs)): replay}  # not recorded again

    def test_the_torch_windows_batches_are_the_feeds_own():
        """The window's row indices (views of one tensor per window; one tensor per step
        for a process's share under DDP) are ``Batches.indices`` step by step, the
        epoch's partial last batch included; Keras's iterator gets one item per step."""
        from zoo.performance.feed import Batches

        x, y = np.zeros((70, 3), "float32"), np.zeros((70,), "int64")
        for shard in (None, (1, 2)):
            feed = Batches(x, y, batch_size=16, seed=3, shard=shard)
            feed.set_epoch(2)
            got = list(torch_window._window_batches(feed, 1, len(feed)))
            assert len(got) == len(feed) - 1 == 4
            for i, idx in enumerate(got, start=1):
                assert str(idx.dtype) == "torch.int64"
                assert idx.tolist() == feed.indices(i).tolist()
        steps = list(torch_window.steps_only(feed))
        assert len(steps) == len(feed) and all(s is steps[0] for s in steps)

    def test_on_compiles_kerass_step_where_the_step_cannot_be_recorded(monkeypatch):
        """``fast="on"`` with a step ``make_fx`` cannot record (the cosine schedule's
        ``ops.cond`` reads a tensor into Python): Keras's train step compiled instead
        (``compiled_train_step``), from the step after the recording failed."""
        quick_torch_compile(monkeypatch)
        steps, make_step = [], torch_window.compiled_train_step
        monkeypatch.setattr(
            torch_window, "compiled_train_step", lambda *a: steps.append(make_step(*a)) or steps[-1]
        )
        switches = instances_made(monkeypatch, torch_switch.Switch)
        x, y = _mnist_like(160)

        def run(fast):
            keras.utils.set_random_seed(0)
            model = zoo.create("mnist_mlp")
            schedule = keras.optimizers.schedules.CosineDecay(
                1e-3, 50, warmup_target=1e-2, warmup_steps=4
            )
            model.compile(
                optimizer=keras.optimizers.Adam(schedule),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            history, _ = fit(model, x, y, batch_size=16, epochs=2, seed=1, verbose=0, fast=fast)
            return history.history["loss"], model

        (plain, plain_model), (fast, model) = run("off"), run("on")
        (switch,) = switches
        assert "recording failed" in switch.captured.refused
        assert len(steps) == 1 and switch.kind == steps[0].kind != "eager"
        np.testing.assert_allclose(fast, plain, rtol=1e-5)
        for a, b in zip(model.get_weights(), plain_model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    def test_a_torch_step_that_fails_to_compile_runs_uncompiled(monkeypatch, tmp_path):
        """``fast="on"``: a compile that fails warns (the user asked for it) and the step
        runs uncompiled: Keras's step, replayed."""
        import torch

        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))  # the failure is written down

        def broken_compile(fn, *args, **kwargs):
            def fails(*a, **k):
                raise RuntimeError("inductor exploded\nmore detail")

            return fails

        monkeypatch.setattr(torch, "compile", broken_compile)
        switches = instances_made(monkeypatch, torch_switch.Switch)
        x, y = _mnist_like(128)  # two steps an epoch: compiled from the third
        plain, _, _ = _history("mnist_mlp", x, y, "off", epochs=2)
        told = []
        for _ in range(2):  # the second run reads the failure: not tried again, and told
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fast, settings, _ = _history("mnist_mlp", x, y, "on", epochs=2)
            assert settings.torch_compile and switches[-1].kind == "captured"
            messages = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
            assert len(messages) == 1 and "uncompiled" in messages[0]
            told.append(messages[0])
            np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-6)
        assert "RuntimeError: inductor exploded" in told[0] and costs.FILE in told[1]

    def _small_classifier(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        model = zoo.zoo_model.ZooModel(inputs, keras.layers.Dense(3, name="logits")(hidden))
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def _train_by_steps(model, step, orders, freeze_after=None):
        """Runs ``step(idx)`` over ``orders``; returns the losses and the weights."""
        import torch

        losses = []
        for i, idx in enumerate(orders):
            if i == freeze_after:
                model.get_layer("hidden").trainable = False
            model.reset_metrics()
            losses.append(float(step(torch.tensor(idx))["loss"]))
        return losses, [w.copy() for w in model.get_weights()]

    def test_the_compiled_torch_step_is_one_graph_and_computes_kerass_step(monkeypatch):
        """``compiled_train_step``'s one-graph step (the gather, forward, backward, Adam
        update and metrics in one dynamo graph, with only its inputs' guards) gives Keras's
        eager ``train_step`` results, step by step, with a partial batch (eager) and a
        layer frozen half-way (compiled again); a second model of the same architecture
        gets its own graph (with one code object for both, it ran the first model's);
        a model with its own ``train_step``, and one with a weight its loss never reaches
        (Keras's optimizer warns, which dynamo does not trace), get Keras's compiled step."""
        import torch
        from keras.src.backend.common import global_state

        graphs = quick_torch_compile(monkeypatch)
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.random((40, 6), dtype=np.float32))
        y = torch.tensor(rng.integers(0, 3, 40))
        orders = [rng.permutation(40)[:8] for _ in range(6)]
        orders.insert(4, np.arange(5))  # a partial batch, after the freeze

        def eager(model):
            return lambda idx: model.train_step((x[idx], y[idx]))

        def built(seed):  # one eager step first, as Keras's fit builds the optimizer
            model = _small_classifier(seed)
            model.train_step((x[:8], y[:8]))
            return model

        for seed, freeze in ((1, 3), (2, None)):  # two models, one architecture
            model = built(seed)
            want_losses, want_weights = _train_by_steps(model, eager(model), orders, freeze)
            model, count = built(seed), len(graphs)
            step = torch_step.compiled_train_step(model, (x, y), 8)
            # the first model's steps set trace_autograd_ops themselves; the second's run
            # inside it, as the torch window runs them
            traced = keras_patches.autograd_traced(True)
            with traced if freeze is None else contextlib.nullcontext():
                got_losses, got_weights = _train_by_steps(model, step, orders, freeze)
            assert step.kind == "one-graph", step.kind
            assert global_state.get_global_attribute("current_call_ctx") is None
            assert len(graphs) - count == (1 if freeze is None else 2)  # and after a freeze
            np.testing.assert_allclose(got_losses, want_losses, rtol=1e-5)
            for a, b in zip(got_weights, want_weights, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

        class OwnStep(zoo.zoo_model.ZooModel):
            def train_step(self, data):
                return super().train_step(data)

        def own_step_model():
            model = _small_classifier(3)
            model = OwnStep(model.inputs, model.outputs)
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
            model.train_step((x[:8], y[:8]))
            return model

        want = float(own_step_model().train_step((x[8:16], y[8:16]))["loss"])
        step = torch_step.compiled_train_step(own_step_model(), (x, y), 8)
        with torch._dynamo.config.patch(trace_autograd_ops=True):  # as a window sets it
            got = float(step(torch.arange(8, 16))["loss"])
        assert step.kind == "keras"  # compiled with it off, not fallen to eager
        np.testing.assert_allclose(got, want, rtol=1e-6)

        class Unused(keras.layers.Layer):  # a weight the loss never reaches
            def build(self, shape):
                self.w = self.add_weight(shape=(3,), initializer="ones")

            def call(self, x):
                return x

        def unused_model():
            keras.utils.set_random_seed(4)
            inputs = keras.Input((6,))
            model = keras.Model(inputs, keras.layers.Dense(3)(Unused()(inputs)))
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
            model.train_step((x[:8], y[:8]))
            return model

        with warnings.catch_warnings():  # Keras warns that the weight has no gradient
            warnings.simplefilter("ignore")
            want = float(unused_model().train_step((x[8:16], y[8:16]))["loss"])
            model = unused_model()
            step = torch_step.compiled_train_step(model, (x, y), 8)
            got = float(step(torch.arange(8, 16))["loss"])
        assert step.kind == "keras", step.kind  # Keras's warning is not traced
        np.testing.assert_allclose(got, want, rtol=1e-6)

    def test_torchs_fused_lstm_gives_kerass_lstm_curve(monkeypatch):
        """``fused_torch_lstm``: torch's fused kernel where Keras loops over time steps, for
        stacked LSTMs (``return_sequences``, ``go_backwards``) and a partial last batch. It
        must really run (Keras's LSTM calls ``keras.src.backend.lstm``, a private name: this
        fails if that changes) and be undone after ``fit``."""
        import torch
        from keras.src import backend as keras_backend

        calls, real_lstm, keras_lstm = [], torch.lstm, keras_backend.lstm
        monkeypatch.setattr(torch, "lstm", lambda *a: calls.append(1) or real_lstm(*a))
        rng = np.random.default_rng(0)
        x, y = rng.random((70, 7, 3), dtype=np.float32), rng.random((70, 1), dtype=np.float32)

        def run(fast):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((7, 3))
            h = keras.layers.LSTM(8, return_sequences=True)(inputs)
            h = keras.layers.LSTM(5, go_backwards=True)(h)
            model = keras.Model(inputs, keras.layers.Dense(1)(h))
            model.compile(optimizer="adam", loss="mse")
            history, settings = fit(
                model, x, y, batch_size=16, epochs=3, seed=2, verbose=0, fast=fast
            )
            return history.history, settings, model

        plain, off, plain_model = run("off")
        assert not off.fused_lstm and not calls
        fast, on, fast_model = run("auto")
        assert on.fused_lstm and not on.torch_compile and calls
        assert keras_backend.lstm is keras_lstm  # undone after fit
        np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-5, atol=1e-7)
        for a, b in zip(fast_model.get_weights(), plain_model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert not performance.settings_for("on", 5, 1, zoo.create("mnist_mlp")).fused_lstm
        # Keras's shape pass (meta tensors): the kernel's shapes, without running it
        fused, act = performance.fused_torch_lstm(keras_lstm), keras.activations
        for sequences in (False, True):
            shapes = []
            for device in ("cpu", "meta"):  # Keras's shape pass runs in a "meta" scope
                calls.clear()
                with keras.device(device):
                    x, state = torch.zeros(4, 7, 3, device=device), torch.zeros(4, 5, device=device)
                    weights = [torch.zeros(s, device=device) for s in ((3, 20), (5, 20), (20,))]
                    out = fused(x, state, state, None, *weights, act.tanh, act.sigmoid, sequences)
                shapes.append([(t.shape, t.dtype) for t in keras.tree.flatten(out)])
                assert len(calls) == (device == "cpu")
            assert shapes[0] == shapes[1]

    def test_channels_last_inputs_give_kerass_outputs_and_gradients(monkeypatch):
        """``channels_last_torch_inputs``: Keras's torch convolutions, transposed
        convolutions and pooling (2D and 3D; 1D keeps Keras's function) read channels-last
        images without a copy and compute Keras's outputs and gradients. Keras's ops must
        really call ``keras.src.backend.torch.nn._transpose_spatial_inputs`` (private: this
        fails if that changes)."""
        import torch
        from keras.src.backend.torch import nn as torch_nn

        keras_transpose = torch_nn._transpose_spatial_inputs
        fast = performance.channels_last_torch_inputs(keras_transpose)
        images = torch.rand(2, 6, 5, 3)
        nchw = fast(images)
        assert nchw.shape == (2, 3, 6, 5) and nchw.data_ptr() == images.data_ptr()
        assert nchw.is_contiguous(memory_format=torch.channels_last)
        np.testing.assert_array_equal(_host(nchw), _host(keras_transpose(images)))

        keras.utils.set_random_seed(0)
        flat, image, volume = keras.Input((7, 3)), keras.Input((9, 9, 3)), keras.Input((5, 5, 5, 2))
        h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
        h = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same")(h)
        h = keras.layers.MaxPooling2D(2, padding="same")(h)
        h = keras.layers.DepthwiseConv2D(3)(keras.layers.AveragePooling2D(2, 1)(h))
        h = keras.layers.SeparableConv2D(4, 2)(h)
        v = keras.layers.MaxPooling3D(2)(keras.layers.Conv3D(3, 3, padding="same")(volume))
        f = keras.layers.Conv1D(4, 3)(flat)
        model = keras.Model([flat, image, volume], [f, h, v])
        rng = np.random.default_rng(0)
        x = [torch.tensor(rng.random((2, *i.shape[1:]), dtype=np.float32)) for i in model.inputs]

        def outputs_and_gradients():
            xs = [t.clone().requires_grad_(True) for t in x]
            outputs = model(xs)
            loss = sum((o * o).sum() for o in outputs)
            grads = torch.autograd.grad(loss, xs + [w.value for w in model.trainable_weights])
            return [_host(o) for o in outputs] + [_host(g) for g in grads]

        expected = outputs_and_gradients()
        ranks = []
        monkeypatch.setattr(
            torch_nn, "_transpose_spatial_inputs", lambda t: ranks.append(t.ndim) or fast(t)
        )
        got = outputs_and_gradients()
        assert sorted(set(ranks)) == [3, 4, 5]  # 1D, 2D and 3D images went through it
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)

    def test_torch_compile_keeps_kerass_max_and_min_in_one_graph():
        """``performance.traceable()``: Keras's torch ``max`` and ``min`` (private
        functions: this fails if they move) stay inside one dynamo graph, with eager
        Keras's outputs and gradients, inside the block and not after it."""
        import torch

        class MinOverChannels(keras.layers.Layer):
            def call(self, x):
                return keras.ops.min(x, axis=-1)

        from keras.src.backend.torch import numpy as torch_numpy
        from torch._dynamo import trace_rules

        inputs = keras.Input((5, 5, 3))
        pooled = keras.layers.GlobalMaxPooling2D()(inputs)
        model = keras.Model(inputs, [pooled, MinOverChannels()(inputs)])
        x = torch.tensor(np.random.default_rng(0).random((2, 5, 5, 3), dtype=np.float32))
        with performance.traceable():
            explained = torch._dynamo.explain(model)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained
        # undone after the block: dynamo no longer keeps Keras's max whole
        assert id(torch_numpy.max) not in trace_rules._allowed_callable_ids
        torch._dynamo.reset()
        assert torch._dynamo.explain(model)(x).graph_break_count > 0

        def outputs_and_gradient(fn):
            x_ = x.clone().requires_grad_(True)
            outputs = fn(x_)
            (grad,) = torch.autograd.grad(sum(o.sum() for o in outputs), x_)
            return [_host(o) for o in outputs] + [_host(grad)]

        compiled = torch.compile(model, backend="aot_eager")  # AOTAutograd, no inductor
        with performance.traceable():
            got = outputs_and_gradient(compiled)
        for c, e in zip(got, outputs_and_gradient(model), strict=True):
            np.testing.assert_array_equal(c, e)

    class _PairCell(keras.layers.Layer):
        """A custom RNN cell with a nested state (a pair), as in the guide."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units, self.state_size = units, [units, units]

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

        def call(self, inputs, states):
            h = keras.ops.tanh(keras.ops.matmul(inputs, self.kernel) + states[0])
            return h, [h, states[1] + h]

    def _rnn_outputs_and_gradients(fn, model, x):
        import torch

        x_ = x.clone().requires_grad_(True)
        outputs = fn(x_)
        loss = sum((o * o).sum() for o in outputs)
        grads = torch.autograd.grad(loss, [x_] + [w.value for w in model.trainable_weights])
        return [_host(o) for o in outputs] + [_host(g) for g in grads]

    def test_torch_compile_keeps_kerass_rnn_loop_in_one_graph():
        """``performance.traceable()``: while dynamo traces, Keras's generic torch RNN loop
        (SimpleRNN, GRU, a custom cell with a nested state, masked ones) runs unrolled and
        Keras's tree functions trace (private functions: this fails if Keras stops calling
        them), in one graph, with eager Keras's outputs and gradients."""
        import torch
        from torch._dynamo.backends.registry import lookup_backend

        keras.utils.set_random_seed(0)
        inputs = keras.Input((3, 3))
        masked = keras.layers.Masking(0.0)(inputs)
        outputs = [
            keras.layers.SimpleRNN(4, return_sequences=True)(inputs),
            keras.layers.GRU(4, go_backwards=True)(inputs),
            keras.layers.RNN(_PairCell(4), return_sequences=True)(inputs),
            keras.layers.SimpleRNN(4, zero_output_for_mask=True, return_sequences=True)(masked),
            keras.layers.LSTM(4)(masked),  # Keras's LSTM takes the generic loop for a mask
        ]
        model = keras.Model(inputs, outputs)
        x = np.random.default_rng(0).random((2, 3, 3), dtype=np.float32)
        x[1, -1:] = 0.0  # a masked step at the end of one sequence
        x = torch.tensor(x)
        graphs = []

        def counted(graph, example_inputs):  # AOTAutograd, no inductor
            graphs.append(graph)
            return lookup_backend("aot_eager")(graph, example_inputs)

        with performance.traceable():
            got = _rnn_outputs_and_gradients(torch.compile(model, backend=counted), model, x)
        assert len(graphs) == 1, len(graphs)  # Keras's own loop: 25 graphs (3 steps)
        for g, e in zip(got, _rnn_outputs_and_gradients(model, model, x), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)

    def test_kerass_rnn_loop_is_unrolled_only_while_tracing_short_sequences(monkeypatch):
        """Inside ``performance.traceable()`` Keras's ``rnn`` (a private name: this fails if
        Keras stops calling it there) gets its own arguments, ``unroll=True`` only under
        dynamo, for at most ``TORCH_UNROLL_MAX_STEPS`` time steps, and not for
        ``go_backwards`` with a mask (Keras's unrolled loop fails there). It is replaced
        only where its parameters are Keras 3.15's, and put back after the block."""
        import torch
        from keras.src import backend as keras_backend

        seen = []

        def rnn(  # Keras 3.15's parameters, recording what it is asked
            step_function,
            inputs,
            initial_states,
            go_backwards=False,
            mask=None,
            constants=None,
            unroll=False,
            input_length=None,
            time_major=False,
            zero_output_for_mask=False,
            return_all_outputs=True,
        ):
            seen.append(unroll)

        monkeypatch.setattr(keras_backend, "rnn", rnn)
        limit = performance.TORCH_UNROLL_MAX_STEPS
        short, long_ = torch.zeros(2, limit, 3), torch.zeros(2, limit + 1, 3)
        mask = torch.ones(2, limit, dtype=torch.bool)
        with performance.traceable():
            assert keras_backend.rnn is not rnn
            keras_backend.rnn(None, short, [])
            with monkeypatch.context() as tracing:
                tracing.setattr(torch.compiler, "is_compiling", lambda: True)
                keras_backend.rnn(None, short, [])
                keras_backend.rnn(None, long_, [])
                keras_backend.rnn(None, long_.transpose(0, 1), [], time_major=True)
                keras_backend.rnn(None, short, [], go_backwards=True)
                keras_backend.rnn(None, short, [], go_backwards=True, mask=mask)
                keras_backend.rnn(None, short, [], mask=mask)
                keras_backend.rnn(None, long_, [], unroll=True)
        assert keras_backend.rnn is rnn  # put back
        assert seen == [False, True, False, False, True, False, True, True]

        def other(inputs, mask=None):  # not Keras 3.15's parameters: left alone
            return None

        monkeypatch.setattr(keras_backend, "rnn", other)
        with performance.traceable():
            assert keras_backend.rnn is other

    def test_kerass_tree_functions_order_the_same_while_dynamo_traces():
        """Inside ``performance.traceable()`` Keras's tree functions order nested
        structures (tuples in tuples, which Keras's own cannot trace; dicts under tuples
        and lists, an OrderedDict, a namedtuple, a defaultdict) as Keras's own does
        eagerly, inside one graph."""
        import collections

        import torch

        pair = collections.namedtuple("Pair", ["first", "second"])
        t = torch.zeros(())
        structure = (
            {"b": t + 1, "a": (t + 2, [t + 3, {"d": t + 4, "c": t + 5}])},
            [collections.OrderedDict(z=t + 6, y=t + 7), pair(t + 8, (t + 9, t + 12))],
            (t + 13, (t + 14,)),
            collections.defaultdict(list, {"f": t + 10, "e": t + 11}),
        )

        def flat(s):
            return keras.tree.flatten(keras.tree.map_structure(lambda v: v * 2, s))

        eager = [float(v) / 2 for v in flat(structure)]
        assert eager == [2, 3, 4, 5, 1, 6, 7, 8, 9, 12, 13, 14, 11, 10]  # Keras's order
        with performance.traceable():
            traced = torch.compile(flat, backend="eager", fullgraph=True)(structure)
        assert [float(v) / 2 for v in traced] == eager

    def test_a_compiled_train_step_breaks_only_at_backward():
        """Keras's torch ``binary_crossentropy`` (its ``mps.is_available()`` folded by
        ``performance.traceable()``: a private dynamo list, this fails if it moves) and targets
        given as a dict for a model with a list of outputs (made a list by the torch feed)
        trace into the graph; the one break left is Keras's ``loss.backward()``."""
        import torch

        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        outputs = [keras.layers.Dense(1, name=n)(hidden) for n in ("flag", "score")]
        model = zoo.zoo_model.ZooModel(inputs, outputs)
        model.compile(
            optimizer="rmsprop",
            loss={"flag": keras.losses.BinaryCrossentropy(from_logits=True), "score": "mse"},
        )
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.random((8, 4), dtype=np.float32))
        y = {"score": rng.random((8, 1), dtype=np.float32), "flag": np.ones((8, 1), "float32")}
        targets = torch_window.targets_like_outputs(model, y)
        assert isinstance(targets, list)
        assert all(t is y[n] for t, n in zip(targets, ("flag", "score"), strict=True))
        targets = [torch.tensor(t) for t in targets]
        model.train_on_batch(x, targets)  # builds the optimizer and metrics eagerly
        with performance.traceable():
            explained = torch._dynamo.explain(model.train_step)((x, targets))
        reasons = [r.reason for r in explained.break_reasons]
        assert explained.graph_break_count == 1 and "backward" in reasons[0], reasons


# -- the benchmark's references -----------------------------------------------------------------
def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("model_name", "impl"),
    [
        ("toy_resnet", "guide"),
        ("toy_resnet", "native"),
        ("conv_autoencoder", "native"),
        ("ticket_router", "native"),
    ],
)
def test_benchmark_references_compute_what_the_zoo_computes(model_name, impl):
    """(mnist_mlp's guide and native forms are checked by the smoke test below)"""
    result = _benchmark_module()._check(impl, model_name, BACKEND)
    assert result["equivalent"], result["check"]


def test_benchmark_script_smoke(tmp_path):
    """benchmark.py end to end for a few steps (numbers are not checked: too few steps)."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark.py"),
            "--backend",
            BACKEND,
            "--quick",
            "--models",
            "mnist_mlp",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == BACKEND
    impls = ["zoo", "guide", "native"] + (["native_compiled"] if BACKEND == "torch" else [])
    assert [(r["model"], r["impl"]) for r in report["results"]] == [
        ("mnist_mlp", impl) for impl in impls
    ]
    assert all(r["equivalent"] for r in report["results"] if r["impl"] != "zoo")
    for r in report["results"]:
        assert r["train_samples_per_s"] > 0 and r["infer_samples_per_s"] > 0
        assert r["windows"] == 2 and r["peak_rss_mib"] > 0
    assert f"{BACKEND} mnist_mlp: zoo/native = " in result.stdout
    assert "| `mnist_mlp` | zoo |" in result.stdout
    # the side-by-side worker: the zoo's and every native form's windows, in one process
    (paired,) = report["side_by_side"]
    assert paired["model"] == "mnist_mlp" and set(paired["rates"]) == {"zoo", *impls} - {"guide"}
    assert all(len(r) == 2 and min(r) > 0 for r in paired["rates"].values())
    assert "zoo/native side by side = " in result.stdout


def test_benchmark_rounds_pool_their_windows_and_keep_a_failed_check():
    bench = _benchmark_module()

    def run(rates, first, rss, equivalent):
        return dict(
            model="mnist_mlp",
            impl="native",
            equivalent=equivalent,
            check=f"checked {equivalent}",
            train_rates=rates,
            infer_rates=[r / 10 for r in rates],
            first_step_s=first,
            peak_rss_mib=rss,
        )

    merged = bench._merge([run([1, 2, 9], 1.0, 10, True), run([4, 5, 6], 3.0, 30, False)])
    paired = bench._merge_side_by_side(
        "mnist_mlp",
        [{"rates": {"zoo": [1, 3], "native": [2, 2]}}, {"rates": {"zoo": [8], "native": [4]}}],
    )
    assert paired["rates"] == {"zoo": [1, 3, 8], "native": [2, 2, 4]}
    assert paired["median"] == {"zoo": 3, "native": 2} and paired["windows"] == 3
    assert merged["train_rates"] == [1, 2, 9, 4, 5, 6] and merged["windows"] == 6
    assert (merged["train_samples_per_s"], merged["train_min"], merged["train_max"]) == (4.5, 1, 9)
    assert merged["infer_samples_per_s"] == 0.45 and merged["rounds"] == 2
    assert (merged["first_step_s"], merged["peak_rss_mib"]) == (2.0, 30)
    assert merged["equivalent"] is False and merged["check"] == "checked False"


def test_the_benchmarks_gpu_profile_fills_only_what_the_command_line_left(monkeypatch):
    bench = _benchmark_module()
    gpu = bench.apply_profile(bench.parse_args(["--windows", "4"]), gpu=True)
    assert gpu.device == "gpu" and gpu.batch_size == 256 and gpu.windows == 4
    assert gpu.mixed == ["toy_resnet", "vgg19_features"] and gpu.side_by_side is True
    assert gpu.separate is False and "--no-separate" in gpu.passthrough
    assert (
        gpu.budget == 120
        and bench._steps(gpu, "toy_resnet") == bench.GPU_WINDOW_STEPS["toy_resnet"]
    )
    assert "--device" in gpu.passthrough and "gpu" in gpu.passthrough
    cpu = bench.apply_profile(bench.parse_args([]), gpu=False)
    assert (cpu.device, cpu.batch_size, cpu.mixed, cpu.budget) == ("cpu", 64, [], None)
    assert bench._steps(cpu, "toy_resnet") == bench.WINDOW_STEPS["toy_resnet"]
    with pytest.raises(SystemExit, match="--device gpu but the backend sees no GPU"):
        bench.apply_profile(bench.parse_args(["--device", "gpu"]), gpu=False)
    # a worker past the budget is stopped and named; the probe keeps its half
    calls = []

    def worker(args, backend, model_name, impl, round_, timeout=None):
        calls.append((impl, timeout))
        if impl == "side_by_side":
            return {"rates": {"zoo": [2.0], "native": [1.0]}, "checks": {}}
        if impl == "precision_probe":
            assert model_name == ",".join(args.mixed)
            return {"probe": []}
        rates = {"train_rates": [1.0], "infer_rates": [1.0]}
        return None if impl == "zoo" else {**_row(model_name, impl, 1.0), **rates}

    monkeypatch.setattr(bench, "_run_worker", worker)
    monkeypatch.setattr(bench, "_versions", lambda backend: {})
    argv = ["--models", "mnist_mlp", "--impls", "zoo", "native", "--no-side-by-side"]
    argv += ["--mixed", "toy_resnet"]
    args = bench.apply_profile(bench.parse_args([*argv, "--budget", "100"]), gpu=False)
    report = bench.run_all(args, BACKEND)
    assert [impl for impl, _ in calls] == ["zoo", "native", "precision_probe"]
    assert 0 < calls[0][1] <= 50 < calls[-1][1] <= 100  # the models' half, then the rest
    assert report["stopped"] == ["mnist_mlp / zoo: stopped at the end of its share of the budget"]
    assert "Not measured: mnist_mlp / zoo: stopped" in bench.markdown(report)
    # without separate workers: one side-by-side worker per model, the probe's models in one
    calls.clear()
    argv = ["--models", "mnist_mlp", "--impls", "zoo", "native", "--no-separate"]
    args = bench.apply_profile(bench.parse_args([*argv, "--mixed", *bench.PROBE_MODELS]), False)
    bench.run_all(args, BACKEND)
    assert [impl for impl, _ in calls] == ["side_by_side", "precision_probe"]


def test_the_end_to_end_benchmark_skips_what_would_run_past_its_budget(monkeypatch):
    """--end-to-end: per size each form in its own worker; a size is not run where the
    previous one took more than a tenth of the budget (named with the time it would
    take); zoo / native is the fastest native form's time over the zoo's."""
    bench = _benchmark_module()
    took = {"zoo": 2.0, "zoo_again": 1.0, "native": 40.0, "native_compiled": 5.0}
    calls = []

    def worker(args, backend, model_name, impl, round_, timeout=None):
        _, form, steps = impl.split(":")
        if steps == bench.FIRST:  # a one-step fit, then predict
            calls.append((form, steps))
            return {"first_step_s": {"zoo": 1.5, "native": 0.5}[form], "predict_samples_s": 900}
        calls.append((form, int(steps)))
        # as the real worker reports it
        path = {"zoo": "replayed", "zoo_again": "compiled from step 0"}.get(form, "-")
        return {"seconds": took[form] * int(steps) / 500, "path": path}

    monkeypatch.setattr(bench, "_run_worker", worker)
    monkeypatch.setattr(bench, "_versions", lambda backend: {})
    argv = ["--end-to-end", "--models", "mnist_mlp", "--e2e-steps", "500", "5000"]
    args = bench.apply_profile(bench.parse_args([*argv, "--e2e-budget", "300"]), gpu=False)
    report = bench.run_end_to_end(args, "torch")
    assert ("native", 5000) not in calls and ("zoo", 5000) in calls  # 40 s > 300 s / 10
    first, second = report["end_to_end"]
    assert first["seconds"] == took and not first["skipped"]
    assert second["skipped"] == {"native": "not run: about 400 s"}
    text = bench.end_to_end_markdown(report)
    again = "| 1.00 | **5.00x** | compiled from step 0 |"
    assert "| `mnist_mlp` | 500 | 2.00 | 40.00 | 5.00 | **2.50x** | replayed " + again in text
    assert "| `mnist_mlp` | 5,000 | 20.00 | not run: about 400 s | 50.00 | **2.50x** |" in text
    assert calls[-2:] == [("zoo", "first"), ("native", "first")]  # one each, fresh
    assert "| `mnist_mlp` | 1.50 | 0.50 | 900 | 900 | **1.00x** |" in text


def test_the_paired_side_by_side_ratio_is_the_median_of_window_ratios():
    bench = _benchmark_module()
    # a slow spell over the zoo's first window and the native's last two: the medians
    # say 2.5x, each window against the fastest native's window after it 1.0x
    rates = {"zoo": [4, 10, 10, 12], "native": [1, 1, 1, 1], "native_compiled": [4, 10, 4, 4]}
    one = bench._merge_side_by_side("mnist_mlp", [{"rates": rates}])
    report = {"side_by_side": [one]}
    assert bench._side_by_side_ratio(report, "mnist_mlp") == 10 / 4
    assert bench._paired_ratio(report, "mnist_mlp") == statistics.median([1, 1, 2.5, 3])
    assert bench._paired_ratio(report, "toy_resnet") is None
    # no separate zoo row (--no-separate, the GPU profile): the side-by-side ratios alone
    assert bench.ratios({"results": [], "side_by_side": [one]}) == [
        {"model": "mnist_mlp", "zoo/native side by side": 2.5, "zoo/native paired": 1.75}
    ]
    text = bench.markdown(
        dict(backend="jax", date="d", machine="m", versions={}, batch_size=64, fast="on")
        | {"results": [_row("mnist_mlp", "zoo", 9), _row("mnist_mlp", "native", 3)]}
        | {"side_by_side": [one]}
    )
    assert "| `mnist_mlp` | 3.00x | 2.50x | 1.75x | - |" in text


def _row(model, impl, train, infer=1.0):
    """One implementation's benchmark result, as the benchmark's report keeps it."""
    return dict(
        model=model,
        impl=impl,
        train_samples_per_s=train,
        train_min=train,
        train_max=train,
        infer_samples_per_s=infer,
        first_step_s=1.0,
        peak_rss_mib=500.0,
        equivalent=True,
    )


def test_the_cross_backend_table_compares_each_backends_zoo_with_its_fastest_native():
    bench = _benchmark_module()
    row = _row

    def report(backend, rows, side_by_side=()):
        return dict(
            backend=backend,
            date="d",
            fast="on",
            batch_size=64,
            machine="m",
            results=rows,
            side_by_side=list(side_by_side),
        )

    reports = [
        report(
            "tensorflow", [row("mnist_mlp", "zoo", 300, 10), row("mnist_mlp", "native", 400, 20)]
        ),
        report(
            "torch",
            [
                row("mnist_mlp", "zoo", 100, 10),
                row("mnist_mlp", "native", 50, 5),
                row("mnist_mlp", "native_compiled", 200, 40),
                row("ticket_router", "zoo", 7, 7),
            ],
            # alternating in one process: zoo 90, the faster native form 100
            [{"model": "mnist_mlp", "median": {"zoo": 90, "native": 30, "native_compiled": 100}}],
        ),
    ]
    text = bench.summary(reports)
    assert "| `mnist_mlp` | tensorflow | 300 | 400 (native) | **0.75x** | 10 | 20 | 0.50x |" in text
    assert (
        "| `mnist_mlp` | torch | 100 | 200 (native_compiled) | **0.50x** | 10 | 40 | 0.25x |"
        in text
    )
    assert "| 500 / 500 | 0.90x |" in text  # torch's side-by-side ratio ends its row
    assert text.count("| 500 / 500 | - |") == 1  # TensorFlow's row: none measured
    # the best zoo backend (TensorFlow, 300) against the best native anywhere (TF's, 400)
    assert "| `mnist_mlp` | tensorflow (300) | tensorflow native (400) | **0.75x** |" in text
    assert "| `ticket_router` | torch | 7 | - |" in text  # no native form: no ratio
