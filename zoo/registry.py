"""The model registry: registered name -> a builder plus its default config.

A registered name is a *variant*: one builder family (``mlp``) with a config
(``input_shape=(784,), hidden_units=(64, 64), num_classes=10``), in the spirit
of timm's ``vgg16`` over ``_create_vgg`` and torchvision's ``get_model``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

__all__ = ["ModelSpec", "create", "describe", "get_spec", "list_models", "register"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one registered model.

    Attributes:
        name: the registered name, lowercase snake_case.
        builder: the function that builds the model from keyword arguments.
        config: the full default config: the builder's defaults overridden by the
            variant's own settings. ``create(name)`` is ``builder(**config)``.
        params: the expected total parameter count at the default config.
        section: the seed section (guide or tutorial) this model reproduces.
        summary: one line saying what the model is.
        sample_inputs: optional ``f(model, batch_size, rng) -> inputs`` giving valid
            example inputs, for models whose inputs need values in a range the
            generic sampler in ``zoo.testing`` cannot guess.
        golden_overrides: config overrides for the golden files, to keep them small
            for large models (e.g. a smaller vocabulary); the same architecture.
    """

    name: str
    builder: Callable[..., keras.Model]
    config: Mapping[str, Any]
    params: int
    section: str
    summary: str
    sample_inputs: Callable[..., Any] | None = field(default=None, repr=False)
    golden_overrides: Mapping[str, Any] = field(default_factory=dict, repr=False)

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
        }


_REGISTRY: dict[str, ModelSpec] = {}


def _load_builtin_models() -> None:
    """Imports the built-in model families (which register themselves) on first use."""
    import zoo.models  # noqa: F401


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
    builder: Callable[..., keras.Model] | None = None,
    *,
    params: int,
    section: str,
    summary: str,
    config: Mapping[str, Any] | None = None,
    sample_inputs: Callable[..., Any] | None = None,
    golden_overrides: Mapping[str, Any] | None = None,
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
        sample_inputs: optional ``f(model, batch_size, rng) -> inputs`` for the harness.
        golden_overrides: config overrides used for the golden files only.

    Example:
        >>> import zoo
        >>> zoo.register("tiny_mlp", zoo.mlp, config={"input_shape": (4,),
        ...     "hidden_units": (8,), "num_classes": 2, "name": "tiny_mlp"},
        ...     params=58, section="example", summary="A tiny MLP.")  # doctest: +SKIP
    """

    def decorator(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise ValueError(f"name must be a lowercase snake_case identifier, got {name!r}")
        if name in _REGISTRY:
            raise ValueError(f"name {name!r} is already registered")
        defaults = _builder_defaults(fn)
        variant = dict(config or {})
        unknown = sorted((set(variant) | set(golden_overrides or {})) - set(defaults))
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
            golden_overrides=types.MappingProxyType(dict(golden_overrides or {})),
        )
        return fn

    return decorator if builder is None else decorator(builder)


def list_models(pattern: str | None = None) -> list[str]:
    """Returns the sorted registered names, optionally filtered by a shell wildcard.

    Args:
        pattern: an ``fnmatch`` pattern such as ``"*mlp*"``; None lists all.

    Example:
        >>> import zoo
        >>> zoo.list_models("*regression")
        ['linear_regression', 'logistic_regression', 'softmax_regression']
    """
    _load_builtin_models()
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string like '*mlp*' or None, got {pattern!r}")
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    """Returns the ``ModelSpec`` of a registered name, or raises ``ValueError``."""
    _load_builtin_models()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown model name {name!r}{hint} (zoo.list_models() lists all {len(_REGISTRY)})"
    )


def describe(name: str) -> ModelSpec:
    """Returns what the registry knows about ``name``: builder, config, parameter
    count, seed section and summary.

    Example:
        >>> import zoo
        >>> zoo.describe("mnist_mlp").params
        55050
    """
    return get_spec(name)


def create(
    model_name: str, /, *, preset: str | os.PathLike | None = None, **overrides
) -> keras.Model:
    """Builds the registered model ``model_name``: a functional, uncompiled ``keras.Model``.

    Args:
        model_name: a registered name (see ``list_models``); positional only, so
            that ``name=`` can be passed on to the builder as the model's name.
        preset: a preset folder (``zoo.save_preset``) to restore instead, with its
            architecture and weights, under the current backend.
        **overrides: builder arguments replacing the variant's defaults.

    Raises:
        ValueError: for an unknown name, an unknown override key or a bad value.
        zoo.presets.PresetError: for a missing or damaged preset, or one of another model.

    Example:
        >>> import zoo
        >>> model = zoo.create("mnist_mlp")
        >>> model.count_params()
        55050
    """
    spec = get_spec(model_name)
    if preset is not None:
        if overrides:
            raise ValueError(
                f"overrides {sorted(overrides)} can't be combined with preset={str(preset)!r}: "
                "a preset fixes the architecture"
            )
        from zoo.presets import load_preset

        return load_preset(preset, model_name)
    unknown = sorted(set(overrides) - set(spec.config))
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for model {model_name!r}; "
            f"allowed: {sorted(spec.config)}"
        )
    model = spec.builder(**{**spec.config, **overrides})
    model._zoo_model = model_name  # lets zoo.save_preset name it
    return model
