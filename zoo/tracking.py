"""Watching and comparing runs: ``zoo train --tensorboard`` writes TensorBoard event
files under the run directory on every backend, and ``zoo runs [DIR] [--plot FILE]``
lists the runs under a folder (model, dataset, backend, epochs, test metrics, wall time,
state) and overlays their curves.

The event files are written with the ``tensorboard`` package's own writer, not Keras's
``keras.callbacks.TensorBoard``: Keras's writes through TensorFlow's summary module
(keras#19121), which a JAX or PyTorch user need not have, and it can't write a resumed
run's earlier epochs again. The layout is Keras's (``RUN/tensorboard/train`` and
``.../validation``, tags ``epoch_loss``, ``epoch_accuracy``, ...), so TensorBoard
overlays training and validation as it does for Keras's callback.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras

__all__ = ["INSTALL_HINT", "TensorBoardWriter", "find_runs", "plot_runs", "runs_table"]

INSTALL_HINT = "pip install 'keras-model-zoo[track]' (the tensorboard package)"


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def check_tensorboard() -> None:
    """A one-line error before any file is written when the writer's package is missing."""
    if not tensorboard_available():
        raise ValueError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}")


class TensorBoardWriter(keras.callbacks.Callback):
    """Writes each epoch's metrics as TensorBoard scalars under ``log_dir`` (``train``
    and ``validation``, step = epoch). A resumed run first writes its checkpointed
    ``history`` again, so the event files hold every epoch even where a kill came
    between an epoch's checkpoint and its events (TensorBoard shows the same values
    for a step written twice)."""

    def __init__(self, log_dir: str | Path, history: list[dict[str, float]] = ()):
        super().__init__()
        self.log_dir, self.history, self.writers = Path(log_dir), list(history), {}

    def _write(self, epoch: int, logs: dict) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        split: dict[str, list] = {"train": [], "validation": []}
        for name, value in logs.items():
            if name == "epoch":
                continue
            where = "validation" if name.startswith("val_") else "train"
            tag = f"epoch_{name.removeprefix('val_')}"
            split[where].append(Summary.Value(tag=tag, simple_value=float(value)))
        for where, values in split.items():
            if not values:
                continue
            if where not in self.writers:
                self.writers[where] = EventFileWriter(str(self.log_dir / where))
            event = Event(wall_time=time.time(), step=epoch, summary=Summary(value=values))
            self.writers[where].add_event(event)
            self.writers[where].flush()

    def on_train_begin(self, logs=None):
        for row in self.history:
            self._write(int(row["epoch"]), row)

    def on_epoch_end(self, epoch, logs=None):
        self._write(epoch, logs or {})

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


# -- zoo runs ----------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """What ``zoo runs`` shows of one run directory."""

    path: Path
    state: str  # finished, resumable, damaged
    config: dict
    metrics: dict
    history: list[dict[str, float]]
    why: str = ""


def _read_json(path: Path) -> dict:
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _read_history(path: Path) -> list[dict[str, float]]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_run(path: Path) -> RunInfo:
    """One run directory's state: ``finished`` (metrics.json), ``resumable`` (its config
    and, if any, checkpoints readable) or ``damaged`` (with why)."""
    from zoo._io import file_kind

    try:
        config = _read_json(path / "config.json")
    except (OSError, ValueError) as e:
        return RunInfo(path, "damaged", {}, {}, [], f"config.json: {type(e).__name__}")
    try:
        history = _read_history(path / "history.csv")
    except (OSError, ValueError) as e:
        return RunInfo(path, "damaged", config, {}, [], f"history.csv: {type(e).__name__}")
    if (path / "metrics.json").exists():
        try:
            return RunInfo(path, "finished", config, _read_json(path / "metrics.json"), history)
        except (OSError, ValueError) as e:
            return RunInfo(
                path, "damaged", config, {}, history, f"metrics.json: {type(e).__name__}"
            )
    checkpoints = sorted((path / "checkpoint").glob("epoch-*.npz"))
    if checkpoints and not any(file_kind(c) == "zip" for c in checkpoints):
        return RunInfo(path, "damaged", config, {}, history, "no readable checkpoint")
    return RunInfo(path, "resumable", config, {}, history)


#: What a run's config.json always holds (zoo.training.TrainArgs.config); a preset's or a
#: Keras model's config.json holds none of these
RUN_KEYS = ("model", "dataset", "epochs", "seed", "backend")


def find_runs(root: str | Path) -> list[RunInfo]:
    """Every run directory under ``root`` (a folder whose config.json is a run's, or
    cannot be read: a damaged run), sorted by path; presets (metadata.json beside their
    config.json) and other folders are left out."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"runs folder {str(root)!r} is not a directory")
    found = []
    for path in sorted(p.parent for p in root.rglob("config.json")):
        if (path / "metadata.json").exists():
            continue  # a preset (zoo.presets): its config.json is the model's
        run = read_run(path)
        if (run.state == "damaged" and not run.config) or all(k in run.config for k in RUN_KEYS):
            found.append(run)
    return found


def runs_table(runs: list[RunInfo], root: Path) -> str:
    """A markdown table of ``runs``, paths relative to ``root``."""
    lines = [
        "| run | model | dataset | backend | epochs | test metrics | wall time (s) | state |",
        "|---|---|---|---|---:|---|---:|---|",
    ]
    for run in runs:
        c, m = run.config, run.metrics
        done = int(m.get("epochs_done", len(run.history)))
        tests = ", ".join(f"{k[5:]} {v:.4g}" for k, v in sorted(m.items()) if k.startswith("test_"))
        wall = m.get("wall_time_s")
        state = run.state + (f" ({run.why})" if run.why else "")
        lines.append(
            f"| {run.path.relative_to(root) if run.path != root else '.'} | {c.get('model', '?')} "
            f"| {c.get('dataset', '?')} | {c.get('backend', '?')} | {done}/{c.get('epochs', '?')} "
            f"| {tests or '-'} | {'-' if wall is None else f'{wall:.1f}'} | {state} |"
        )
    return "\n".join(lines)


def plot_runs(runs: list[RunInfo], root: Path):
    """``draw(path)``: each run's loss curve (validation where it has one) overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def draw(path):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for run in runs:
            if not run.history:
                continue
            key = "val_loss" if "val_loss" in run.history[0] else "loss"
            values = [r[key] for r in run.history]
            if not all(math.isfinite(v) for v in values):
                continue
            label = f"{run.path.relative_to(root) if run.path != root else '.'} ({key})"
            ax.plot([int(r["epoch"]) + 1 for r in run.history], values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        try:
            fig.savefig(path, format="png", dpi=80)
        finally:
            plt.close(fig)

    return draw
