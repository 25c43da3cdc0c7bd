"""Data-parallel training (``train(..., distribute="data")``) on 2 CPU devices, and on 2
processes (``zoo train --processes 2``), gives the metrics of one device; a backend
without it says so in one line.

Each run is a subprocess, since the device count is fixed when the backend starts:
JAX gets 2 host devices from ``XLA_FLAGS``, TensorFlow 2 logical CPU devices. The
multi-process runs are real: the launcher starts 2 workers that talk over localhost
(torch: gloo; JAX: ``jax.distributed`` with gloo collectives; TensorFlow:
``MultiWorkerMirroredStrategy``'s gRPC collectives)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from zoo import distribute, launch
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


ONE_WORKER = textwrap.dedent(
    """
    import contextlib, json
    import keras, numpy as np, tensorflow as tf
    import zoo
    from zoo.training import fit

    x = np.random.default_rng(0).random((200, 784), dtype="float32")
    y = np.random.default_rng(1).integers(0, 10, 200)

    def run(fast, strategy=None):
        keras.utils.set_random_seed(0)
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = zoo.create("mnist_mlp")
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            history, settings = fit(model, x, y, batch_size=32, epochs=2, verbose=0, fast=fast,
                                    validation_data=(x[:50], y[:50]))
        return {"history": history.history, "settings": settings.as_dict()}

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: this one worker
    print(json.dumps({"plain": run("off"), **{f: run(f, strategy) for f in ("off", "auto")}}))
    """
)

if BACKEND == "tensorflow":

    def test_the_multi_worker_loop_gives_keras_fits_curve_with_any_fast_setting():
        """The zoo's loop under MultiWorkerMirroredStrategy (one worker here: the strategy
        without TF_CONFIG) gives Keras's plain fit's history, with ``fast="off"`` (one
        step per window) and ``"auto"``, a partial last batch included (200 = 6 x 32 + 8)."""
        result = subprocess.run(
            [sys.executable, "-c", ONE_WORKER],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "KERAS_BACKEND": BACKEND},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs = json.loads(result.stdout.strip().splitlines()[-1])
        assert runs["plain"]["settings"]["window"] is False
        for fast, spe in (("off", 1), ("auto", 7)):
            settings = runs[fast]["settings"]
            assert settings["window"] and settings["steps_per_execution"] == spe, settings
            assert runs[fast]["history"].keys() == runs["plain"]["history"].keys()
            for key, values in runs["plain"]["history"].items():
                np.testing.assert_allclose(
                    runs[fast]["history"][key], values, rtol=1e-5, err_msg=key
                )


def test_distribute_errors_are_one_clear_line(tmp_path):
    if BACKEND == "torch":  # one process: DDP needs several
        with pytest.raises(ValueError, match=r"one process per device: start it with `zoo tr"):
            train(epochs=1, out=tmp_path / "run", distribute="data")
    with pytest.raises(ValueError, match=r"distribute must be one of \['data'\] or None"):
        train(epochs=1, out=tmp_path / "run", distribute="model")
    assert not (tmp_path / "run").exists()


# -- several processes (zoo train --processes 2) -----------------------------------------------
#: Put first on the workers' PYTHONPATH: in each worker (RANK or KERAS_DISTRIBUTION_PROCESS_ID
#: set by the launcher) it records every batch share the worker takes and every file it
#: creates, renames or makes a folder for, and it SIGKILLs the worker at
#: ZOO_SPY_KILL="rank@epoch@step".
SPY = """
import json, os, signal, sys
rank = os.environ.get("RANK") or os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID")
if rank is None and os.environ.get("TF_CONFIG"):
    rank = str(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
if rank is not None and os.environ.get("ZOO_SPY_DIR"):
    sys.path.insert(0, os.getcwd())  # the zoo that `python -m zoo` will run (-m adds it later)
    from zoo.performance import feed
    log = open(os.path.join(os.environ["ZOO_SPY_DIR"], f"rank{rank}.jsonl"), "a")
    def say(**record):
        log.write(json.dumps(record) + "\\n")
        log.flush()
    set_epoch, indices = feed.Batches.set_epoch, feed.Batches.indices
    def spy_set_epoch(self, epoch):
        self.spy_epoch = epoch
        set_epoch(self, epoch)
    def spy_indices(self, i):
        mine = indices(self, i)
        every = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        say(kind="batch", epoch=self.spy_epoch, step=int(i), mine=[int(j) for j in mine],
            every=[int(j) for j in every], size=self.size)
        if os.environ.get("ZOO_SPY_KILL") == f"{rank}@{self.spy_epoch}@{i}":
            os.kill(os.getpid(), signal.SIGKILL)
        return mine
    feed.Batches.set_epoch = spy_set_epoch
    feed.Batches.indices = spy_indices
    replace, open_, mkdir = os.replace, os.open, os.mkdir
    def spy_replace(src, dst, *a, **k):
        say(kind="write", path=os.path.abspath(dst))
        return replace(src, dst, *a, **k)
    def spy_open(path, flags, *a, **k):
        if flags & os.O_CREAT:
            say(kind="write", path=os.path.abspath(path))
        return open_(path, flags, *a, **k)
    def spy_mkdir(path, *a, **k):
        say(kind="write", path=os.path.abspath(path))
        return mkdir(path, *a, **k)
    os.replace, os.open, os.mkdir = spy_replace, spy_open, spy_mkdir
"""

EPOCHS = 3


def _zoo_train(out, spy, *args, kill=None):
    """``python -m zoo train mnist_mlp`` on digits for EPOCHS epochs into ``out``."""
    spy.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "KERAS_BACKEND": BACKEND,
        "PYTHONPATH": os.pathsep.join(
            [str(spy.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        ),
        "ZOO_SPY_DIR": str(spy),
    }
    env.pop("ZOO_SPY_KILL", None)
    if kill:
        env["ZOO_SPY_KILL"] = kill
    # every run on the devices a 2-process run gets here (CPUs where there are fewer than
    # 2 GPUs), so that the 1-process reference computes on the same kind of device
    env.update(launch.device_env(BACKEND, 0, 2, launch.gpu_count()))
    if BACKEND == "jax":
        env["JAX_PLATFORMS"] = "cpu"
    command = ["train", "mnist_mlp", "--epochs", str(EPOCHS), "--quiet", "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "zoo", *command, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _spied(spy):
    """``{rank: [records]}`` of what the spy saw in each worker."""
    return {
        int(p.stem[4:]): [json.loads(line) for line in p.read_text().splitlines()]
        for p in sorted(spy.glob("rank*.jsonl"))
    }


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    """An uninterrupted 1-process run and 2-process run of the same command, made once
    per xdist worker that runs one of its tests (a module-scoped fixture is made again
    each time a worker comes back to this module from another)."""
    base = tmp_path_factory.mktemp("processes")
    (base / "sitecustomize.py").write_text(SPY)
    one = _zoo_train(base / "one", base / "spy-one")
    two = _zoo_train(base / "two", base / "spy-two", "--distribute", "data", "--processes", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    return base


# these run on one xdist worker (--dist loadgroup), so the fixture's runs are made once
multi = pytest.mark.xdist_group("processes")


@multi
def test_two_processes_end_with_the_metrics_of_one(two_runs):
    one, two = _metrics(two_runs / "one"), _metrics(two_runs / "two")
    info = two["distribution"]
    assert info["processes"] == 2 and info["devices"] == 2
    engine = {
        "jax": "keras.distribution.DataParallel",
        "torch": "torch.nn.parallel.DistributedDataParallel",
        "tensorflow": "tf.distribute.MultiWorkerMirroredStrategy",
    }[BACKEND]
    if BACKEND == "torch" and distribute.keras_distributes_torch():  # keras-nightly
        engine = "keras.distribution.DataParallel"  # Keras's own DDP in fit
    assert info["strategy"] == engine
    assert one["distribution"] is None
    for key in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-3, err_msg=key)
    # the training metrics of every epoch too: over the global batches, not one share
    history = [(two_runs / run / "history.csv").read_text().splitlines() for run in ["one", "two"]]
    assert history[0][0] == history[1][0] and len(history[1]) == EPOCHS + 1
    rows = [
        np.loadtxt(two_runs / r / "history.csv", delimiter=",", skiprows=1) for r in ("one", "two")
    ]
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-3)


@multi
def test_each_process_takes_a_disjoint_half_of_every_batch(two_runs):
    seen = _spied(two_runs / "spy-two")
    assert sorted(seen) == [0, 1]
    batches = [[r for r in seen[k] if r["kind"] == "batch"] for k in (0, 1)]
    # the training split's batches (TensorFlow's workers also share the validation batches)
    train = max(r["size"] for r in batches[0])
    shares = [{(r["epoch"], r["step"]): r for r in b if r["size"] == train} for b in batches]
    assert {e for e, _ in shares[0]} == set(range(EPOCHS))
    for epoch in range(EPOCHS):  # every epoch's batches cover the (trimmed) split once
        seen_once = sorted(i for (e, _), r in shares[0].items() if e == epoch for i in r["every"])
        assert seen_once == list(range(len(seen_once))) and len(seen_once) % 2 == 0
    _assert_halves(*shares)
    if BACKEND == "tensorflow":  # its workers validate on halves of every validation batch
        validation = [{(r["epoch"], r["step"]): r for r in b if r["size"] < train} for b in batches]
        assert validation[0], "no validation batch was shared"
        _assert_halves(*validation)


def _assert_halves(first_shares, second_shares):
    """Both workers took the same global batches, each a disjoint half of it."""
    assert first_shares.keys() == second_shares.keys()
    for key, first in first_shares.items():
        second = second_shares[key]
        assert first["every"] == second["every"], key  # the same global batch
        assert not set(first["mine"]) & set(second["mine"]), key
        assert sorted(first["mine"] + second["mine"]) == sorted(first["every"]), key
        assert len(first["mine"]) == len(second["mine"]), key  # halves


@multi
def test_only_the_chief_writes_the_run(two_runs):
    run = str(two_runs / "two")
    wrote = {
        rank: {r["path"] for r in records if r["kind"] == "write" and r["path"].startswith(run)}
        for rank, records in _spied(two_runs / "spy-two").items()
    }
    assert wrote[1] == set()
    names = {os.path.basename(p) for p in wrote[0]}
    assert {"metrics.json", "model.keras", "config.json", "history.csv", ".lock"} <= names
    assert "epoch-0001.npz" in names


@multi
def test_a_killed_worker_stops_the_run_and_the_rerun_resumes_it(two_runs):
    out, args = two_runs / "killed", ("--distribute", "data", "--processes", "2")
    # worker 1 dies as it takes its share of a batch of the last epoch (TensorFlow takes an
    # epoch's shares at its start): it can only get there once worker 0 has trained in
    # epoch 2 with it (their gradients are averaged at every step), so after epoch 1's
    # checkpoint
    first = _zoo_train(out, two_runs / "spy-killed", *args, kill=f"1@{EPOCHS - 1}@5")
    assert first.returncode == 1, first.stderr[-3000:]
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("zoo: worker 1 of 2 failed (killed by SIGKILL)"), last
    assert "stopped the other workers" in last
    assert (out / "checkpoint" / "epoch-0001.npz").is_file()
    assert not (out / "metrics.json").exists()
    again = _zoo_train(out, two_runs / "spy-rerun", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed, straight = _metrics(out), _metrics(two_runs / "two")
    for key in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-5, err_msg=key)
    assert (out / "history.csv").read_text() == (two_runs / "two" / "history.csv").read_text()
    # the rerun trained only the epochs after the checkpoint (process 0 prints them)
    assert "Epoch 1/3" not in again.stdout and "Epoch 3/3" in again.stdout, again.stdout


def test_processes_need_distribute_data(tmp_path):
    result = _zoo_train(tmp_path / "run", tmp_path / "spy", "--processes", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "zoo: error: --processes 2 needs --distribute data (the workers share every batch); add it"
    )
    assert not (tmp_path / "run").exists()


# -- model parallelism ---------------------------------------------------------------------------
SPLIT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import zoo
    from zoo import distribute
    report = {}
    for name, kwargs in [("ticket_router", {}),
                         ("vgg19_features", {"include_top": True, "input_shape": (224, 224, 3)})]:
        keras.utils.set_random_seed(0)
        one = zoo.create(name, **kwargs)
        x = zoo.sample_inputs(one, batch_size=2, seed=1)
        reference = keras.tree.flatten(one.predict(x, verbose=0))
        with distribute.model_parallel(name).scope():
            two = zoo.create(name, **kwargs)
        two.set_weights(one.get_weights())
        out = keras.tree.flatten(two.predict(x, verbose=0))
        report[name] = {
            "layouts": {
                v.path: [str(v.value.sharding.spec), len(v.value.sharding.device_set),
                         sorted({tuple(s.data.shape) for s in v.value.addressable_shards})]
                for v in two.weights
            },
            "max_abs_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                for a, b in zip(out, reference, strict=True)),
        }
    print(json.dumps(report))
    """
)

