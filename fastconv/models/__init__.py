"""Keras-compatible models: ``Sequential``, functional ``Model``, ``load_model``."""

from fastconv.models.model import Model, NonFiniteLoss
from fastconv.models.sequential import Sequential


def load_model(filepath, compile=True):
    """A model saved by ``model.save`` (HDF5): architecture, weights and, if compiled, its training configuration."""
    from fastconv.models.saving import load_model as _load_model

    return _load_model(filepath, compile=compile)


__all__ = ["Model", "NonFiniteLoss", "Sequential", "load_model"]
