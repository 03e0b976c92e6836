"""Keras-compatible layers: ``from fastconv import layers; layers.Conv2D(32, (3, 3), activation='relu')``."""

from fastconv.layers.base import Input, InputLayer, KerasTensor, Layer, Weight, register_class, saved_class
from fastconv.layers.convolutional import Conv2D
from fastconv.layers.core import Activation, Dense, Dropout, Flatten
from fastconv.layers.preprocessing import CaffePreprocessing, RandomFlip, RandomRotation, RandomZoom, Rescaling
from fastconv.layers.pooling import (
    AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D, GlobalMaxPooling2D, MaxPool2D,
    MaxPooling2D,
)  # fmt: skip

Convolution2D = Conv2D
for _alias in ("Convolution2D", "MaxPool2D", "AvgPool2D", "GlobalMaxPool2D", "GlobalAvgPool2D"):
    register_class(globals()[_alias], _alias)

__all__ = [
    "Activation", "AveragePooling2D", "AvgPool2D", "CaffePreprocessing", "Conv2D", "Convolution2D", "Dense", "Dropout", "Flatten",
    "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "GlobalMaxPooling2D",
    "Input", "InputLayer", "KerasTensor", "Layer", "MaxPool2D", "MaxPooling2D", "RandomFlip", "RandomRotation", "RandomZoom",
    "Rescaling", "Weight",
]  # fmt: skip


def deserialize(config):
    """A layer (or model: models register their classes too) from ``{'class_name': ..., 'config': ...}``."""
    if not isinstance(config, dict) or "class_name" not in config or not isinstance(config.get("config"), dict):
        raise ValueError(f"a layer's saved configuration must be {{'class_name': ..., 'config': {{...}}}}, got {str(config)[:120]}")
    class_name = config["class_name"]
    cls = saved_class(class_name)
    if cls is None:
        raise ValueError(f"unknown layer class {class_name!r} in the saved model")
    name = config["config"].get("name")
    try:
        return cls.from_config(dict(config["config"]))
    except (KeyError, TypeError, ValueError) as error:  # a nested model's message names its layer after ours
        raise ValueError(f"layer {name!r} ({class_name}): {error}") from None
