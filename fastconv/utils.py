"""Small Keras-compatible helpers: labels to one-hot, seeding, fresh layer names."""

import math
import re
from collections import defaultdict

import numpy as np

_rng = np.random.default_rng()
_name_counts = defaultdict(int)


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer labels (any shape) -> one-hot rows, as ``keras.utils.to_categorical``.

    ``to_categorical([1, 0, 2])`` is a (3, 3) float32 array; a trailing axis of
    size 1 is dropped first, as Keras does.
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    labels = integer_labels(y, "to_categorical").ravel()
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: negative label {labels.min()}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"to_categorical: label {labels.max()} is out of range for num_classes={num_classes}")
    one_hot = np.zeros((labels.size, num_classes), dtype=dtype)
    one_hot[np.arange(labels.size), labels] = 1
    return one_hot.reshape(y.shape + (num_classes,))


def integer_labels(labels, what):
    """``labels`` as int64; ValueError from ``what`` when one is not a whole number (1.7, NaN): never truncated."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        fractional = np.mod(labels, 1) != 0  # NaN included
        if fractional.any():
            raise ValueError(f"{what} expects integer class labels, got labels such as {float(labels[fractional].flat[0]):g}")
    return labels.astype(np.int64)


def set_random_seed(seed):
    """Seed everything fastconv draws at random (initial weights, dropout, shuffling) and NumPy's global RNG."""
    global _rng
    _rng = np.random.default_rng(seed)
    np.random.seed(seed % 2**32)


def rng():
    """The generator behind initialisers, dropout masks and shuffling (reseeded by :func:`set_random_seed`)."""
    return _rng


def unique_name(class_name, zero_based=True):
    """Keras' default layer names: ``Conv2D`` -> ``conv2d``, ``conv2d_1``, …; ``MaxPooling2D`` -> ``max_pooling2d``.

    ``zero_based=False`` numbers from 1 (``input_1``, ``input_2``, …), as Keras names inputs.
    """
    base = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", class_name).lower()
    base = base.replace("2_d", "2d")
    count = _name_counts[base]
    _name_counts[base] += 1
    if not zero_based:
        return f"{base}_{count + 1}"
    return base if count == 0 else f"{base}_{count}"


def clear_session():
    """Reset default layer names (``conv2d`` again), as ``keras.backend.clear_session``."""
    _name_counts.clear()


def check_number(value, name, owner, low=0.0, high=math.inf, high_included=True):
    """``value`` as a finite float in [low, high] (or [low, high)); ValueError naming ``owner`` and ``name`` for
    NaN, infinity, a value outside the interval or something that is not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    inside = low <= number <= high if high_included else low <= number < high
    if not (math.isfinite(number) and inside):
        interval = f">= {low:g}" if high == math.inf else (f"in [{low}, {high}]" if high_included else f"in [{low}, {high})")
        raise ValueError(f"{owner}: {name} must be a finite number {interval}, got {value!r}")
    return number


def shard_steps(total, batch_size, count):
    """Steps of an epoch of ``total`` samples shared by ``count`` processes at ``batch_size`` each: every step takes
    ``count * batch_size`` samples (the last fewer), and a last step with fewer samples than processes is left out
    (it would leave a process without any)."""
    step = batch_size * count
    return total // step + (total % step >= count)


def shard_bounds(total, batch_size, rank, count, step):
    """``(first, last)``: the positions in the epoch's order of process ``rank``'s samples at step ``step``, the
    ``rank``-th of ``count`` near-equal shares of that step's ``count * batch_size`` samples."""
    start = step * batch_size * count
    size = min(batch_size * count, total - start)
    return start + rank * size // count, start + (rank + 1) * size // count
