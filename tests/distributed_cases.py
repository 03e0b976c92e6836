"""The models and data of the data-parallel tests, shared by tests/test_distribute.py and tests/mpi_worker.py."""

import numpy as np

from fastconv import layers, models
from fastconv.examples.listings import mnist_convnet

PER_PROCESS_BATCH = 32
STEPS = 4
SHUFFLED_EPOCHS = 2  # the 'shuffled' case: epochs, each in a fresh order


def model_for(network, wider=False):
    """The MNIST convnet (listing 5.3) or a small cats-vs-dogs-shaped one (conv 3x3 on RGB, pooling, dense); ``wider``
    gives the hidden Dense layer one more unit (a replica that does not match)."""
    if network == "mnist":
        model = mnist_convnet()
        if wider:
            model.pop(), model.pop()
            model.add(layers.Dense(65, activation="relu"))
            model.add(layers.Dense(10, activation="softmax"))
        return model
    model = models.Sequential()
    model.add(layers.Conv2D(8, (3, 3), activation="relu", input_shape=(34, 34, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(16, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(33 if wider else 32, activation="relu"))
    model.add(layers.Dense(2, activation="softmax"))
    return model


def data(network, samples):
    """Fixed random images and one-hot labels (the same on every rank)."""
    rng = np.random.default_rng(1234)
    shape, classes = ((28, 28, 1), 10) if network == "mnist" else ((34, 34, 3), 2)
    x = rng.random((samples, *shape), dtype=np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, samples)]
    return x, y
