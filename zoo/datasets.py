"""Datasets as numpy arrays, ready for the zoo's models.

Each loader returns ``(x_train, y_train), (x_test, y_test)`` with the guide's
preprocessing (float32 in [0, 1] for images). ``mnist`` and ``cifar10`` go through
Keras's own loaders and cache (``$KERAS_HOME/datasets``, default
``~/.keras/datasets``); ``digits`` (scikit-learn's bundled handwritten digits) is
the offline default. ``tickets``, ``study_hours`` and ``sequences`` are small
synthetic or tutorial sets for the other models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo import _validation as check
from zoo._io import keras_home, sha256_file

__all__ = [
    "DATASETS",
    "cifar10",
    "digits",
    "load",
    "mnist",
    "sequences",
    "study_hours",
    "tickets",
]

#: The guide's ticket task: vocabulary size, number of tags, number of departments
#: (``tickets`` makes it; ``zoo.models.ticket_router`` defaults to it).
TICKET_WORDS, TICKET_TAGS, TICKET_DEPARTMENTS = 10_000, 12, 4

MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded datasets."""
    return keras_home() / "datasets"


def _reshape(name, x, shape):
    """Reshapes samples to ``shape`` (e.g. (784,) or (28, 28, 1)), which must hold
    the same number of values."""
    if shape is None:
        return x
    shape = tuple(shape)
    if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"shape {shape} does not fit {name} samples of shape {x.shape[1:]} "
            f"({int(np.prod(x.shape[1:]))} values)"
        )
    return x.reshape((len(x), *shape))


def _offline_error(fname: str, err: Exception) -> RuntimeError:
    path = keras_cache_dir() / fname
    return RuntimeError(
        f"could not download {fname} ({type(err).__name__}: {err}); with no network, put "
        f"Keras's {fname} at {path}, or train offline on dataset 'digits'"
    )


def mnist(shape=(784,)):
    """MNIST through ``keras.datasets.mnist``: images scaled to float32 in [0, 1]
    (flattened to 784 by default, as in the guide), int labels 0-9.

    A cached ``mnist.npz`` whose sha256 is not Keras's is refused, never used.

    Args:
        shape: the shape of one sample, e.g. ``(784,)`` or ``(28, 28, 1)``.

    Example:
        >>> from zoo import datasets
        >>> (x_train, y_train), (x_test, y_test) = datasets.mnist()  # doctest: +SKIP
    """
    import keras

    cached = keras_cache_dir() / "mnist.npz"
    if cached.exists() and sha256_file(cached) != MNIST_SHA256:
        raise ValueError(
            f"the cached {cached} is corrupt or truncated (sha256 is not Keras's "
            f"{MNIST_SHA256[:12]}...); delete it, or replace it with Keras's mnist.npz"
        )
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # Keras raises a bare Exception when a download fails
        raise _offline_error("mnist.npz", err) from err
    return (
        (_reshape("mnist", x_train.astype("float32") / 255.0, shape), y_train.astype("int64")),
        (_reshape("mnist", x_test.astype("float32") / 255.0, shape), y_test.astype("int64")),
    )


def cifar10(shape=(32, 32, 3)):
    """CIFAR-10 through ``keras.datasets.cifar10``: images as float32 in [0, 1], int
    labels 0-9 (flattened to shape (n,)).

    Example:
        >>> from zoo import datasets
        >>> (x_train, y_train), _ = datasets.cifar10()  # doctest: +SKIP
    """
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:
        raise _offline_error("cifar-10-batches-py.tar.gz", err) from err
    return (
        (_reshape("cifar10", x_train.astype("float32") / 255.0, shape), y_train.reshape(-1)),
        (_reshape("cifar10", x_test.astype("float32") / 255.0, shape), y_test.reshape(-1)),
    )


