"""The tutorial's two-branch regressor: two inputs, each with its own MLP branch
(built as two sub-models sharing one graph), concatenated into one regression head."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo.registry import register

TUTORIAL = "Functional API tutorial (Korean)"


def _branch(inputs, units, prefix):
    x = inputs
    for i, u in enumerate(units, start=1):
        x = layers.Dense(u, activation="relu", name=f"{prefix}_dense_{i}")(x)
    return keras.Model(inputs, x, name=f"{prefix}_branch")


def two_branch_regressor(
    input_a_dim=64,
    input_b_dim=128,
    branch_a_units=(16, 8),
    branch_b_units=(64, 32, 8),
    head_units=(2,),
    name="two_branch_regressor",
) -> keras.Model:
    """Returns the tutorial's two-input regressor: A 64 -> 16 -> 8 and B 128 -> 64 ->
    32 -> 8, concatenated, then 2 relu -> 1 linear (11,813 parameters).

    As in the tutorial, each branch is first made a model of its own (``branch_a``
    on input A, ``branch_b`` on input B), and the head is built on their outputs, so
    the whole model shares one graph with both branch models.

    Args:
        input_a_dim: features of input ``input_a``.
        input_b_dim: features of input ``input_b``.
        branch_a_units: relu layer widths of branch A.
        branch_b_units: relu layer widths of branch B.
        head_units: relu layer widths after the concatenation (before the output).
        name: the model's name.

    Example:
        >>> from zoo.models.multi_input import two_branch_regressor
        >>> two_branch_regressor().count_params()
        11813
    """
    input_a_dim = check.positive_int("input_a_dim", input_a_dim)
    input_b_dim = check.positive_int("input_b_dim", input_b_dim)
    branch_a_units = check.positive_ints("branch_a_units", branch_a_units)
    branch_b_units = check.positive_ints("branch_b_units", branch_b_units)
    head_units = check.positive_ints("head_units", head_units, allow_empty=True)
    name = check.model_name(name)

    branch_a = _branch(keras.Input(shape=(input_a_dim,), name="input_a"), branch_a_units, "a")
    branch_b = _branch(keras.Input(shape=(input_b_dim,), name="input_b"), branch_b_units, "b")
    x = layers.Concatenate(name="combined")([branch_a.output, branch_b.output])
    for i, u in enumerate(head_units, start=1):
        x = layers.Dense(u, activation="relu", name=f"head_dense_{i}")(x)
    outputs = layers.Dense(1, name="prediction")(x)
    return keras.Model(
        inputs={"input_a": branch_a.input, "input_b": branch_b.input}, outputs=outputs, name=name
    )


register(
    "two_branch_regressor",
    two_branch_regressor,
    params=11_813,
    section=f"{TUTORIAL}: multiple inputs (two branches)",
    summary="The tutorial's two-input regressor: two MLP branches, concatenated, 1 output.",
)
