"""``fast="auto"``'s parts: the compile-cost cache (``zoo.performance.costs``, every
backend), and on torch the recorded and replayed Keras step (``torch.capture``) and the
mid-run compile (``torch.switch``), each computing what Keras's own step computes."""

import json
import warnings

import keras
import numpy as np
import pytest
from conftest import instances_made, quick_torch_compile

import zoo
from zoo.datasets import tickets
from zoo.performance import costs, keras_patches
from zoo.training import fit, recipe_for

BACKEND = keras.backend.backend()


def test_the_estimate_compiles_only_where_the_saving_beats_the_cost(monkeypatch):
    measured = costs.Estimate(compile_s=2.0, step_s=0.3e-3, measured=True)
    # 10,000 steps x 0.5 ms saved = 5 s > 1.25 x 2 s; 4,000 x 0.5 ms = 2 s < 2.5 s
    assert measured.pays(10_000, 0.8e-3) and not measured.pays(4_000, 0.8e-3)
    assert not measured.pays(10_000, 0.3e-3)  # nothing to gain
    assert not costs.Estimate(fails=True).pays(10**9, 1.0)
    # nothing measured, a step of 100 ops taking 0.1 s (in its convolutions): compiling
    # saves at most 100 x 6 us a step, not half of it
    assert not costs.Estimate().pays(5_000, 0.1, ops=100)
    assert costs.Estimate().pays(5_000, 0.1)
    guess = costs.Estimate()  # nothing measured: the assumed cost and share
    step = 1e-3
    pays_from = costs.MARGIN * costs.DEFAULT_COMPILE_S / (step * (1 - costs.DEFAULT_COMPILED_SHARE))
    assert guess.pays(int(pays_from) + 1, step) and not guess.pays(int(pays_from) - 1, step)
    # from the start, what the uncompiled form costs before its first step is saved too
    # (TensorFlow's graph trace): 1,600 x 0.5 ms + 0.5 s > 1.25 x 1 s > 1,000 x 0.5 + 0.5
    known = dict(compile_s=1.0, step_s=0.5e-3, measured=True, uncompiled_step_s=1e-3)
    with_setup = costs.Estimate(**known, uncompiled_setup_s=0.5)
    assert with_setup.pays_from_start(1_600) and not with_setup.pays_from_start(1_000)
    assert not costs.Estimate(**known).pays_from_start(1_600)


def test_the_step_timer_gives_the_fastest_run_once_enough_is_timed():
    timer = costs.StepTimer()
    assert timer.add(16, 0.016, least=32, least_s=0.05) is None  # 16 steps: too few
    assert timer.add(32, 0.064, least=32, least_s=0.1) is None  # 48 steps but 0.08 s
    # a run slowed by something else (4 ms a step) does not count against the others
    assert timer.add(32, 0.128, least=32, least_s=0.1) == pytest.approx(1e-3)
    assert timer.add(32, 0.064, least=32) == pytest.approx(2e-3)  # started over


