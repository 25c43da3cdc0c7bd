"""Argument checks shared by the builders.

Every check raises ``ValueError`` with one line naming the argument, the value it
got and what is allowed, and is called before any layer is created, so that a bad
argument never leaves a half-built model behind.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

_NOT_ACTIVATIONS = {"get", "serialize", "deserialize"}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    """Returns ``value`` as an int, or raises if it is not a positive integer."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def positive_ints(name: str, value, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Returns ``value`` as a tuple of positive ints (e.g. layer widths)."""
    what = "a sequence of positive ints" + (" (possibly empty)" if allow_empty else "")
    if _is_int(value):
        value = (value,)
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or (not value and not allow_empty)
        or not all(_is_int(v) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return tuple(int(v) for v in value)


def shape(
    name: str, value, *, rank: int | None = None, allow_none: bool = False
) -> tuple[int | None, ...]:
    """Returns ``value`` as an input shape (no batch axis): a tuple of positive ints.

    Args:
        name: the argument's name, for the error message.
        value: an int (for a 1-D shape) or a sequence of ints.
        rank: the required number of axes, or None for any rank >= 1.
        allow_none: whether an axis may be None (variable length).
    """
    dims = "positive ints" + (" or None" if allow_none else "")
    what = f"a tuple of {rank} {dims}" if rank else f"a non-empty tuple of {dims}"
    if _is_int(value):
        value = (value,)
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and (rank is None or len(value) == rank)
        and all((_is_int(v) and v > 0) or (allow_none and v is None) for v in value)
    )
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return tuple(None if v is None else int(v) for v in value)


def activation_names() -> list[str]:
    """The activation names Keras accepts as strings."""
    return sorted(
        n
        for n in dir(keras.activations)
        if not n.startswith("_")
        and n not in _NOT_ACTIVATIONS
        and callable(getattr(keras.activations, n))
    )


def activation(name: str, value, *, allow_none: bool = True):
    """Returns ``value`` if Keras knows it as an activation, else raises."""
    if value is None and allow_none:
        return None
    if callable(value) and not isinstance(value, str):
        return value
    if isinstance(value, str) and value in activation_names():
        return value
    allowed = ", ".join(repr(a) for a in activation_names())
    extra = ", None" if allow_none else ""
    raise ValueError(f"{name} must be a Keras activation ({allowed}{extra}), got {value!r}")


def fraction(name: str, value, *, low: float = 0.0, high: float = 1.0) -> float:
    """Returns ``value`` as a float in [low, high), or raises."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (low <= value < high):
        raise ValueError(f"{name} must be a float in [{low}, {high}), got {value!r}")
    return float(value)


def one_of(name: str, value, allowed):
    """Returns ``value`` if it is one of ``allowed``, or raises."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)!r}, got {value!r}")
    return value


def model_name(value) -> str:
    """Returns ``value`` if it is a usable Keras model name."""
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"name must be a non-empty string without '/', got {value!r}")
    return value


def error_summary(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, for one-line errors that wrap another."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