def digits(shape=(784,), test_fraction=0.2, seed=0):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download),
    upscaled to 28x28 like MNIST (each pixel 3x3, 2 pixels of border) and scaled to
    float32 in [0, 1], so MNIST's models take them as they are.

    Args:
        shape: the shape of one sample: ``(784,)`` (flat), ``(28, 28, 1)``, or
            ``(64,)`` / ``(8, 8, 1)`` for the original 8x8 images.
        test_fraction: share held out for testing, in (0, 1).
        seed: the seed of the train/test split.

    Example:
        >>> from zoo import datasets
        >>> (x_train, y_train), (x_test, y_test) = datasets.digits()
        >>> x_train.shape, x_test.shape
        ((1438, 784), (359, 784))
    """
    from sklearn.datasets import load_digits

    if not isinstance(test_fraction, float) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a float in (0, 1), got {test_fraction!r}")
    data = load_digits()
    images = (data.images / 16.0).astype("float32")  # (n, 8, 8) in [0, 1]
    labels = data.target.astype("int64")
    if shape is not None and int(np.prod(shape)) != 64:
        images = np.kron(images, np.ones((3, 3), "float32"))  # (n, 24, 24)
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # (n, 28, 28)
    images = _reshape("digits", images, shape)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = round(len(images) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])


def study_hours():
    """The tutorial's study-hours data: 9 students' hours studied and their scores.

    Returns ``(x, y)``, each (9, 1) float32; no test split (the tutorial has none).

    Example:
        >>> from zoo import datasets
        >>> x, y = datasets.study_hours()
        >>> x[:3, 0], y[:3, 0]
        (array([1., 2., 3.], dtype=float32), array([11., 22., 33.], dtype=float32))
    """
    x = np.arange(1, 10, dtype="float32").reshape(-1, 1)
    y = np.array([11, 22, 33, 44, 53, 66, 77, 87, 95], dtype="float32").reshape(-1, 1)
    return x, y


def tickets(
    n=4000,
    seed=0,
    num_words=TICKET_WORDS,
    num_tags=TICKET_TAGS,
    num_departments=TICKET_DEPARTMENTS,
    title_len=10,
    body_len=40,
    test_fraction=0.2,
):
    """Synthetic support tickets for ``ticket_router``, with a learnable rule.

    Each ticket's words are random filler ids in [100, min(num_words, 1100)) (a
    vocabulary of recurring words, as real text has), and then:
    - department ``d``: the body contains keyword ``10 + d`` (at a random place) and
      tag ``d`` is set; a distractor tag among the others may be set too.
    - priority is 1 when the title contains the word ``5`` ("urgent", up to three
      times, in half the tickets) or the last tag is set (a quarter), else 0.

    Returns:
        ``(x_train, y_train), (x_test, y_test)`` where ``x`` is a dict of ``title``,
        ``body`` (int32 word ids) and ``tags`` (float32 0/1), and ``y`` a dict of
        ``priority`` (float32, (n, 1)) and ``department`` (one-hot float32).

    Example:
        >>> from zoo import datasets
        >>> (x, y), _ = datasets.tickets(n=100)
        >>> sorted(x), sorted(y)
        (['body', 'tags', 'title'], ['department', 'priority'])
    """
    n = check.positive_int("n", n)
    for name, value in (("num_words", num_words), ("title_len", title_len)):
        check.positive_int(name, value)
    if num_words <= 100:
        raise ValueError(f"num_words must be > 100 (ids below 100 are keywords), got {num_words}")
    if not 2 <= num_departments < num_tags:
        raise ValueError(
            f"num_departments must be in [2, num_tags={num_tags}), got {num_departments!r}"
        )
    if check.positive_int("body_len", body_len) < 2:
        raise ValueError(f"body_len must be >= 2, got {body_len}")
    rng = np.random.default_rng(seed)
    filler = min(num_words, 1100)
    title = rng.integers(100, filler, size=(n, title_len)).astype("int32")
    body = rng.integers(100, filler, size=(n, body_len)).astype("int32")
    tags = np.zeros((n, num_tags), "float32")
    department = rng.integers(0, num_departments, size=n)
    rows = np.arange(n)
    body[rows, rng.integers(0, body_len, size=n)] = 10 + department
    tags[rows, department] = 1.0
    distractor = rng.integers(num_departments, num_tags - 1, size=n)
    tags[rows, distractor] = (rng.random(n) < 0.5).astype("float32")
    urgent = rng.random(n) < 0.5
    for _ in range(3):  # the word "urgent" (id 5) at up to three places in the title
        title[urgent, rng.integers(0, title_len, size=int(urgent.sum()))] = 5
    tags[:, -1] = (rng.random(n) < 0.25).astype("float32")
    priority = (urgent | (tags[:, -1] == 1)).astype("float32").reshape(-1, 1)
    one_hot = np.eye(num_departments, dtype="float32")[department]
    x = {"title": title, "body": body, "tags": tags}
    y = {"priority": priority, "department": one_hot}
    n_test = round(n * test_fraction)

    def part(d, s):
        return {k: v[s] for k, v in d.items()}

    train, test = slice(n_test, None), slice(0, n_test)
    return (part(x, train), part(y, train)), (part(x, test), part(y, test))


def sequences(n=1000, seed=0, timesteps=50, test_fraction=0.2):
    """A learnable sequence task for ``lstm_classifier``: noisy sine waves, label 1
    when the wave rises over the sequence's last fifth, else 0.

    Returns ``(x_train, y_train), (x_test, y_test)`` with x of shape (n, timesteps, 1)
    float32 and y (n, 1) float32.

    Example:
        >>> from zoo import datasets
        >>> (x, y), _ = datasets.sequences(n=10)
        >>> x.shape, y.shape
        ((8, 50, 1), (8, 1))
    """
    n = check.positive_int("n", n)
    timesteps = check.positive_int("timesteps", timesteps)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, timesteps, dtype="float32")
    freq = rng.uniform(0.5, 2.0, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.1, size=(n, timesteps))
    tail = max(2, timesteps // 5)
    y = (x[:, -1] - x[:, -tail] > 0).astype("float32").reshape(-1, 1)
    x = x.astype("float32")[..., None]
    n_test = round(n * test_fraction)
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


DATASETS = {
    "mnist": mnist,
    "cifar10": cifar10,
    "digits": digits,
    "tickets": tickets,
    "study_hours": study_hours,
    "sequences": sequences,
}


def load(name: str, **kwargs):
    """Loads the dataset ``name`` (one of ``DATASETS``) with ``kwargs`` as
    ``(x_train, y_train), (x_test, y_test)``. A dataset with no test split of its own
    (``study_hours``: the tutorial's 9 points) gives its data as both."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    data = DATASETS[name](**kwargs)
    if name in _NO_TEST_SPLIT:
        return data, data
    return data


_NO_TEST_SPLIT = {"study_hours"}
