"""Keras' weight and activity regularizers: ``L1``, ``L2`` and ``L1L2``, with Keras 3's formulas and defaults.

A regularizer is a penalty on an array ``x`` added to the training loss (and reported in it, in ``fit`` and
``evaluate``, as Keras does):

* ``L1(l1=0.01)``: ``l1 * sum(|x|)``; gradient ``l1 * sign(x)`` (0 at 0, as TensorFlow's);
* ``L2(l2=0.01)``: ``l2 * sum(x**2)``; gradient ``2 * l2 * x``;
* ``L1L2(l1=0.0, l2=0.0)``: both.

``kernel_regularizer`` / ``bias_regularizer`` penalise a layer's trainable weights; ``activity_regularizer`` its
output, divided by the batch size (as Keras 3 and tf.keras do). Saved as Keras 3 writes them:
``{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, ...}``.
"""

import numpy as np

from fastconv.utils import check_number


class L1L2:
    """``l1 * sum(|x|) + l2 * sum(x**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = check_number(l1, "l1", type(self).__name__)
        self.l2 = check_number(l2, "l2", type(self).__name__)

    def __call__(self, x):
        """The penalty of ``x`` (any shape, float32) as a Python float, summed in float64."""
        x = np.asarray(x, dtype=np.float64)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.abs(x).sum())
        if self.l2:
            penalty += self.l2 * float(np.square(x).sum())
        return penalty

    def gradient(self, x):
        """d penalty / d x, float32 of ``x``'s shape."""
        x = np.asarray(x, dtype=np.float32)
        grad = np.zeros_like(x)
        if self.l1:
            grad += np.float32(self.l1) * np.sign(x)
        if self.l2:
            grad += np.float32(2 * self.l2) * x
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __repr__(self):
        options = ", ".join(f"{key}={value}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({options})"


class L1(L1L2):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(x**2)``."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2}  # Keras' string shorthands


def get(identifier):
    """None, a regularizer, a name (``'l2'``, ``'l1'``, ``'l1_l2'``) or a saved config ``{'class_name', 'config'}``."""
    if identifier is None or isinstance(identifier, L1L2):
        return identifier
    if isinstance(identifier, str):
        if identifier in _NAMES:
            return _NAMES[identifier]()
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    elif isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        config = identifier.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"the regularizer {identifier['class_name']} has the config {config!r}; expected a dict")
        try:
            return _CLASSES[identifier["class_name"]](**config)
        except TypeError as error:
            raise ValueError(f"the regularizer {identifier['class_name']} cannot take the config {config}: {error}") from None
    raise ValueError(f"the regularizer {str(identifier)[:120]} is not one fastconv has (L1, L2, L1L2)")


def serialize(regularizer):
    """Keras 3's config of ``regularizer`` (None stays None)."""
    if regularizer is None:
        return None
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__, "config": regularizer.get_config(), "registered_name": None}
