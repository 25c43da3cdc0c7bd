"""The package's structure: layers that only point down, read from the source itself."""

import ast
import inspect
from pathlib import Path

import zoo
from zoo import training

PACKAGE = Path(zoo.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _zoo_imports(path: Path) -> set[str]:
    """Every zoo module ``path`` imports, at the top or inside a function (a lazy import
    is still a dependency), resolved to module names."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules and n.startswith("zoo")}
    found.discard("zoo")  # the package's __init__ holds only lazy names and the version
    return found - {_module_name(path)}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _zoo_imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_import_cycle_in_the_package():
    graph = _graph()
    done, path = set(), []

    def visit(module):
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        path.append(module)
        for dependency in sorted(graph.get(module, ())):
            # importing a module imports its packages' __init__ first
            visit(dependency)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_registry_imports_nothing_of_the_zoo_nor_keras():
    source = (PACKAGE / "registry.py").read_text()
    assert _zoo_imports(PACKAGE / "registry.py") == set()
    assert "import keras" not in source


def test_models_import_the_registry_not_the_factory():
    for path in (PACKAGE / "models").glob("*.py"):
        imported = _zoo_imports(path)
        assert not imported & {"zoo.factory", "zoo.presets", "zoo.training"}, (path, imported)


def test_no_production_module_imports_the_test_harness():
    users = [name for name, imports in _graph().items() if "zoo.testing" in imports]
    assert users == [], users


def test_train_reads_as_a_short_sequence():
    source = inspect.getsource(training.train)
    body = source[source.index('"""', source.index('"""') + 3) + 3 :]  # after the docstring
    lines = [line for line in body.splitlines() if line.strip()]
    assert len(lines) < 40, f"train() has {len(lines)} lines"


def test_public_names_are_listed_once_and_all_load():
    assert zoo.__all__ == ["__version__", *sorted(zoo._EXPORTS)]
    for name in zoo._EXPORTS:
        assert getattr(zoo, name) is not None, name
    from zoo.zoo_model import VERSION

    assert zoo.__version__ == VERSION