def test_the_cost_cache_round_trips_and_never_fails_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    assert costs.read("k") is None and costs.Estimate.of("k") == costs.Estimate()
    costs.write("k", {"compile_s": 1.5, "step_s": 2e-4})
    costs.write("other", {"fails": True})
    estimate = costs.Estimate.of("k")
    assert (estimate.compile_s, estimate.step_s, estimate.measured) == (1.5, 2e-4, True)
    assert costs.Estimate.of("other").fails
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [costs.FILE]  # no temp left
    # a compile that missed inductor's cache costs WARM_SHARE of it the next time (the
    # cache then holds its code); what it kept out of the compile is kept out again
    op = "aten.mkldnn_rnn_layer.default"
    costs.record("cold", 10.0, 1e-3, 2e-3, eager_operations=[op], cold=True)
    costs.record("warm", 10.0, 1e-3, 2e-3)
    cold, warm = costs.Estimate.of("cold"), costs.Estimate.of("warm")
    assert cold.compile_s == pytest.approx(10.0 * costs.WARM_SHARE) and warm.compile_s == 10.0
    assert cold.eager_operations == {op} and warm.eager_operations == frozenset()
    assert (cold.step_s, cold.uncompiled_step_s, cold.measured) == (1e-3, 2e-3, True)
    (tmp_path / "cache" / costs.FILE).write_text("{not json")  # damaged: no figure, then mended
    assert costs.read("k") is None
    costs.write("k", {"compile_s": 3.0, "step_s": 1e-4})
    assert json.loads((tmp_path / "cache" / costs.FILE).read_text())["k"]["compile_s"] == 3.0
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "file" / "below"))  # cannot be made
    costs.write("k", {"compile_s": 1.0, "step_s": 1e-4})  # no error
    assert costs.read("k") is None
    monkeypatch.delenv("ZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert costs.cache_dir() == tmp_path / "xdg" / "keras-model-zoo"


if BACKEND == "torch":
    import torch

    from zoo.performance.torch import switch as torch_switch
    from zoo.performance.torch.capture import CapturedStep
    from zoo.performance.torch.step import gather
    from zoo.performance.torch.window import targets_like_outputs
    from zoo.precision import accelerator_present

    def _same(a, b, what=""):
        """Bit for bit on the CPU; on a GPU, whose kernels may sum in another order from
        one call to the next, within the replay's own check (``capture.close``)."""
        if accelerator_present():
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=what)
        else:
            np.testing.assert_array_equal(a, b, err_msg=what)

    def _data(model_name, n):
        rng = np.random.default_rng(0)
        if model_name == "ticket_router":
            (x, y), _ = tickets(n=2 * n, seed=0)
            return {k: v[:n] for k, v in x.items()}, {k: v[:n] for k, v in y.items()}
        shape = {"mnist_mlp": (784,), "conv_autoencoder": (28, 28, 1), "toy_resnet": (32, 32, 3)}
        x = rng.random((n, *shape[model_name]), dtype=np.float32)
        if model_name == "conv_autoencoder":
            return x, x
        return x, rng.integers(0, 10, n).astype("int32")

    def _model(model_name, seed=0, **compile_args):
        keras.utils.set_random_seed(seed)
        model = zoo.create(model_name)
        if compile_args:
            model.compile(**compile_args)
        else:
            recipe_for(model_name).compile(model)
        return model

    def _state(model):
        variables = list(model.variables) + list(model.optimizer.variables)
        variables += [v for m in model.metrics for v in m.variables]
        # by position: the second model's names get suffixes ("rm_sprop_1")
        return {f"{i}: {v.name}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}

    def _train(model_name, n, batch, orders, captured, freeze_at=None, **compile_args):
        """Trains by steps over ``orders`` with Keras's ``train_step`` or ``CapturedStep``,
        under the window's torch patches; returns the state, the step and the logs."""
        model = _model(model_name, **compile_args)
        x, y = _data(model_name, n)
        y = targets_like_outputs(model, y)
        tensors = keras.tree.map_structure(lambda a: torch.from_numpy(np.asarray(a)), (x, y))
        step = CapturedStep(model, tensors, batch) if captured else None
        conv = model_name in ("conv_autoencoder", "toy_resnet")
        with keras_patches.patched(fused_lstm=model_name == "ticket_router", channels_last=conv):
            for i, idx in enumerate(orders):
                if i == freeze_at:  # a callback freezing a layer between two windows
                    model.layers[1].trainable = False
                    if step is not None:
                        assert step.check()  # the recording is dropped, made again
                idx = torch.tensor(idx)
                if step is None:
                    model.train_step(gather(tensors, idx))
                else:
                    step(idx)
        logs = {k: float(v) for k, v in model.get_metrics_result().items()}
        return _state(model), step, logs

    def _orders(n, batch, count):
        rng = np.random.default_rng(1)
        orders = [rng.permutation(n)[:batch] for _ in range(count)]
        orders.insert(3, rng.permutation(n)[: batch // 2])  # a partial batch: eager
        return orders

    @pytest.mark.parametrize(
        "model_name, kind",
        [
            ("mnist_mlp", "captured"),
            ("conv_autoencoder", "captured"),  # channels-last convolutions
            ("ticket_router", "captured"),  # two inputs, two outputs, torch's fused LSTM
            ("toy_resnet", "captured"),  # unseeded dropout: torch's global generator
        ],
    )
    def test_the_replayed_step_computes_kerass_step_bit_for_bit(model_name, kind):
        n, batch = 96, 16
        orders = _orders(n, batch, 6)
        plain, _, plain_logs = _train(model_name, n, batch, orders, captured=False)
        replayed, step, logs = _train(model_name, n, batch, orders, captured=True)
        assert step.kind == kind, step.refused
        assert "def run(x0)" in step.replay.source  # torch.direct's code, not FX's forward
        if model_name in ("conv_autoencoder", "toy_resnet"):  # Keras's bias add folded in
            nodes = step.graph.graph.nodes
            convs = [n for n in nodes if n.target is torch.ops.aten.convolution.default]
            assert any(n.args[2] is not None for n in convs)
        assert plain.keys() == replayed.keys()
        for name in plain:  # every weight, optimizer slot, step count and metric total
            _same(replayed[name], plain[name], name)
        assert logs.keys() == plain_logs.keys()
        for key in plain_logs:
            _same(logs[key], plain_logs[key], key)

    def test_a_step_that_cannot_be_recorded_runs_kerass_step_with_nothing_counted_twice():
        # the cosine schedule's ops.cond reads a tensor into Python: make_fx raises after
        # the loss tracker was updated; the recording's changes are undone
        schedule = keras.optimizers.schedules.CosineDecay(
            1e-3, 50, warmup_target=1e-2, warmup_steps=4
        )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def args():  # an optimizer each: one is built for one model's variables
            return dict(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=["accuracy"])

        orders = _orders(64, 16, 5)
        plain, _, plain_logs = _train("mnist_mlp", 64, 16, orders, False, **args())
        replayed, step, logs = _train("mnist_mlp", 64, 16, orders, True, **args())
        assert step.kind == "eager" and "recording failed" in step.refused
        for name in plain:
            _same(replayed[name], plain[name], name)
        assert logs.keys() == plain_logs.keys()
        for key in plain_logs:
            _same(logs[key], plain_logs[key], key)

    def test_a_model_with_its_own_train_step_is_not_replayed():
        class Custom(keras.Model):
            def train_step(self, data):
                return super().train_step(data)

        keras.utils.set_random_seed(0)
        inputs = keras.Input((784,))
        model = Custom(inputs, keras.layers.Dense(10)(inputs))
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x, y = _data("mnist_mlp", 32)
        step = CapturedStep(model, (torch.from_numpy(x), torch.from_numpy(y)), 16)
        step(torch.arange(16))
        step(torch.arange(16, 32))
        assert step.kind == "eager" and "its own train_step" in step.refused

    def test_a_seeded_dropout_is_not_replayed():
        def model(seed):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((784,))
            hidden = keras.layers.Dropout(0.5, seed=3)(keras.layers.Dense(8)(inputs))
            model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            return model

        x, y = _data("mnist_mlp", 64)
        tensors = (torch.from_numpy(x), torch.from_numpy(y))
        plain, replayed = model(0), model(0)
        step = CapturedStep(replayed, tensors, 16)
        for idx in _orders(64, 16, 4):
            plain.train_step(gather(tensors, torch.tensor(idx)))
            step(torch.tensor(idx))
        # Keras reads the seed into Python (int(seed)), which make_fx refuses to record
        assert step.kind == "eager" and "Dropout" in step.refused, step.refused
        for a, b in zip(_state(plain).values(), _state(replayed).values(), strict=True):
            _same(a, b)

    def test_simplifying_a_recording_keeps_what_changes_each_step():
        """What depends only on constants is computed once, except tensors the step
        writes in place (directly or through a view) and random draws."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from zoo.performance.torch import capture

        def step(x):
            total = torch.zeros(2, 3)  # constant, then written through a view
            total.view(6).add_(x.reshape(6))
            scale = torch.ones(3) * 2  # constant and never written: computed once
            return total * scale + torch.rand(3) * 0  # a draw: made anew each call

        x = torch.arange(6.0).reshape(2, 3)
        graph = make_fx(step)(x)
        capture._simplify(graph, set())
        targets = [n.target for n in graph.graph.nodes if n.op == "call_function"]
        assert torch.ops.aten.ones.default not in targets  # folded
        assert torch.ops.aten.zeros.default in targets and torch.ops.aten.rand.default in targets
        first, second = graph(x), graph(x)  # no accumulation across calls
        torch.testing.assert_close(first, step(x))
        torch.testing.assert_close(second, step(x))

    def test_elementwise_operations_write_into_temporaries_only_nothing_else_reads():
        """``passes.reuse_temporaries``: ``relu(add(mm(x, w), b))`` runs in place on the
        product, bit for bit; not where the temporary is read again, is a view of an
        input, or would be broadcast or promoted into."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from zoo.performance.torch import passes

        def step(x, w, b, n):
            hidden = torch.relu(x @ w + b)  # add and relu: in place
            kept = x @ w
            twice = torch.sigmoid(kept) + kept  # `kept` read twice: a new tensor
            through_view = torch.tanh(x.t())  # a view of an input: a new tensor
            broadcast = (b * 2) + hidden  # (3,) + (2, 3): a new tensor
            promoted = (n + 1) * 0.5  # int64 times a float: a new tensor
            viewed = torch.sigmoid((x @ w).t())  # a view of a temporary read once: in place
            base = x @ w
            base_read_again = torch.sigmoid(base.t()).t() + base  # a new tensor
            return hidden, twice, through_view, broadcast, promoted, viewed, base_read_again

        args = (torch.randn(2, 3), torch.randn(3, 3), torch.randn(3), torch.arange(3))
        before = [a.clone() for a in args]
        graph = make_fx(step)(*args)
        passes.finish(graph)
        targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
        assert {"aten.add_.Tensor", "aten.relu_.default"} <= targets
        sigmoids = [str(n.target) for n in graph.graph.nodes if "sigmoid" in str(n.target)]
        assert sorted(sigmoids) == ["aten.sigmoid.default"] * 2 + ["aten.sigmoid_.default"]
        assert "aten.tanh_.default" not in targets
        assert {"aten.mul_.Tensor"} & targets == set()  # b * 2 broadcast, n + 1 promoted
        for got, expected in zip(graph(*args), step(*args), strict=True):
            assert torch.equal(got, expected)
        for a, b in zip(args, before, strict=True):
            assert torch.equal(a, b)  # the inputs untouched

    def test_the_direct_code_computes_what_fxs_forward_computes():
        """``torch.direct``: keyword arguments, lists of tensors, operations with several
        results, constants of every kind (a float infinity, dtypes), updates in place;
        intermediates let go after their last use; FX's forward where there are trees."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from zoo.performance.torch.direct import direct

        def step(x):
            low, high = torch.split(x.to(torch.float64), 2)
            parts = torch.cat([low.clamp(max=float("inf")), high * 0.5], dim=0)
            total = torch.zeros(3, dtype=torch.float64)
            total.add_(parts.sum(0))
            return torch.nn.functional.softmax(total, dim=-1).to(torch.float32)

        x = torch.randn(4, 3)
        graph = make_fx(step)(x)
        run = direct(graph, x)
        assert run is not None and "del " in run.source
        assert torch.equal(run(x), graph(x)) and torch.equal(run(x), step(x))
        one = make_fx(lambda d: d["a"] * 2)({"a": x})
        assert direct(one, {"a": x}) is None  # a tree of inputs, even of one: FX's forward

    def test_the_recording_keeps_light_metadata_and_the_same_code():
        """``keras_patches.light_metadata``: each recorded value described by a ``meta``
        tensor of its shape, strides and dtype; the same code as ``make_fx``'s own
        recording; ``make_fx``'s function back after."""
        from torch.fx.experimental import proxy_tensor
        from torch.fx.experimental.proxy_tensor import make_fx

        def step(x, w):
            return torch.relu(x @ w).t().sum(0)

        args = (torch.randn(4, 3), torch.randn(3, 5))
        kept = proxy_tensor.extract_val
        with keras_patches.light_metadata():
            light = make_fx(step)(*args)
        assert proxy_tensor.extract_val is kept
        plain = make_fx(step)(*args)
        assert light.code == plain.code
        for a, b in zip(light.graph.nodes, plain.graph.nodes, strict=True):
            if isinstance(b.meta.get("val"), torch.Tensor):
                val = a.meta["val"]
                assert val.device.type == "meta"
                assert (val.shape, val.stride(), val.dtype) == (
                    b.meta["val"].shape, b.meta["val"].stride(), b.meta["val"].dtype
                )  # fmt: skip

    def test_freezing_a_layer_mid_run_records_the_step_again():
        orders = _orders(96, 16, 6)
        plain, _, _ = _train("mnist_mlp", 96, 16, orders, False, freeze_at=4)
        replayed, step, _ = _train("mnist_mlp", 96, 16, orders, True, freeze_at=4)
        assert step.kind == "captured"
        for name in plain:
            _same(replayed[name], plain[name], name)

    def test_the_switch_times_only_the_replayed_steps(monkeypatch, tmp_path):
        """A window's eager and recording steps are left out of the replay's step time,
        their seconds and their count: with the fastest window taken, counting them
        would make the replay look faster than it is."""
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))

        class Recorded:  # a CapturedStep after its first window: one eager step, one recording
            kind, key, ops, overhead_steps, overhead_s = "captured", None, 10, 2, 0.5

        switch = torch_switch.Switch(Recorded(), planned_steps=40)
        switch.window_done(34, 0.5 + 32 * 1e-3)  # 32 replayed steps of 1 ms
        assert switch.replay_step_s == pytest.approx(1e-3)
        assert Recorded.overhead_steps == 2 and switch.captured.overhead_steps == 0

    def _switches(monkeypatch):
        return instances_made(monkeypatch, torch_switch.Switch)

    def _mlp_run(fast):
        x, y = _data("mnist_mlp", 300)  # 19 steps of 16 an epoch, the last partial
        model = _model("mnist_mlp")
        history, settings = fit(model, x, y, batch_size=16, epochs=5, seed=1, verbose=0, fast=fast)
        return history.history, settings, model

    def test_auto_compiles_mid_run_where_the_cost_cache_says_it_pays(monkeypatch, tmp_path):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(costs.Estimate, "of", classmethod(lambda cls, key: cls(0.0, 0.0)))
        quick_torch_compile(monkeypatch)
        switches = _switches(monkeypatch)
        plain, _, plain_model = _mlp_run("off")
        auto, settings, model = _mlp_run("auto")
        (switch,) = switches
        assert settings.compile_when_pays and settings.planned_steps == 95
        # timed over two windows (38 steps >= MIN_TIMED_STEPS), compiled from the third
        assert switch.kind == "compiled" and switch.compiled_at == 38
        assert switch.phase == "done"  # the compiled step timed, its cost written
        (entry,) = json.loads((tmp_path / costs.FILE).read_text()).values()
        assert entry["compile_s"] > 0 and 0 < entry["step_s"] < 1 and entry["uncompiled_step_s"] > 0
        np.testing.assert_allclose(auto["loss"], plain["loss"], rtol=1e-5)
        for a, b in zip(model.get_weights(), plain_model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    def test_a_compile_that_fails_is_recorded_and_the_replay_goes_on(monkeypatch, tmp_path):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(costs.Estimate, "of", classmethod(lambda cls, key: cls(0.0, 0.0)))

        def broken(fn, **kwargs):
            def fails(idx):
                fn(idx)  # half a step done, then the failure: its changes must not stay
                raise RuntimeError("inductor exploded")

            return fails

        monkeypatch.setattr(torch, "compile", broken)
        switches = _switches(monkeypatch)
        plain, _, plain_model = _mlp_run("off")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the user is not told: nothing went wrong for them
            auto, _, model = _mlp_run("auto")
        (switch,) = switches
        assert switch.kind == "captured" and switch.compiled_at is None
        (entry,) = json.loads((tmp_path / costs.FILE).read_text()).values()
        assert entry["fails"] and entry["why"] == "RuntimeError: inductor exploded"
        _same(auto["loss"], plain["loss"], "loss")  # the replay: Keras's step, bit for bit
        for a, b in zip(model.get_weights(), plain_model.get_weights(), strict=True):
            _same(a, b)
        monkeypatch.undo()  # the real Estimate.of reads the failure: no compile is tried
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        switches = _switches(monkeypatch)
        _mlp_run("auto")
        assert switches[0].estimate.fails and switches[0].compiled is None

    def test_an_operation_inductor_cannot_compile_is_kept_out_and_the_rest_compiled(
        monkeypatch, tmp_path
    ):
        """As inductor fails on torch's CPU LSTM kernel (it names the operation): the
        compile is made again around it, in parts, computes Keras's step, and the next
        run compiles around it from the start (written with the compile's cost). Here a
        backend that fails on any graph holding an RNN kernel (the CPU's or cuDNN's)
        stands for inductor, with nothing kept out beforehand."""
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(torch_switch, "EAGER_OPERATIONS", frozenset())
        monkeypatch.setattr(torch_switch, "MIN_TIMED_STEPS", 8)  # a window of 10 steps each
        monkeypatch.setattr(costs.Estimate, "pays", lambda self, *a, **k: not self.fails)
        compiled, failures, compile_ = [], [], torch.compile

        def backend(gm, example_inputs):
            kernels = [str(n.target) for n in gm.graph.nodes if "rnn" in str(n.target)]
            if any("backward" not in k for k in kernels):
                failures.append(kernels)
                raise TypeError(f"expected Tensor() for op: torch.ops.{kernels[0]}")
            compiled.append(gm)
            return torch._dynamo.backends.debugging.aot_eager(gm, example_inputs)

        monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **kw, backend=backend))
        switches = _switches(monkeypatch)

        def run(fast):
            model = _model("ticket_router")
            x, y = _data("ticket_router", 160)  # 10 steps of 16 an epoch
            history, _ = fit(model, x, y, batch_size=16, epochs=3, seed=1, verbose=0, fast=fast)
            return history.history, model

        plain, plain_model = run("off")
        auto, model = run("auto")
        (switch,) = switches
        assert switch.kind == "compiled" and switch.compiled_at == 10 and len(failures) == 1
        (kept,) = switch.eager_operations
        assert "rnn" in kept and compiled  # compiled in parts, none holding the kernel
        assert not any(str(n.target) == kept for gm in compiled for n in gm.graph.nodes)
        assert any(str(n.target) == kept for n in switch.captured.graph.graph.nodes)  # a copy
        (entry,) = json.loads((tmp_path / costs.FILE).read_text()).values()
        assert entry["eager_operations"] == [kept] and entry["compile_s"] > 0
        assert "cold" not in entry  # aot_eager: no inductor, no cache missed
        for key in plain:
            np.testing.assert_allclose(auto[key], plain[key], rtol=1e-5, err_msg=key)
        for a, b in zip(model.get_weights(), plain_model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        del failures[:], switches[:]
        run("auto")  # the entry read: compiled around the kernel from the start
        assert switches[0].eager_operations == {kept} and switches[0].kind == "compiled"
        assert not failures


if BACKEND == "jax":
    import jax

    from zoo.performance import jax as jax_window
    from zoo.precision import accelerator_present

    @pytest.fixture
    def no_cache_folder_of_the_users():
        """JAX as a user leaves it: no cache folder set (the nox session sets one for the
        whole suite, which the zoo would leave to the user); theirs put back after."""
        from jax.experimental.compilation_cache import compilation_cache

        theirs = jax.config.jax_compilation_cache_dir
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()
        yield
        jax.config.update("jax_compilation_cache_dir", theirs)
        compilation_cache.reset_cache()

    def test_jax_keeps_its_compiles_in_the_zoo_cache_during_a_fit_only(
        monkeypatch, tmp_path, no_cache_folder_of_the_users
    ):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        rng = np.random.default_rng(0)
        x, y = rng.random((96, 784), dtype=np.float32), rng.integers(0, 10, 96).astype("int32")

        def run():
            keras.utils.set_random_seed(0)
            model = zoo.create("mnist_mlp")
            recipe_for("mnist_mlp").compile(model)
            fit(model, x, y, batch_size=16, epochs=2, seed=1, verbose=0)
            return model.get_weights(), {p.name for p in (tmp_path / "jax").iterdir()}

        first, kept = run()
        assert any(name.startswith("jit_some_steps") for name in kept), kept  # the window
        assert jax.config.jax_compilation_cache_dir is None  # JAX's settings put back
        events = []

        def listen(event, **kwargs):
            events.append(event)

        jax.monitoring.register_event_listener(listen)
        try:  # the same fit again: its new jitted functions load their programs
            again, kept_again = run()
        finally:
            jax.monitoring.unregister_event_listener(listen)
        assert kept_again == kept  # nothing compiled that was not kept the first time
        assert events.count("/jax/compilation_cache/cache_hits") >= 1, set(events)
        for a, b in zip(first, again, strict=True):  # the same programs: bit for bit on the
            if accelerator_present():  # CPU; a GPU's sums may run in another order per call
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
            else:
                np.testing.assert_array_equal(a, b)
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
        try:  # a user's own cache folder is theirs, untouched
            with jax_window.compile_cache() as folder:
                assert folder is None
                assert jax.config.jax_compilation_cache_dir == str(tmp_path / "theirs")
        finally:
            jax.config.update("jax_compilation_cache_dir", None)
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "file" / "below"))  # cannot be made
        with jax_window.compile_cache() as folder:
            assert folder is None and jax.config.jax_compilation_cache_dir is None
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setenv(jax_window.CACHE_SWITCH, "0")
        with jax_window.compile_cache() as folder:
            assert folder is None and jax.config.jax_compilation_cache_dir is None

    def test_jax_builds_the_optimizer_and_metrics_without_compiling_their_zeros():
        """``keras_patches.build_for_training`` on JAX: the optimizer's slots and the
        metrics' totals made as host zeros put on the device (no XLA program per shape),
        the values, dtypes and devices of Keras's own build; Keras's ``zeros`` back after."""
        from keras.src.backend.jax import numpy as jax_numpy

        from zoo.performance import keras_patches

        zeros = jax_numpy.zeros

        def built(ours):  # shapes no other test compiles zeros of in this process
            keras.utils.set_random_seed(0)
            inputs = keras.Input((23,))
            model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Dense(37)(inputs)))
            model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
            batch = (np.zeros((16, 23), "float32"), np.zeros((16,), "int32"))
            compiles = []

            def listen(event, duration, **kwargs):
                if event == "/jax/core/compile/backend_compile_duration":
                    compiles.append(event)

            jax.monitoring.register_event_duration_secs_listener(listen)
            try:
                if ours:
                    assert keras_patches.build_for_training(model, batch)
                else:
                    model._symbolic_build(data_batch=batch)
            finally:
                jax.monitoring.unregister_event_duration_listener(listen)
            variables = list(model.optimizer.variables)
            for metric in model.metrics:
                variables += metric.variables
            return [v.value for v in variables], compiles

        mine, my_compiles = built(ours=True)
        kerass, _ = built(ours=False)
        assert jax_numpy.zeros is zeros
        assert my_compiles == []
        assert len(mine) == len(kerass) > 4
        for a, b in zip(mine, kerass, strict=True):
            assert a.dtype == b.dtype and a.devices() == b.devices()
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
