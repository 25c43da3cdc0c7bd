"""The preset catalog shipped with the package (``zoo/catalog``, ``zoo.list_presets()``):
every preset restores offline on every backend, hash-checked, reaches the test metrics
its metadata states (``docs/results.md``), and carries its model card. The installed
package is what the nox sessions test, so this also proves the wheel holds the catalog.
MNIST comes from the Keras cache (``.ci/run`` puts it there): without it these fail."""

import json
from pathlib import Path

import keras
import pytest

import zoo
from zoo.factory import CATALOG_DIR, PresetError, preset_path, read_preset_metadata
from zoo.presets import evaluate_preset

CATALOG = ["conv_autoencoder_mnist", "mnist_mlp_mnist", "ticket_router_tickets"]
ROOT = Path(__file__).resolve().parent.parent


def test_the_catalog_is_installed_with_the_package():
    assert zoo.list_presets() == CATALOG
    assert CATALOG_DIR.parent == Path(zoo.__file__).resolve().parent


@pytest.mark.parametrize("name", CATALOG)
def test_each_preset_reaches_its_stated_metrics_on_this_backend(name):
    info = read_preset_metadata(preset_path(name))  # every file's sha256 checked
    model = zoo.create(info["model"], preset=name)
    assert zoo.identity(model)["name"] == info["model"]
    got = evaluate_preset(name)
    assert set(got) == set(info["metrics"])
    for metric, stated in info["metrics"].items():
        # another backend sums in another order: a few of 10,000 answers may flip
        if "accuracy" in metric:
            assert got[metric] == pytest.approx(stated, abs=2e-3), metric
        else:
            assert got[metric] == pytest.approx(stated, rel=2e-3), metric
    card = (CATALOG_DIR / name / "README.md").read_text()
    assert f'preset="{name}"' in card and "Reproduce" in card and info["backend"] in card
    for metric, stated in info["metrics"].items():
        assert f"| {metric} | {stated:.4f} |" in card


def test_the_results_table_holds_every_preset_under_every_backend():
    text = (ROOT / "docs" / "results.md").read_text()
    for name in CATALOG:
        info = read_preset_metadata(preset_path(name))
        for metric in info["metrics"]:
            row = next(
                line for line in text.splitlines() if f"[`{name}`]" in line and metric in line
            )
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert all(c != "-" for c in cells[-3:]), row  # TensorFlow, JAX, PyTorch
    stated = json.loads((ROOT / "docs" / "results" / f"{keras.backend.backend()}.json").read_text())
    assert sorted(stated) == CATALOG


def test_a_catalog_name_resolves_and_a_wrong_one_is_one_line():
    with pytest.raises(PresetError, match=r"neither a folder nor a preset of the catalog \["):
        zoo.create("mnist_mlp", preset="mnist_mlp_imagenet")
    with pytest.raises(PresetError, match="holds model 'mnist_mlp', not 'toy_resnet'"):
        zoo.create("toy_resnet", preset="mnist_mlp_mnist")
