"""Docs: a page and a diagram for every registered model, current, with a usage
snippet that runs; plotting works (CI installs graphviz) or says how to install it."""

import re
from pathlib import Path

import pytest
from conftest import require_plot

import zoo
from zoo import plotting

DOCS = Path(__file__).resolve().parent.parent / "docs"
REGENERATE = "regenerate with `python scripts/build_docs.py`"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _page(name):
    path = DOCS / "models" / f"{name}.md"
    assert path.exists(), f"no docs page for {name}; {REGENERATE}"
    return path.read_text()


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_model_has_a_current_page_and_diagram(name):
    page = _page(name)
    spec = zoo.describe(name)
    assert f"Parameters: {spec.params:,}" in page, f"{name}: page is stale; {REGENERATE}"
    assert spec.summary in page and spec.section in page
    diagram = DOCS / "models" / f"{name}.png"
    assert diagram.exists(), f"no diagram for {name}; {REGENERATE}"
    assert diagram.read_bytes()[:8] == PNG_SIGNATURE


def test_a_models_page_links_its_catalog_presets_and_results():
    from zoo.factory import preset_path, read_preset_metadata

    for preset in zoo.list_presets():
        model = read_preset_metadata(preset_path(preset))["model"]
        page = _page(model)
        assert f"[`{preset}`](../../zoo/catalog/{preset}/README.md)" in page, REGENERATE
        assert "[results](../results.md)" in page


@pytest.mark.parametrize("name", zoo.list_models())
def test_usage_snippet_runs(name):
    (snippet,) = re.findall(r"## Usage\n\n```python\n(.*?)```", _page(name), flags=re.S)
    namespace = {}
    exec(compile(snippet, f"docs/models/{name}.md", "exec"), namespace)
    assert namespace["model"].count_params() == zoo.describe(name).params


def test_index_lists_every_model():
    index = (DOCS / "index.md").read_text()
    for name in zoo.list_models():
        assert f"[`{name}`](models/{name}.md)" in index, f"{name} not in docs/index.md"


def test_plot_writes_a_png(tmp_path):
    """Runs wherever graphviz is installed; CI installs it, so there it must pass."""
    require_plot()
    path = plotting.plot("ticket_router", tmp_path / "router.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_plot_without_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        plotting.plot("mnist_mlp", tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
