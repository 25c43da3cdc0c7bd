"""Training choices per run (``zoo.control``, ``zoo train --optimizer --lr --schedule
--warmup-epochs --early-stopping --reduce-lr-on-plateau --set -c``): Keras's own
optimizers, schedule and callbacks, recorded in config.json, refused on a resume that
differs, and resumed exactly after a kill at any point, the callbacks' state included."""

import json
import time

import keras
import numpy as np
import pytest
from conftest import CrashMidEpoch, SimulatedCrash, crash_at, run_with_crashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import cli
from zoo.control import Control
from zoo.rundir import RunDirError
from zoo.training import TrainArgs, train

EPOCHS = 6
# mnist_mlp on digits: SGD warming up to 0.5 over 2 epochs, then a cosine to 0; it
# overshoots once warm, so early stopping ends the run after 2-3 epochs on every backend
STOPPING = {
    "optimizer": "sgd",
    "learning_rate": 0.5,
    "schedule": "cosine",
    "warmup_epochs": 2,
    "early_stopping": 1,
}
# SGD at 0.5 overshoots from the second epoch on: the plateau lowers the learning rate
PLATEAU = {"optimizer": "sgd", "learning_rate": 0.5, "reduce_lr_on_plateau": 1}


def _rows(run):
    return (run / "history.csv").read_text()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted runs every interrupted one must end like, per control."""
    found = {}
    for name, control in (("stopping", STOPPING), ("plateau", PLATEAU)):
        run = tmp_path_factory.mktemp(name) / "run"
        found[name] = (
            train("mnist_mlp", epochs=EPOCHS, out=run, verbose=0, control=control),
            _rows(run),
        )
    return found


def test_the_choices_compile_kerass_optimizer_and_schedule():
    control = dict(optimizer="AdamW", learning_rate=0.01, schedule="cosine", warmup_epochs=1)
    model = TrainArgs.check("mnist_mlp", None, 4, None, 0, None, "auto", None, control).build(
        steps_per_epoch=10
    )
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)

    def rate_at(step):
        optimizer.iterations.assign(step)
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    # a linear warmup over the first epoch's 10 steps, then a cosine over the other 30
    assert [rate_at(s) for s in (0, 5, 10)] == pytest.approx([0.0, 0.005, 0.01])
    assert rate_at(25) == pytest.approx(0.005, rel=1e-5) and rate_at(40) == pytest.approx(0.0)
    # the recipe's loss and metrics stay
    compiled = model.get_compile_config()
    plain = TrainArgs.check("mnist_mlp", None, 4, None, 0, None, "auto").build(10)
    assert compiled["loss"] == plain.get_compile_config()["loss"]
    assert compiled["metrics"] == plain.get_compile_config()["metrics"]
    # a learning rate alone keeps the recipe's optimizer (RMSprop), constant after no warmup
    only_rate = TrainArgs.check(
        "mnist_mlp", None, 4, None, 0, None, "auto", None, {"learning_rate": 0.05}
    ).build(10)
    assert isinstance(only_rate.optimizer, keras.optimizers.RMSprop)
    assert float(keras.ops.convert_to_numpy(only_rate.optimizer.learning_rate)) == pytest.approx(
        0.05
    )
    assert isinstance(plain.optimizer, keras.optimizers.RMSprop)  # nothing chosen: the recipe's
    assert Control().config() == {} and not Control().changes_optimizer()


@pytest.mark.parametrize(
    "choices, message",
    [
        ({"optimizer": "adamx"}, "optimizer must be one of"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0, got 0"),
        ({"learning_rate": "fast"}, "learning_rate must be a number > 0"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"warmup_epochs": -1}, "warmup_epochs must be an int >= 0"),
        ({"warmup_epochs": 4}, "warmup_epochs must be fewer than the run's 4 epochs"),
        ({"early_stopping": 0}, "early_stopping must be a positive int"),
        ({"reduce_lr_on_plateau": 2, "schedule": "cosine"}, "can't be combined with a schedule"),
    ],
)
def test_bad_choices_are_one_line_errors(choices, message):
    with pytest.raises(ValueError, match=message):
        Control.check(**choices, epochs=4)


def test_the_command_line_records_every_choice_and_refuses_another_on_resume(tmp_path, capsys):
    (tmp_path / "model.json").write_text(json.dumps({"dropout": 0.1, "hidden_units": [8]}))
    run = tmp_path / "run"
    argv = ["train", "--epochs", "2", "--out", str(run), "--quiet", "--optimizer", "adamw"]
    argv += ["--lr", "0.003", "--schedule", "cosine", "--warmup-epochs", "1"]
    argv += ["--early-stopping", "3", "-c", str(tmp_path / "model.json")]
    argv += ["--set", "hidden_units=16,16"]
    assert cli.main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["overrides"] == {"dropout": 0.1, "hidden_units": [16, 16]}  # --set wins
    assert config["training"] == {
        "optimizer": "adamw",
        "learning_rate": 0.003,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "early_stopping": 3,
    }
    assert keras.saving.load_model(run / "model.keras").count_params() == (
        784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    )
    capsys.readouterr()
    other = tmp_path / "other"
    assert cli.main(["train", "--epochs", "2", "--out", str(other), "--lr", "0.1"]) == 0
    (other / "metrics.json").unlink()  # as if it had been killed: a resume, with another rate
    assert cli.main(["train", "--epochs", "2", "--out", str(other), "--lr", "0.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "training.learning_rate: 0.1 there, 0.2 now" in err
    # a bad -c or --set: one line, nothing written
    for bad, message in (
        (["--set", "dropout"], "--set 'dropout': write KEY=VALUE"),
        (["-c", str(tmp_path / "none.json")], "can't read it"),
        (["--set", "units=3"], "Unknown argument(s) ['units'] for model 'mnist_mlp'"),
        (["--set", "dropout=7"], "dropout"),
    ):
        assert cli.main(["train", "--out", str(tmp_path / "bad"), *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not (tmp_path / "bad").exists()


def test_early_stopping_ends_the_run_and_a_plateau_lowers_the_rate(straight):
    metrics, history = straight["stopping"]
    rows = history.splitlines()
    assert metrics["epochs_done"] == len(rows) - 1 < EPOCHS  # stopped early
    metrics, history = straight["plateau"]
    header, *rows = history.splitlines()
    rates = [float(r.split(",")[header.split(",").index("learning_rate")]) for r in rows]
    assert rates[0] == pytest.approx(0.5) and min(rates) < 0.5  # lowered on a plateau
    assert metrics["epochs_done"] == EPOCHS


def test_a_kill_after_early_stopping_decided_trains_no_further(tmp_path, straight, monkeypatch):
    """Killed after the stopping epoch's checkpoint, before the run's files: the same
    command ends the run there, as the uninterrupted one did."""
    metrics, history = straight["stopping"]
    stop = metrics["epochs_done"]

    crash_at(monkeypatch, "history:written", stop)
    with pytest.raises(SimulatedCrash):
        train("mnist_mlp", epochs=EPOCHS, out=tmp_path / "run", verbose=0, control=STOPPING)
    crash_at(monkeypatch, None)
    again = train("mnist_mlp", epochs=EPOCHS, out=tmp_path / "run", verbose=0, control=STOPPING)
    assert again["epochs_done"] == stop and _rows(tmp_path / "run") == history
    assert again["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("control", ["stopping", "plateau"])
def test_a_kill_in_the_deciding_epoch_keeps_the_callbacks_state(tmp_path, straight, control):
    """Killed mid-way through the epoch where early stopping stops the run (or the one
    after the plateau first lowered the rate), then run again: the callback decides as
    in the uninterrupted run, from its restored best value and wait count (Keras's
    callback alone would start over from no best value)."""
    metrics, history = straight[control]
    header, *rows = history.splitlines()
    if control == "stopping":
        epoch = metrics["epochs_done"] - 1
    else:
        rates = [r.split(",")[header.split(",").index("learning_rate")] for r in rows]
        epoch = next(i for i, r in enumerate(rates) if r != rates[0])
    choices = STOPPING if control == "stopping" else PLATEAU
    out = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0, control=choices,
              callbacks=[CrashMidEpoch(epoch, 3)])  # fmt: skip
    assert len(_rows(out).splitlines()) == 1 + epoch  # the epochs before it are checkpointed
    again = train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0, control=choices)
    assert _rows(out) == history and again["epochs_done"] == metrics["epochs_done"]


crash = st.one_of(
    st.tuples(
        st.sampled_from(["checkpoint:written", "checkpoint:renamed", "history:written"]),
        st.integers(1, EPOCHS),
    ),
    st.tuples(st.just("metrics:written"), st.just(-1)),
    st.tuples(st.just("batch"), st.tuples(st.integers(0, EPOCHS - 1), st.integers(0, 17))),
)


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is not a fuzzing farm
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(control=st.sampled_from(["stopping", "plateau"]), crashes=st.lists(crash, max_size=2))
def test_kills_at_any_point_resume_to_the_uninterrupted_run(
    tmp_path, straight, monkeypatch, control, crashes
):
    """Killed anywhere (between a checkpoint's files, mid-epoch, after the run's
    files), then run again: the same history, bit for bit, and the same test metrics,
    with early stopping and a schedule, or a plateau lowering the rate."""
    out = tmp_path / f"run{time.monotonic_ns()}"
    choices = STOPPING if control == "stopping" else PLATEAU

    def again(callbacks=()):
        if not (out / "metrics.json").exists():
            train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0, callbacks=callbacks,
                  control=choices)  # fmt: skip
            return
        with pytest.raises(RunDirError, match="holds a finished run"):
            train("mnist_mlp", epochs=EPOCHS, out=out, verbose=0, control=choices)

    run_with_crashes(monkeypatch, crashes, again)
    again()
    metrics, history = straight[control]
    got = json.loads((out / "metrics.json").read_text())
    assert _rows(out) == history
    for key in ("test_loss", "test_accuracy", "epochs_done"):
        assert np.isclose(got[key], metrics[key], rtol=1e-6, atol=1e-7), key