if BACKEND == "jax":

    def test_model_parallel_splits_the_largest_layers_and_changes_no_output():
        env = {
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_PLATFORMS": "cpu",
        }
        result = subprocess.run(
            [sys.executable, "-c", SPLIT], capture_output=True, text=True, timeout=600, env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        split = "P(None, 'model')"
        router = report["ticket_router"]["layouts"]
        for which in ("title", "body"):  # each device holds half of every embedding vector
            assert router[f"{which}_embedding/embeddings"] == [split, 2, [[10000, 32]]]
        assert router["title_lstm/lstm_cell/kernel"] == [split, 2, [[64, 256]]]
        assert router["department/kernel"][0] == "P()"  # small layers stay whole
        vgg = report["vgg19_features"]["layouts"]
        assert vgg["fc1/kernel"] == [split, 2, [[25088, 2048]]]
        assert vgg["predictions/kernel"] == [split, 2, [[4096, 500]]]
        for name in report:
            assert report[name]["max_abs_diff"] <= 1e-5, (name, report[name]["max_abs_diff"])

else:

    def test_model_parallel_is_refused_in_one_line_off_jax():
        with pytest.raises(ValueError, match=r"model parallelism needs the jax backend"):
            distribute.model_parallel("ticket_router")


def test_model_parallel_names_the_models_it_splits():
    with pytest.raises(ValueError, match=r"one of \['ticket_router', 'vgg19_features'\]"):
        distribute.model_parallel("mnist_mlp")


def test_processes_get_a_gpu_each_or_all_train_on_cpus(monkeypatch):
    """``--processes N`` with M GPUs (a faked count): N <= M gives each worker one GPU
    (torch by LOCAL_RANK, JAX and TensorFlow by what they see); N > M puts every worker
    on the CPUs, said in one line; no GPU changes nothing."""

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch.device_env("torch", 1, 2, 0) == {} and launch.devices_note(2, 0) is None
    assert launch.device_env("torch", 1, 2, 2) == {}  # LOCAL_RANK=1 picks cuda:1
    assert launch.worker_env("torch", 1, 2, [1, 2])["LOCAL_RANK"] == "1"
    assert launch.device_env("jax", 1, 2, 4) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert launch.device_env("tensorflow", 0, 2, 4) == {"CUDA_VISIBLE_DEVICES": "0"}
    for backend in ("torch", "jax", "tensorflow"):
        assert launch.device_env(backend, 1, 2, 1) == {
            "CUDA_VISIBLE_DEVICES": "",
            "JAX_PLATFORMS": "cpu",
        }
    assert launch.devices_note(2, 1) == (
        "zoo: --processes 2 is more than the 1 GPU(s) here: the workers train on CPUs "
        "(gloo); pass --processes 1 or fewer for one GPU each"
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the GPUs this process was given
    assert launch.gpu_count() == 2
    assert launch.device_env("jax", 1, 2, 2) == {"CUDA_VISIBLE_DEVICES": "5"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.gpu_count() == 0
