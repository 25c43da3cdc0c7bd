"""Writes docs/models/<name>.md and <name>.png for every registered model, and
docs/index.md, a table of all models. Run it again whenever a model changes:

    KERAS_BACKEND=jax python scripts/build_docs.py     # or: nox -s docs
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import zoo
from zoo._io import atomic_write
from zoo.plotting import plot

DOCS = Path(__file__).resolve().parent.parent / "docs"


def usage_snippet(name: str) -> str:
    """A short runnable example for ``name``; tests execute it from every page."""
    spec = zoo.describe(name)
    return (
        "import zoo\n"
        "\n"
        f'model = zoo.create("{name}")\n'
        f"assert model.count_params() == {spec.params}\n"
        f'assert zoo.identity(model)["name"] == "{name}"  # kept by model.save, too\n'
        "inputs = zoo.sample_inputs(model, batch_size=2)\n"
        "outputs = model(inputs)\n"
    )


def _summary_text(model) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.summary(line_length=100)
    return buffer.getvalue().rstrip()


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _presets_section(name: str) -> str:
    """The catalog's presets of ``name`` (zoo/catalog), linked with their results."""
    from zoo.factory import preset_path, read_preset_metadata

    found = []
    for preset in zoo.list_presets():
        info = read_preset_metadata(preset_path(preset))
        if info["model"] == name:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(info["metrics"].items()))
            found.append(
                f"- [`{preset}`](../../zoo/catalog/{preset}/README.md): {info['dataset']}, "
                f"{metrics} (under {info['backend']}; every backend: "
                f'[results](../results.md)). `zoo.create("{name}", preset="{preset}")`'
            )
    return "\n## Presets\n\n" + "\n".join(found) + "\n" if found else ""


def model_page(name: str) -> str:
    spec = zoo.describe(name)
    model = zoo.create(name)
    config = json.dumps(dict(spec.config), indent=2, default=repr)
    return f"""# `{name}`

{spec.summary}

- Reproduces: {spec.section}
- Builder: `{spec.builder_name}`
- Parameters: {spec.params:,}

![{name}]({name}.png)

## Usage

```python
{usage_snippet(name).rstrip()}
```
{_presets_section(name)}
## Default config

```json
{config}
```

## Summary

```
{_summary_text(model)}
```
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to document (default: all)")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    names = args.names or zoo.list_models()
    pages = args.out / "models"
    pages.mkdir(parents=True, exist_ok=True)
    for name in names:
        _write(pages / f"{name}.md", model_page(name))
        plot(zoo.create(name), pages / f"{name}.png")
        print(f"wrote docs/models/{name}.md and {name}.png", flush=True)
    rows = "\n".join(
        f"| [`{n}`](models/{n}.md) | {zoo.describe(n).summary} | "
        f"{zoo.describe(n).params:,} | {zoo.describe(n).section} |"
        for n in zoo.list_models()
    )
    _write(
        args.out / "index.md",
        "# Models\n\nEvery registered model, with its page and diagram. "
        "Regenerate with `python scripts/build_docs.py`.\n\n"
        f"| model | what it is | parameters | reproduces |\n|---|---|---:|---|\n{rows}\n",
    )
    print(f"wrote docs/index.md ({len(zoo.list_models())} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
