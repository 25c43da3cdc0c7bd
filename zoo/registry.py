"""The model registry: registered name -> a builder, its default config and its recipe.

The lowest layer of the zoo: it imports nothing of the zoo (nor Keras), like timm's
``_registry.py`` or torchvision's ``_api.py``. Model modules call ``register`` (and
``register_recipe``) at import time; ``zoo.factory`` loads the built-in model modules
and builds models from the specs kept here.

A registered name is a *variant*: one builder family (``mlp``) with a config
(``input_shape=(784,), hidden_units=(64, 64), num_classes=10``), in the spirit of
timm's ``vgg16`` over ``_create_vgg`` and torchvision's ``get_model``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ModelSpec",
    "Recipe",
    "get_recipe",
    "get_spec",
    "recipe_names",
    "register",
    "register_recipe",
    "registered_names",
]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one registered model.

    Attributes:
        name: the registered name, lowercase snake_case.
        builder: the function that builds the model from keyword arguments.
        config: the full default config: the builder's defaults overridden by the
            variant's own settings. ``zoo.create(name)`` is ``builder(**config)``.
        params: the expected total parameter count at the default config.
        section: the seed section (guide or tutorial) this model reproduces.
        summary: one line saying what the model is.
        sample_inputs: optional ``f(model, batch_size, rng) -> inputs`` giving valid
            example inputs, for models whose inputs need values in a range the
            generic sampler in ``zoo.inputs`` cannot guess.
        small_config: config overrides giving a small model of the same architecture
            (e.g. a smaller vocabulary), for quick examples and the golden files.
    """

    name: str
    builder: Callable[..., Any]
    config: Mapping[str, Any]
    params: int
    section: str
    summary: str
    sample_inputs: Callable[..., Any] | None = field(default=None, repr=False)
    small_config: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def builder_name(self) -> str:
        return f"{self.builder.__module__}.{self.builder.__qualname__}"

    def as_dict(self) -> dict[str, Any]:
        """A plain, printable dict of the spec (the builder as its dotted name)."""
        return {
            "name": self.name,
            "builder": self.builder_name,
            "config": dict(self.config),
            "params": self.params,
            "section": self.section,
            "summary": self.summary,
            "recipe": get_recipe(self.name).as_dict() if self.name in _RECIPES else None,
        }


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How a registered model trains by default (``zoo train NAME``).

    Attributes:
        compile: ``f(model)`` compiling it (optimizer, losses, metrics).
        datasets: the datasets (``zoo.datasets``) it can train on, the default first.
        epochs: default epochs per dataset.
        batch_size: default batch size.
        targets_are_inputs: train to reconstruct the inputs (autoencoders).
        validation_split: share of the training data held out for validation.
        dataset_kwargs: extra arguments per dataset (e.g. a sample shape).
        search_space: ``f(hp) -> (overrides, control)`` for ``zoo tune``: KerasTuner's
            ``HyperParameters`` in, the builder arguments and the training choices
            (``zoo.control``) of one trial out; None where the model has none.
    """

    compile: Callable[[Any], None]
    datasets: tuple[str, ...]
    epochs: Mapping[str, int]
    batch_size: int = 64
    targets_are_inputs: bool = False
    validation_split: float = 0.2
    dataset_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    search_space: Callable[[Any], tuple[dict[str, Any], dict[str, Any]]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "compile": f"{self.compile.__module__}.{self.compile.__qualname__}",
            "datasets": list(self.datasets),
            "epochs": dict(self.epochs),
            "batch_size": self.batch_size,
            "targets_are_inputs": self.targets_are_inputs,
            "validation_split": self.validation_split,
            "search_space": None
            if self.search_space is None
            else f"{self.search_space.__module__}.{self.search_space.__qualname__}",
        }


_REGISTRY: dict[str, ModelSpec] = {}
_RECIPES: dict[str, Recipe] = {}


def _builder_defaults(builder: Callable) -> dict[str, Any]:
    params = inspect.signature(builder).parameters.values()
    bad = [p.name for p in params if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if bad:
        raise TypeError(
            f"builder {builder.__qualname__} must take plain keyword arguments only, but has {bad}"
        )
    return {p.name: (None if p.default is p.empty else p.default) for p in params}


def register(
    name: str,
    builder: Callable[..., Any] | None = None,
    *,
    params: int,
    section: str,
    summary: str,
    config: Mapping[str, Any] | None = None,
    sample_inputs: Callable[..., Any] | None = None,
    small_config: Mapping[str, Any] | None = None,
):
    """Registers ``name`` as ``builder`` with a default config.

    Use it as a call after the builder, or as a decorator on the builder (the
    decorated function is returned unchanged, so decorators can be stacked to
    register several variants of one builder).

    Args:
        name: the registered name (lowercase snake_case, unique).
        builder: the builder function; omit it to use ``register`` as a decorator.
        params: the expected parameter count at the default config.
        section: the guide or tutorial section the model reproduces.
        summary: one line saying what the model is.
        config: keyword arguments that make this variant; the builder's own
            defaults fill in the rest.
        sample_inputs: optional ``f(model, batch_size, rng) -> inputs`` (``zoo.inputs``).
        small_config: overrides giving a small model of the same architecture.

    Example:
        >>> import zoo
        >>> zoo.register("tiny_mlp", zoo.mlp, config={"input_shape": (4,),
        ...     "hidden_units": (8,), "num_classes": 2, "name": "tiny_mlp"},
        ...     params=58, section="example", summary="A tiny MLP.")  # doctest: +SKIP
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise ValueError(f"name must be a lowercase snake_case identifier, got {name!r}")
        if name in _REGISTRY:
            raise ValueError(f"name {name!r} is already registered")
        defaults = _builder_defaults(fn)
        variant = dict(config or {})
        unknown = sorted((set(variant) | set(small_config or {})) - set(defaults))
        if unknown:
            raise ValueError(
                f"config for {name!r} has unknown keys {unknown}; "
                f"{fn.__qualname__} takes {sorted(defaults)}"
            )
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=fn,
            config=types.MappingProxyType({**defaults, **variant}),
            params=int(params),
            section=section,
            summary=summary,
            sample_inputs=sample_inputs,
            small_config=types.MappingProxyType(dict(small_config or {})),
        )
        return fn

    return decorator if builder is None else decorator(builder)


