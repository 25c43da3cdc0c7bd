"""Nothing the user owns is ever removed or replaced (``zoo.targets``): every command that
writes is tried, with ``--overwrite`` where it has one, on a folder of the user's files, a
file of the user's, a finished run, a file inside that run, the command's own source, and a
symbolic link to each. Each ends in one ``zoo: error:`` line, and every file is left as it
was. ``--overwrite`` still replaces the zoo's own artifact of the same kind."""

import hashlib
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import require_export, require_plot

import zoo
from zoo import cli
from zoo._io import replace_checked
from zoo.export import supported
from zoo.targets import TargetError, check_target, kind_of
from zoo.training import train

BACKEND = keras.backend.backend()
EXPORT_FORMAT = "onnx" if supported("onnx")[0] else "savedmodel"


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links included, not followed) and a hash of its bytes."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                seen[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                seen[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                seen[rel] = "dir"
    return seen


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A finished run, the user's own folder and file, an input file, and links to each."""
    root = tmp_path_factory.mktemp("targets")
    train("mnist_mlp", epochs=1, out=root / "run", verbose=0)
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("the user's own notes\n")
    (root / "data.csv").write_text("1,2,3\n")
    np.save(root / "x.npy", np.zeros((2, 784), "float32"))
    for name in ("mine", "data.csv", "run", "x.npy"):
        (root / f"link-to-{name}").symlink_to(root / name)
    return root


def _refused(capsys, argv):
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1, err
    return err


# (command line with T for the target, the victims: paths under `place` relative to it)
VICTIMS = [
    "mine",
    "data.csv",
    "run",
    "run/model.keras",
    "link-to-mine",
    "link-to-data.csv",
    "link-to-run",
]
COMMANDS = {
    "preset": (["preset", "{run}", "-o", "{T}", "--overwrite"], ["run", "link-to-run"]),
    "export": (
        ["export", "{run}", "--format", EXPORT_FORMAT, "-o", "{T}", "--overwrite"],
        ["run", "link-to-run"],
    ),
    "predict": (
        ["predict", "{run}", "{x}", "-o", "{T}", "--overwrite"],
        ["run", "x.npy", "link-to-x.npy", "link-to-run"],
    ),
    "inputs": (["inputs", "{run}", "-o", "{T}", "--overwrite"], ["run", "link-to-run"]),
    "plot": (["plot", "mnist_mlp", "-o", "{T}", "--overwrite"], []),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_overwrite_never_replaces_what_the_zoo_does_not_own(command, place, capsys):
    if command == "export":
        require_export(EXPORT_FORMAT)
    if command == "plot":
        require_plot()
    argv, sources = COMMANDS[command]
    before = _snapshot(place)
    for victim in dict.fromkeys(VICTIMS + sources):
        line = [a.format(run=place / "run", x=place / "x.npy", T=place / victim) for a in argv]
        err = _refused(capsys, line)
        assert repr(str(place / victim)) in err, err  # the message names the user's path
        assert _snapshot(place) == before, f"{command} -o {victim} changed files"


def test_train_never_writes_into_a_user_folder_or_a_finished_run(place, capsys):
    before = _snapshot(place)
    for victim, says in (
        ("mine", "is not empty and is not a zoo run"),
        ("link-to-mine", "is not empty and is not a zoo run"),
        ("run", "holds another run"),
        ("link-to-run", "holds another run"),
        ("data.csv", "is a file, not a directory"),
    ):
        argv = ["train", "mnist_mlp", "--epochs", "2", "--out", str(place / victim), "--quiet"]
        assert says in _refused(capsys, argv)
        assert _snapshot(place) == before, victim
    # the run's own arguments: refused as finished, and left whole
    argv = ["train", "mnist_mlp", "--epochs", "1", "--out", str(place / "run"), "--quiet"]
    assert "holds a finished run" in _refused(capsys, argv)
    assert _snapshot(place) == before


def test_overwrite_replaces_the_zoos_own_artifact_of_the_same_kind(place, tmp_path, capsys):
    run = place / "run"
    preset = tmp_path / "preset"
    assert cli.main(["preset", str(run), "-o", str(preset)]) == 0
    assert kind_of(preset) == "preset"
    (preset / "model.weights.h5").write_bytes(b"damaged")
    assert cli.main(["preset", str(run), "-o", str(preset), "--overwrite"]) == 0
    zoo.load_preset(preset)  # whole again: every file hash-checked
    # one kind is not another: an export path is not a preset folder, nor the reverse
    require_export(EXPORT_FORMAT)
    out = tmp_path / ("model.onnx" if EXPORT_FORMAT == "onnx" else "served")
    assert cli.main(["export", str(run), "--format", EXPORT_FORMAT, "-o", str(out)]) == 0
    assert kind_of(out) == EXPORT_FORMAT
    err = _refused(capsys, ["preset", str(run), "-o", str(out), "--overwrite"])
    assert "not a zoo preset folder" in err
    assert (
        cli.main(["export", str(run), "--format", EXPORT_FORMAT, "-o", str(out), "--overwrite"])
        == 0
    )
    err = _refused(
        capsys, ["export", str(run), "--format", EXPORT_FORMAT, "-o", str(preset), "--overwrite"]
    )
    assert "is a zoo preset folder, not a zoo" in err
    capsys.readouterr()
    # predict's output: a numpy file, replaced only with --overwrite
    y = tmp_path / "y.npy"
    argv = ["predict", str(run), str(place / "x.npy"), "-o", str(y)]
    assert cli.main(argv) == 0
    assert "exists; choose another, or overwrite it" in _refused(capsys, argv)
    assert cli.main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "preset", "y.npy"])


def test_check_target_rules(tmp_path):
    (tmp_path / "a").mkdir()
    assert check_target(tmp_path / "new", "preset", overwrite=False) == tmp_path / "new"
    with pytest.raises(FileExistsError):
        check_target(tmp_path / "a", "preset", overwrite=False)
    with pytest.raises(TargetError, match=r"is a folder, not a zoo preset folder"):
        check_target(tmp_path / "a", "preset", overwrite=True)
    with pytest.raises(TargetError, match=r"is the source"):
        check_target(tmp_path / "a", "preset", overwrite=True, sources=(tmp_path / "a",))
    with pytest.raises(TargetError, match=r"overlaps the source"):
        check_target(tmp_path / "a" / "b", "preset", overwrite=True, sources=(tmp_path / "a",))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(TargetError, match=r"is a symbolic link"):
        check_target(tmp_path / "dangling", "arrays", overwrite=True)


def test_replace_checked_swaps_and_leaves_nothing_beside(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "f").write_text("old")
    (tmp_path / ".old.old").mkdir()  # a fixed aside name once deleted such a user folder
    (tmp_path / ".old.old" / "keep").write_text("user")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    replace_checked(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old" / "f").read_text() == "new"
    assert (tmp_path / ".old.old" / "keep").read_text() == "user"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".old.old", "old"]
