"""Hyperparameter search (``zoo tune``, KerasTuner): a tiny search on every backend, its
best trial saved as a preset with its hyperparameters and score, a killed search resumed
without running its finished trials again, and each declared search space building."""

import json

import keras
import pytest
from conftest import SimulatedCrash, extras_required

import zoo
from zoo import cli
from zoo.training import TrainArgs, recipe_for

kt = pytest.importorskip("keras_tuner") if not extras_required() else __import__("keras_tuner")
from zoo.tune import tune  # noqa: E402


class _CrashInTrial(keras.callbacks.Callback):
    """Raises as the ``n``-th trial (from 1) begins to train."""

    started = 0

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_train_begin(self, logs=None):
        type(self).started += 1
        if type(self).started == self.n:
            raise SimulatedCrash(f"trial {self.n}")


def _trials(out):
    """``{trial_id: (status, score)}`` as KerasTuner keeps them in the tune directory."""
    found = {}
    for path in sorted((out / "search").glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())
        found[trial["trial_id"]] = (trial["status"], trial["score"])
    return found


def test_a_tiny_search_resumes_and_saves_its_best_trial_as_a_preset(tmp_path):
    out = tmp_path / "tune"
    with pytest.raises(SimulatedCrash):  # killed as the second trial trains
        tune("mnist_mlp", epochs=1, max_trials=2, out=out, callbacks=[_CrashInTrial(2)])
    first = _trials(out)
    assert first["0"][0] == "COMPLETED" and not (out / "best").exists()
    kept = (out / "search" / "trial_0" / "trial.json").read_bytes()
    found = tune("mnist_mlp", epochs=1, max_trials=2, out=out)  # the same command again
    trials = _trials(out)
    assert found["trials"] == 2 and sorted(trials) == ["0", "1"]
    assert all(status == "COMPLETED" for status, _ in trials.values())
    assert (out / "search" / "trial_0" / "trial.json").read_bytes() == kept  # not run again
    assert found["score"] == min(score for _, score in trials.values())
    assert found["objective"] == "val_loss" and set(found["test_metrics"]) == {
        "test_loss",
        "test_accuracy",
    }
    # the preset: the best trial's architecture and its record
    hp = found["hyperparameters"]
    model = zoo.create("mnist_mlp", preset=found["preset"])
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        hp["units"]
    ] * hp["layers"] + [10]
    metadata = json.loads((out / "best" / "metadata.json").read_text())
    assert metadata["tune"]["hyperparameters"] == hp and metadata["tune"]["score"] == found["score"]
    assert metadata["control"]["learning_rate"] == pytest.approx(hp["learning_rate"])
    # the same command once more: nothing left to search, the same best preset
    again = tune("mnist_mlp", epochs=1, max_trials=2, out=out)
    assert (again["trials"], again["hyperparameters"]) == (2, hp)


@pytest.mark.parametrize("model_name", ["mnist_mlp", "toy_resnet", "ticket_router"])
def test_each_declared_search_space_builds_its_trials(model_name):
    hp = kt.HyperParameters()
    overrides, control = recipe_for(model_name).search_space(hp)  # the defaults' trial
    assert hp.values and set(control) == {"learning_rate"}
    args = TrainArgs.check(model_name, None, 1, None, 0, overrides, "auto", None, control)
    model = args.build(10)
    stamp = zoo.identity(model)
    assert stamp["name"] == model_name
    assert all(stamp["config"][k] == list(v) if isinstance(v, tuple) else stamp["config"][k] == v
               for k, v in overrides.items())  # fmt: skip
    rate = model.optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(rate)) == pytest.approx(control["learning_rate"])


def test_tune_refuses_in_one_line(tmp_path, capsys):
    assert cli.main(["tune", "linear_regression", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no search space; zoo tune takes ['mnist_mlp', 'ticket_router', 'toy_resnet']" in err
    assert "\n" not in err
    assert cli.main(["tune", "mnist_mlp", "--max-trials", "0", "--out", str(tmp_path / "t")]) == 2
    assert "max_trials must be an int >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert cli.main(["tune", "mnist_mlp", "--out", str(tmp_path / "mine")]) == 2
    assert "is not a zoo tune directory (it holds ['notes.txt'])" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
