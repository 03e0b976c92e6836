"""Keras-compatible layers: ``from fastconv import layers; layers.Conv2D(32, (3, 3), activation='relu')``."""

from fastconv.layers.base import Input, InputLayer, KerasTensor, Layer, Weight
from fastconv.layers.convolutional import Conv2D
from fastconv.layers.core import Activation, Dense, Dropout, Flatten
from fastconv.layers.pooling import (
    AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D, GlobalMaxPooling2D, MaxPool2D,
    MaxPooling2D,
)  # fmt: skip

Convolution2D = Conv2D

__all__ = [
    "Activation", "AveragePooling2D", "AvgPool2D", "Conv2D", "Convolution2D", "Dense", "Dropout", "Flatten",
    "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "GlobalMaxPooling2D",
    "Input", "InputLayer", "KerasTensor", "Layer", "MaxPool2D", "MaxPooling2D", "Weight",
]  # fmt: skip


def deserialize(config):
    """A layer from ``{'class_name': ..., 'config': ...}`` (what models save)."""
    from fastconv.models import Model, Sequential

    classes = {name: globals()[name] for name in __all__ if isinstance(globals()[name], type)}
    classes.update(Sequential=Sequential, Model=Model, Functional=Model)
    if not isinstance(config, dict) or "class_name" not in config or not isinstance(config.get("config"), dict):
        raise ValueError(f"a layer's saved configuration must be {{'class_name': ..., 'config': {{...}}}}, got {str(config)[:120]}")
    class_name = config["class_name"]
    if class_name not in classes:
        raise ValueError(f"unknown layer class {class_name!r} in the saved model")
    name = config["config"].get("name")
    try:
        return classes[class_name].from_config(dict(config["config"]))
    except (KeyError, TypeError, ValueError) as error:  # a nested model's message names its layer after ours
        raise ValueError(f"layer {name!r} ({class_name}): {error}") from None
