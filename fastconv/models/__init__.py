"""Keras-compatible models: ``Sequential``, functional ``Model``, ``load_model``."""

from fastconv.models.model import Model, NonFiniteLoss
from fastconv.models.sequential import Sequential


def load_model(filepath, compile=True):
    """A model saved by ``model.save`` of fastconv or Keras (a ``.keras`` archive, or legacy HDF5 of Keras 2 or 3):
    architecture, weights, every layer's trainable flag and, with ``compile=True``, its compile settings and
    optimizer state. ``ValueError`` naming the file, the layer and the option for anything fastconv lacks."""
    from fastconv.models.saving import load_model as _load_model

    return _load_model(filepath, compile=compile)


__all__ = ["Model", "NonFiniteLoss", "Sequential", "load_model"]
