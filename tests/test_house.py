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


#: The one package that may touch Keras's and torch's internals (``keras.src``,
#: ``torch._dynamo``, underscore names of Keras, torch, TensorFlow or JAX objects).
DOOR = PACKAGE / "performance" / "keras_patches"
_FRAMEWORKS = ("keras", "torch", "tensorflow", "tf", "jax", "jnp")
#: Names whose underscore attributes are Keras's or torch's private state (a model, its
#: optimizer) in the zoo's code.
_FRAMEWORK_OBJECTS = {*_FRAMEWORKS, "model", "optimizer"}


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in _FRAMEWORKS and (
        name.startswith(("keras.src", "tensorflow.python"))
        or any(p.startswith("_") and not p.startswith("__") for p in parts[1:])
    )


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _internals_used(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _private_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _private_module(node.module):
                found.append(node.module)
            elif node.module.split(".")[0] in _FRAMEWORKS:
                found += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
        elif isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if private and _root(node.value) in _FRAMEWORK_OBJECTS:
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_only_the_door_touches_keras_and_torch_internals():
    door = sorted(DOOR.glob("*.py"))
    assert [p.name for p in door if _internals_used(p)] == [
        "dynamo.py",
        "torch_backend.py",
        "trainer.py",
    ], "the door itself is found by the same check"
    used = {
        str(p.relative_to(PACKAGE)): _internals_used(p)
        for p in PACKAGE.rglob("*.py")
        if DOOR not in p.parents and p.name != "testing.py"  # the harness checks Keras's own
    }
    assert {k: v for k, v in used.items() if v} == {}


def test_models_layers_and_zoo_model_never_import_the_speed_path_or_distribution():
    graph = _graph()

    def reached(module, seen):
        for dependency in graph.get(module, ()):
            if dependency not in seen:
                seen.add(dependency)
                reached(dependency, seen)
        return seen

    low = [m for m in graph if m.startswith(("zoo.models", "zoo.layers")) or m == "zoo.zoo_model"]
    assert "zoo.zoo_model" in low and len(low) > 5
    for module in low:
        above = {
            m
            for m in reached(module, set())
            if m.startswith(("zoo.performance", "zoo.distribute", "zoo.launch"))
        }
        assert not above, (module, above)


def test_no_module_of_the_speed_path_is_over_400_lines():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
        for p in (PACKAGE / "performance").rglob("*.py")
    }
    assert len(sizes) >= 8 and max(sizes.values()) <= 400, sizes
