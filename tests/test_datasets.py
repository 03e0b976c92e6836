"""The bundled MNIST, a user's copy of it, and to_categorical, as Keras' datasets module gives them."""

import numpy as np
import pytest

import fastconv
from fastconv.utils import to_categorical


def test_mnist_loads_like_keras():
    (x_train, y_train), (x_test, y_test) = fastconv.datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert round(float(x_train.mean()), 3) == 33.318 and round(float(x_test.mean()), 3) == 33.791


def test_mnist_reads_a_users_copy(tmp_path):
    (x_train, y_train), (x_test, y_test) = fastconv.datasets.mnist.load_data()
    np.savez(tmp_path / "mnist.npz", x_train=x_train[:10], y_train=y_train[:10], x_test=x_test[:5], y_test=y_test[:5])
    (a, b), (c, d) = fastconv.datasets.mnist.load_data(path=tmp_path / "mnist.npz")
    np.testing.assert_array_equal(a, x_train[:10])
    with pytest.raises(FileNotFoundError, match="neither a Keras mnist.npz nor a folder"):
        fastconv.datasets.mnist.load_data(path=tmp_path / "nothing")


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([1, 0, 2]), np.eye(3, dtype=np.float32)[[1, 0, 2]])
    assert to_categorical(np.array([[1], [3]]), 5).shape == (2, 5)
    with pytest.raises(ValueError, match="out of range"):
        to_categorical([4], 3)
