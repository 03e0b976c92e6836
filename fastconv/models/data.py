"""Feeding ``fit``/``evaluate``/``predict``: arrays in (shuffled) batches, or a generator of batches.

A batch reaches the model as C-contiguous float32 (a copy of just that batch),
so memory grows with the batch, not the dataset.
"""

import math

import numpy as np

from fastconv import utils
from fastconv.backends import checks
from fastconv.shapes import positive_int


def is_generator(data):
    """A Python generator/iterator, a Keras ``Sequence``-like object (``__getitem__`` + ``__len__``) or a dataset
    (``__iter__`` + ``__len__``, one epoch per iteration: ``image_dataset_from_directory``), not an array."""
    if isinstance(data, (np.ndarray, list, tuple)):
        return False
    return hasattr(data, "__next__") or (hasattr(data, "__len__") and (hasattr(data, "__getitem__") or hasattr(data, "__iter__")))


def is_dataset(data):
    """A finite, re-iterable dataset: ``__iter__`` and ``__len__``, neither an iterator nor indexable."""
    return is_generator(data) and not hasattr(data, "__next__") and not hasattr(data, "__getitem__")


def as_float_batch(x, what="x"):
    """A batch as contiguous float32; NaN or infinity raises ValueError naming the batch's shape, a dtype that is
    not real numbers (complex, strings) a TypeError."""
    batch = checks.as_real_float32(x, f"{what} batch")
    if not np.isfinite(batch).all():
        raise ValueError(f"{what} batch of shape {batch.shape} contains NaN or infinity")
    return batch


class ArrayBatches:
    """Batches of ``x`` (and ``y``) in order or in a fresh random order each epoch."""

    def __init__(self, x, y=None, batch_size=32, shuffle=False):
        self.x = x if isinstance(x, np.ndarray) else np.asarray(x)
        self.y = None if y is None else (y if isinstance(y, np.ndarray) else np.asarray(y))
        if self.y is not None and len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)} (x {self.x.shape}, y {self.y.shape})")
        if len(self.x) == 0:
            raise ValueError(f"x is empty (shape {self.x.shape})")
        self.batch_size = batch_size = positive_int(batch_size, "batch_size")
        self.shuffle = shuffle
        self.steps = math.ceil(len(self.x) / batch_size)

    def epoch(self):
        """Yield (x_batch, y_batch or None) for one pass over the data."""
        order = utils.rng().permutation(len(self.x)) if self.shuffle else None
        for start in range(0, len(self.x), self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
            else:
                index = np.sort(order[start : start + self.batch_size])
            yield self.x[index], None if self.y is None else self.y[index]


class GeneratorBatches:
    """``steps`` batches per epoch drawn from a generator yielding ``(x, y)`` (or ``x``) tuples."""

    def __init__(self, generator, steps, what="steps_per_epoch"):
        self.steps_given = steps is not None
        if steps is None:
            if hasattr(generator, "__len__"):
                steps = len(generator)
            else:
                raise ValueError(f"a generator gives no epoch length: pass {what}")
        self.generator = generator
        self.steps = positive_int(steps, what)
        self._iterator = None
        self._index = 0

    def _next(self):
        if hasattr(self.generator, "__next__"):
            return next(self.generator)
        if self._index >= len(self.generator):  # a Sequence: go round again
            self._index = 0
        item = self.generator[self._index]
        self._index += 1
        return item

    def epoch(self):
        for _ in range(self.steps):
            try:
                item = self._next()
            except StopIteration:
                raise ValueError(f"the generator ran out after fewer than {self.steps} batches") from None
            if isinstance(item, tuple):
                yield item[0], item[1] if len(item) > 1 else None
            else:
                yield item, None


class DatasetBatches:
    """``steps`` batches per epoch (default all, ``len(dataset)``) from a fresh pass over a dataset of ``(x, y)``
    batches (or ``x`` alone): each epoch starts the dataset again, as Keras does with a finite dataset."""

    def __init__(self, dataset, steps, what="steps_per_epoch"):
        self.dataset = dataset
        self.steps = len(dataset) if steps is None else positive_int(steps, what)
        if self.steps > len(dataset):
            raise ValueError(f"{what}={self.steps} is more than the {len(dataset)} batches the dataset has")

    def epoch(self):
        for index, item in enumerate(self.dataset):
            if index == self.steps:
                return
            if isinstance(item, tuple):
                yield item[0], item[1] if len(item) > 1 else None
            else:
                yield item, None


def batches(x, y=None, batch_size=None, shuffle=False, steps=None, steps_name="steps"):
    """The right feeder for ``x``: a generator, or arrays with ``y``.

    ``batch_size`` None means Keras' 32; ``steps`` is for generators only (an epoch
    over arrays is every sample once) and is refused with arrays rather than ignored.
    """
    if is_generator(x):
        if y is not None:
            raise ValueError("y must be None when x is a generator or a dataset (it yields (x, y) batches)")
        if is_dataset(x):
            return DatasetBatches(x, steps, steps_name)
        return GeneratorBatches(x, steps, steps_name)
    if steps is not None:
        raise ValueError(
            f"{steps_name}={steps!r} is for generators: an epoch over arrays is every sample once "
            f"(ceil(len(x) / batch_size) steps); leave {steps_name} out or pass a generator"
        )
    return ArrayBatches(x, y, 32 if batch_size is None else batch_size, shuffle)


def split_validation(x, y, validation_split, validation_data):
    """``fit``'s ``validation_split``: the last fraction of the arrays becomes ``validation_data``.

    Returns ``(x, y, validation_data)``, unchanged when ``validation_split`` is 0.
    """
    if validation_split and is_generator(x):
        raise ValueError("fit(): validation_split needs arrays; with a generator pass validation_data (and validation_steps)")
    if not validation_split:
        return x, y, validation_data
    if validation_data is not None:
        raise ValueError("fit(): give validation_split or validation_data, not both")
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    split = int(len(x) * (1 - validation_split))
    return x[:split], y[:split], (x[split:], y[split:])


def validation_batches(validation_data, validation_steps, batch_size):
    """The feeder of ``fit``'s validation: ``(x_val, y_val)`` in order, or a generator; None without data."""
    if validation_data is None:
        return None
    if is_generator(validation_data):
        return batches(validation_data, None, None, False, validation_steps, "validation_steps")
    return batches(validation_data[0], validation_data[1], batch_size, False, validation_steps, "validation_steps")
