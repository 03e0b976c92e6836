"""Small models and data that the API tests share (layers, training, saving)."""

import re

import numpy as np

import fastconv as keras
from fastconv import layers, models
from fastconv.utils import to_categorical


def summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def total_params(model):
    return int(re.search(r"Total params: ([\d,]+)", summary_text(model)).group(1).replace(",", ""))


def functional_8_1(max_pool=True):
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    if max_pool:
        x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    if max_pool:
        x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def small_classifier():
    model = models.Sequential(
        [
            layers.Conv2D(3, (3, 3), activation="relu", padding="same", input_shape=(6, 6, 2)),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(4, (2, 2), strides=(1, 1), activation="relu"),
            layers.Flatten(),
            layers.Dense(5, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def tiny_data(n=64, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 6, 2)).astype(np.float32)
    labels = (x[:, :3].sum(axis=(1, 2, 3)) > 0).astype(int) + (x[:, 3:, :, 0].sum(axis=(1, 2)) > 0).astype(int)
    return x, to_categorical(labels, 3)


def conv_classifier(activation="softmax", units=3):
    """Conv2D(relu) -> MaxPooling2D -> Flatten -> Dense on (6, 6, 1) images, not compiled."""
    return models.Sequential(
        [
            layers.Conv2D(4, (3, 3), activation="relu", input_shape=(6, 6, 1)),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(units, activation=activation),
        ]
    )


def labelled_images(n=32, classes=3):
    """``n`` random (6, 6, 1) float32 images and integer labels below ``classes``."""
    rng = np.random.default_rng(2)
    return rng.standard_normal((n, 6, 6, 1)).astype(np.float32), rng.integers(0, classes, n)
