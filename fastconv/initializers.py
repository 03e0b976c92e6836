"""Weight initialisers by Keras name, drawing from ``fastconv.utils.rng()`` (seeded by ``set_random_seed``)."""

import numpy as np

from fastconv import utils


def _fans(shape):
    """Keras' fan-in / fan-out: a conv kernel (KH, KW, C, F) counts its receptive field on both sides."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape):
    limit = np.sqrt(6.0 / sum(_fans(shape)))
    return utils.rng().uniform(-limit, limit, shape).astype(np.float32)


def he_normal(shape):
    stddev = np.sqrt(2.0 / _fans(shape)[0])
    return (utils.rng().standard_normal(shape) * stddev).astype(np.float32)


def zeros(shape):
    return np.zeros(shape, dtype=np.float32)


def ones(shape):
    return np.ones(shape, dtype=np.float32)


_INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_normal": he_normal, "zeros": zeros, "ones": ones}


def get(identifier):
    """A name or a callable ``shape -> float32 array``."""
    if callable(identifier):
        return identifier
    if identifier not in _INITIALIZERS:
        raise ValueError(f"unknown initializer {identifier!r}; fastconv has {', '.join(_INITIALIZERS)}")
    return _INITIALIZERS[identifier]


def serialize(identifier):
    """The name to save for an initializer; a custom callable cannot be saved and says so."""
    name = identifier if isinstance(identifier, str) else getattr(identifier, "__name__", None)
    if name not in _INITIALIZERS:
        raise ValueError(f"cannot save the custom initializer {identifier!r}: only {', '.join(_INITIALIZERS)} are saved by name")
    return name
