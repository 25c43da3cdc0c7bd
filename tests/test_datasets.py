"""Datasets: shapes, ranges, learnable rules, and clear errors offline or on a bad cache."""

import numpy as np
import pytest

from zoo import datasets


def test_digits_is_mnist_shaped_and_offline():
    (x_train, y_train), (x_test, _) = datasets.digits()
    assert x_train.shape == (1438, 784) and x_test.shape == (359, 784)
    assert x_train.dtype == np.float32 and x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_train)) == set(range(10))
    images, _ = datasets.digits(shape=(28, 28, 1))[0]
    assert images.shape[1:] == (28, 28, 1)
    assert np.all(images[:, :2] == 0) and np.all(images[:, :, -2:] == 0)  # the border
    small, _ = datasets.digits(shape=(64,))[0]
    assert small.shape[1:] == (64,)
    # the split is deterministic and disjoint
    again = datasets.digits()
    np.testing.assert_array_equal(again[0][0], x_train)


def test_study_hours_is_the_tutorials_data():
    x, y = datasets.study_hours()
    assert x.shape == y.shape == (9, 1)
    assert x[:, 0].tolist() == list(range(1, 10))
    assert y[:, 0].tolist() == [11, 22, 33, 44, 53, 66, 77, 87, 95]


def test_tickets_follow_the_documented_rule():
    (x, y), (xt, _) = datasets.tickets(n=500, seed=3)
    assert len(x["title"]) == 400 and len(xt["title"]) == 100
    department = y["department"].argmax(axis=1)
    for i in range(50):
        assert 10 + department[i] in x["body"][i]  # the department's keyword is in the body
        assert x["tags"][i, department[i]] == 1
    urgent = (x["title"] == 5).any(axis=1) | (x["tags"][:, -1] == 1)
    np.testing.assert_array_equal(y["priority"][:, 0], urgent.astype("float32"))
    assert 0.3 < y["priority"].mean() < 0.8  # both classes present
    again = datasets.tickets(n=500, seed=3)
    np.testing.assert_array_equal(again[0][0]["body"], x["body"])


def test_sequences_are_balanced_and_labelled_by_their_rule():
    (x, y), _ = datasets.sequences(n=400)
    assert x.shape == (320, 50, 1) and y.shape == (320, 1)
    assert 0.3 < y.mean() < 0.7
    np.testing.assert_array_equal(y[:, 0], (x[:, -1, 0] - x[:, -10, 0] > 0).astype("float32"))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: datasets.load("imagenet"), "dataset must be one of"),
        (lambda: datasets.tickets(n=0), "n must be a positive int, got 0"),
        (lambda: datasets.tickets(n=-5), "n must be a positive int, got -5"),
        (lambda: datasets.sequences(n=2.5), "n must be a positive int, got 2.5"),
        (lambda: datasets.tickets(num_departments=20), "num_departments must be in"),
        (lambda: datasets.digits(shape=(10, 10)), r"shape \(10, 10\) does not fit"),
        (lambda: datasets.digits(test_fraction=1.5), "test_fraction must be"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_corrupt_mnist_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"mnist.npz is corrupt or truncated"):
        datasets.mnist()


def test_mnist_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: no network")

    monkeypatch.setattr("keras.src.datasets.mnist.get_file", offline)
    with pytest.raises(RuntimeError) as excinfo:
        datasets.mnist()
    message = str(excinfo.value)
    assert str(tmp_path / "datasets" / "mnist.npz") in message and "'digits'" in message
    assert keras.backend.backend()  # keras untouched