def register_recipe(name: str, recipe: Recipe) -> Recipe:
    """Registers ``recipe`` as how the registered model ``name`` trains by default
    (call it beside the model's ``register``)."""
    if name not in _REGISTRY:
        raise ValueError(f"register model {name!r} before its recipe")
    if name in _RECIPES:
        raise ValueError(f"model {name!r} already has a recipe")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a zoo.registry.Recipe, got {type(recipe).__name__}")
    missing = [d for d in recipe.datasets if d not in recipe.epochs]
    if not recipe.datasets or missing:
        raise ValueError(f"recipe for {name!r} needs epochs for every dataset; missing {missing}")
    _RECIPES[name] = recipe
    return recipe


def registered_names(pattern: str | None = None) -> list[str]:
    """The sorted names registered so far, optionally filtered by a shell wildcard."""
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string like '*mlp*' or None, got {pattern!r}")
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    """Returns the ``ModelSpec`` of a registered name, or raises a one-line ``ValueError``
    with close matches."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown model name {name!r}{hint} (zoo.list_models() lists all {len(_REGISTRY)})"
    )


def recipe_names() -> list[str]:
    """The registered models that have a training recipe."""
    return sorted(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """The training recipe of the registered model ``name``, or a one-line error."""
    get_spec(name)
    if name not in _RECIPES:
        raise ValueError(
            f"model {name!r} has no training recipe; models with one: {recipe_names()}"
        )
    return _RECIPES[name]
