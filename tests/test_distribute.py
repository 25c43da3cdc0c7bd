"""Data-parallel training (``train(..., distribute="data")``) on 2 CPU devices gives the
metrics of one device; a backend without it says so in one line.

Each run is a subprocess, since the device count is fixed when the backend starts:
JAX gets 2 host devices from ``XLA_FLAGS``, TensorFlow 2 logical CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from zoo.training import train

BACKEND = keras.backend.backend()

RUN = textwrap.dedent(
    """
    import json, sys
    backend, out, mode, batch_size = sys.argv[1:5]
    seen = []
    if backend == "tensorflow" and mode == "data":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    if backend == "jax":
        # Records how the first training batch is laid out over the devices.
        from keras.src.backend.jax import distribution_lib as lib
        original = lib.distribute_data_input
        def spy(batch, layout, batch_dim_name):
            out_ = original(batch, layout, batch_dim_name)
            if not seen:
                seen.append({
                    "shape": list(out_.shape),
                    "shards": sorted(list(s.data.shape) for s in out_.addressable_shards),
                    "devices": len(out_.sharding.device_set),
                })
            return out_
        lib.distribute_data_input = spy
    from zoo.training import train
    metrics = train("mnist_mlp", epochs=2, batch_size=int(batch_size), out=out, verbose=0,
                    distribute=None if mode == "none" else mode)
    print(json.dumps({"metrics": metrics, "seen": seen}))
    """
)


def _run(tmp_path, mode, devices, batch_size=32):
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    if BACKEND == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        env["JAX_PLATFORMS"] = "cpu"  # host devices, also on a machine with a GPU
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            BACKEND,
            str(tmp_path / f"{mode}{devices}"),
            mode,
            str(batch_size),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if result.returncode != 0:
        return {"error": result.stderr}
    return json.loads(result.stdout.strip().splitlines()[-1])


if BACKEND in ("jax", "tensorflow"):

    def test_two_devices_give_the_metrics_of_one(tmp_path):
        one = _run(tmp_path, "none", 1)
        two = _run(tmp_path, "data", 2)
        assert "error" not in one and "error" not in two, (one, two)
        info = two["metrics"]["distribution"]
        assert info["devices"] == 2 and info["processes"] == 1
        assert one["metrics"]["distribution"] is None
        if BACKEND == "jax":
            assert info["strategy"] == "keras.distribution.DataParallel"
            # the global batch of 32 is split into 2 shards of 16, one per device
            assert two["seen"] == [
                {"shape": [32, 784], "shards": [[16, 784], [16, 784]], "devices": 2}
            ]
        else:
            assert info["strategy"] == "tf.distribute.MirroredStrategy"
        for key in ("test_loss", "test_accuracy"):
            np.testing.assert_allclose(
                two["metrics"][key], one["metrics"][key], rtol=1e-3, err_msg=key
            )

    def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path):
        result = _run(tmp_path, "data", 2, batch_size=33)
        assert "error" in result
        last = result["error"].strip().splitlines()[-1]
        assert last.endswith(
            "batch_size must be a multiple of the 2 local devices for distribute='data', got 33"
        ) or last.endswith(
            "batch_size must be a multiple of the 2 devices for distribute='data', got 33"
        )
        assert not (tmp_path / "data2").exists()


def test_distribute_errors_are_one_clear_line(tmp_path):
    if BACKEND == "torch":
        with pytest.raises(ValueError, match=r"not available on the 'torch' backend"):
            train(epochs=1, out=tmp_path / "run", distribute="data")
    with pytest.raises(ValueError, match=r"distribute must be one of \['data'\] or None"):
        train(epochs=1, out=tmp_path / "run", distribute="model")
    assert not (tmp_path / "run").exists()
