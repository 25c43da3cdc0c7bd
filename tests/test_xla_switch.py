"""``fast="auto"`` on TensorFlow: the window's loop runs as a plain graph and is
XLA-compiled from the window where the measured step time and XLA's cost say it pays
(``zoo.performance.tensorflow.XlaSwitch``), computing what Keras's own loop computes."""

import json

import keras
import numpy as np
from conftest import instances_made

import zoo
from zoo.performance import costs
from zoo.training import fit, recipe_for

BACKEND = keras.backend.backend()

if BACKEND == "tensorflow":
    import tensorflow as tf

    import zoo.performance.tensorflow as tf_window

    def _run(fast, epochs=5):
        rng = np.random.default_rng(0)  # 19 steps of 16 an epoch, the last partial
        x = rng.random((300, 784), dtype=np.float32)
        y = rng.integers(0, 10, 300).astype("int32")
        keras.utils.set_random_seed(0)
        model = zoo.create("mnist_mlp")
        recipe_for("mnist_mlp").compile(model)
        history, settings = fit(
            model, x, y, batch_size=16, epochs=epochs, seed=1, verbose=0, fast=fast
        )
        return history.history, settings, model

    def _switches(monkeypatch) -> list:
        return instances_made(monkeypatch, tf_window.XlaSwitch)

    def _close_to(run, plain):
        (history, _, model), (plain_history, _, plain_model) = run, plain
        for key in ("loss", "accuracy"):  # XLA sums in another order: as fast="on"'s test
            np.testing.assert_allclose(history[key], plain_history[key], rtol=1e-4, atol=1e-6)
        for a, b in zip(model.get_weights(), plain_model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)

    def _entry(folder) -> tuple[str, dict]:
        ((key, entry),) = json.loads((folder / costs.FILE).read_text()).items()
        return key, entry

    def test_auto_compiles_with_xla_mid_run_then_from_the_start_where_the_cache_says_so(
        monkeypatch, tmp_path
    ):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(costs, "DEFAULT_XLA_S_PER_OP", 0.0)  # any saving pays
        monkeypatch.setattr(tf_window, "MIN_TIMED_STEPS", 16)
        monkeypatch.setattr(tf_window, "MIN_TIMED_S", 0.0)
        switches = _switches(monkeypatch)
        plain = _run("off")
        auto = _run("auto")
        (switch,) = switches
        assert auto[1].compile_when_pays and auto[1].jit_compile is False
        # windows of 18 full batches, timed in chunks within them: the graph's first 8
        # steps untimed (TensorFlow optimizes the graph at its first run), the window's
        # other 10 timed, then 16 of the second: 26 timed, XLA from step 34, inside the
        # second window; its time cached after
        assert switch.kind == "compiled" and switch.compiled_at == 34 and switch.phase == "done"
        _, entry = _entry(tmp_path)
        assert entry["compile_s"] > 0 and 0 < entry["step_s"] < 1
        assert entry["uncompiled_step_s"] > 0 and entry["uncompiled_setup_s"] > 0
        _close_to(auto, plain)

        # the same run again: with both step times and a cheap compile cached, XLA from
        # the first step, nothing timed
        key, entry = _entry(tmp_path)
        costs.write(key, {**entry, "compile_s": 1e-9, "step_s": entry["uncompiled_step_s"] / 2})
        again = _run("auto")
        assert switches[-1].compiled_at == 0 and switches[-1].phase == "done"
        _close_to(again, plain)

        # a compile recorded as failing is not tried again
        costs.write(key, {"fails": True, "why": "earlier"})
        _run("auto", epochs=3)
        assert switches[-1].kind == "graph" and switches[-1].compiled_at is None
        assert switches[-1].phase == "done"

    def test_an_xla_compile_that_fails_is_recorded_and_the_graph_goes_on(monkeypatch, tmp_path):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(costs, "DEFAULT_XLA_S_PER_OP", 0.0)
        monkeypatch.setattr(tf_window, "MIN_TIMED_STEPS", 16)
        monkeypatch.setattr(tf_window, "MIN_TIMED_S", 0.0)
        switches = _switches(monkeypatch)
        function = tf.function

        def no_xla(fn=None, **kwargs):
            if not kwargs.get("jit_compile"):
                return function(fn, **kwargs)

            def refused(*args):  # as XLA refuses an operation it has no kernel for
                raise tf.errors.InvalidArgumentError(None, None, "no XLA kernel for EagerPyFunc")

            return refused

        plain = _run("off")
        monkeypatch.setattr(tf, "function", no_xla)
        auto = _run("auto")
        (switch,) = switches
        assert switch.kind == "graph" and switch.compiled_at is None and switch.phase == "done"
        _, entry = _entry(tmp_path)
        assert entry["fails"] and "no XLA kernel for EagerPyFunc" in entry["why"]
        _close_to(auto, plain)  # every window ran, the refused one again as a graph

    def test_the_cache_key_names_the_model_not_keras_numbering_of_its_names():
        def key(**overrides):
            model = zoo.create("mnist_mlp", **overrides)
            recipe_for("mnist_mlp").compile(model)
            return tf_window._key(model, (tf.zeros((16, 784)), tf.zeros((16,), tf.int32)))

        first = key()
        assert first is not None and key() == first  # dense_3 and rm_sprop_1 the second time
        assert key(hidden_units=[32, 32]) != first

    def test_a_model_whose_own_step_makes_a_variable_trains_in_the_window():
        """The window's loop is its first trace (Keras's variables built from a batch's
        shapes before it): a ``train_step`` of the user's that makes a variable there
        still works, and runs every step."""

        class Counting(zoo.zoo_model.ZooModel):
            def train_step(self, data):
                if not hasattr(self, "steps_seen"):
                    self.steps_seen = tf.Variable(0, dtype=tf.int64, trainable=False)
                self.steps_seen.assign_add(1)
                return super().train_step(data)

        rng = np.random.default_rng(0)
        x = rng.random((300, 784), dtype=np.float32)
        y = rng.integers(0, 10, 300).astype("int32")
        base = zoo.create("mnist_mlp")
        model = Counting(base.inputs, base.outputs)
        recipe_for("mnist_mlp").compile(model)
        fit(model, x, y, batch_size=16, epochs=2, seed=1, verbose=0)
        assert int(model.steps_seen.numpy()) == 2 * 19  # every step, the partial ones too
