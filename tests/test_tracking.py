"""Watching and comparing runs (``zoo.tracking``): ``--tensorboard`` event files on every
backend, every epoch's metrics in them after a kill and a resume too, and ``zoo runs``'
table and overlaid curves."""

import json
import shutil

import keras
import pytest
from conftest import CrashMidEpoch, SimulatedCrash, extras_required

import zoo
from zoo import cli, tracking
from zoo.training import train

BACKEND = keras.backend.backend()


def _scalars(log_dir):
    """``{(split, tag): [(step, value), ...]}`` read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for split in ("train", "validation"):
        reader = EventAccumulator(str(log_dir / split))
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            steps = {e.step: e.value for e in reader.Scalars(tag)}  # a step written twice: once
            found[(split, tag)] = sorted(steps.items())
    return found


def test_tensorboard_events_hold_every_epochs_metrics_after_a_kill_too(tmp_path):
    if not tracking.tensorboard_available() and not extras_required():
        pytest.skip(f"needs the tensorboard package: {tracking.INSTALL_HINT}")
    run = tmp_path / "run"
    with pytest.raises(SimulatedCrash):  # killed in epoch 3: 2 epochs checkpointed
        train("mnist_mlp", epochs=4, out=run, verbose=0, tensorboard=True,
              callbacks=[CrashMidEpoch(2, 0)])  # fmt: skip
    shutil.rmtree(run / "tensorboard")  # as if the kill came before any event was written
    metrics = train("mnist_mlp", epochs=4, out=run, verbose=0, tensorboard=True)
    assert metrics["epochs_done"] == 4
    found = _scalars(run / "tensorboard")
    history = (run / "history.csv").read_text().splitlines()
    header, rows = history[0].split(","), [r.split(",") for r in history[1:]]
    for name in header[1:]:
        split = "validation" if name.startswith("val_") else "train"
        tag = f"epoch_{name.removeprefix('val_')}"
        want = [(int(r[0]), float(r[header.index(name)])) for r in rows]
        assert [s for s, _ in found[(split, tag)]] == [0, 1, 2, 3], (split, tag)
        assert found[(split, tag)] == pytest.approx(want, rel=1e-6), (split, tag)


def test_without_the_package_tensorboard_is_one_line_before_any_write(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(tracking, "tensorboard_available", lambda: False)
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--out", str(out), "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: --tensorboard needs the tensorboard package: pip install")
    assert "\n" not in err and not out.exists()


def test_zoo_runs_lists_every_run_with_its_state_and_plots_their_curves(tmp_path, capsys):
    root = tmp_path / "runs"
    train("linear_regression", epochs=2, out=root / "done", verbose=0)
    with pytest.raises(SimulatedCrash):
        train("linear_regression", epochs=3, out=root / "killed", verbose=0,
              callbacks=[CrashMidEpoch(1, 0)])  # fmt: skip
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    (root / "empty").mkdir()  # no run: not listed
    zoo.preset_from_run(root / "done", root / "done_preset")  # a preset: not a run
    (root / "keras").mkdir()  # another config.json: not a run
    (root / "keras" / "config.json").write_text(json.dumps({"class_name": "Functional"}))
    capsys.readouterr()
    assert cli.main(["runs", str(root), "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((root / "done" / "metrics.json").read_text())
    lines = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if "|" in line}
    assert f"| linear_regression | study_hours | {BACKEND} | 2/2 | " in lines["done"]
    assert f"loss {metrics['test_loss']:.4g}" in lines["done"] and "| finished |" in lines["done"]
    assert "| 1/3 | - | - | resumable |" in lines["killed"]
    assert "damaged (config.json: JSONDecodeError)" in lines["broken"]
    assert set(lines) >= {"done", "killed", "broken"}
    assert not {"empty", "done_preset", "keras"} & set(lines)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot is an output like any other: an existing file only with --overwrite
    assert cli.main(["runs", str(root), "--plot", str(tmp_path / "curves.png")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["runs", str(root / "empty")]) == 0
    assert "no runs under" in capsys.readouterr().out
