"""Keras' losses. Each gives the mean loss over the batch and its gradient.

A loss that follows a softmax (categorical cross-entropies) or a sigmoid
(binary cross-entropy) is computed from the logits by a fused kernel of the
backend, which is exact where ``-log(clip(p, 1e-7))`` is not; models use that
path whenever the output layer's activation allows it. The general path,
from predictions, clips them to [1e-7, 1 - 1e-7] as Keras does.
"""

import numpy as np

from fastconv import utils
from fastconv.backends import get_backend

EPSILON = 1e-7


class Loss:
    name = "loss"
    fuses_with = None  # the output activation this loss can take logits of

    def targets(self, y_true, output_shape):
        """y_true as float32 of the model's output shape; ValueError naming both shapes otherwise."""
        y_true = np.asarray(y_true, dtype=np.float32)
        if y_true.ndim == len(output_shape) - 1 and output_shape[-1] == 1:
            y_true = y_true.reshape(*y_true.shape, 1)
        if y_true.shape != tuple(output_shape):
            raise ValueError(
                f"loss {self.name!r} expects targets shaped like the model's output {tuple(output_shape)}, "
                f"got {y_true.shape}{self._hint(y_true)}"
            )
        return np.ascontiguousarray(y_true)

    def _hint(self, y_true):
        return ""

    def from_logits(self, y_true, logits):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """(mean loss, gradient with respect to y_pred), both on the host."""
        raise NotImplementedError


def _as_rows(array):
    return array.reshape(-1, tuple(array.shape)[-1])


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    fuses_with = "softmax"

    def _hint(self, y_true):
        return " (integer labels? use sparse_categorical_crossentropy or fastconv.utils.to_categorical)" if y_true.ndim == 1 else ""

    def from_logits(self, y_true, logits):
        loss, grad = get_backend().softmax_cross_entropy(_as_rows(logits), _as_rows(y_true))
        return loss, grad.reshape(logits.shape)

    def __call__(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON)
        rows = y_pred.size // y_pred.shape[-1]
        loss = -(y_true * np.log(clipped)).sum() / rows
        grad = np.where((y_pred > EPSILON) & (y_pred < 1 - EPSILON), -y_true / clipped, 0.0) / rows
        return float(loss), grad.astype(np.float32)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    name = "sparse_categorical_crossentropy"

    def targets(self, y_true, output_shape):
        labels = np.asarray(y_true)
        if labels.ndim == len(output_shape) and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.shape != tuple(output_shape[:-1]):
            raise ValueError(
                f"loss {self.name!r} expects integer labels of shape {tuple(output_shape[:-1])} for outputs "
                f"{tuple(output_shape)}, got {labels.shape}"
            )
        classes = output_shape[-1]
        labels = utils.integer_labels(labels, f"loss {self.name!r}")
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"loss {self.name!r}: labels must lie in [0, {classes}), got {labels.min()}..{labels.max()}")
        return np.ascontiguousarray(np.eye(classes, dtype=np.float32)[labels])


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    fuses_with = "sigmoid"

    def from_logits(self, y_true, logits):
        loss, grad = get_backend().sigmoid_binary_cross_entropy(_as_rows(logits), _as_rows(y_true))
        return loss, grad.reshape(logits.shape)

    def __call__(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        loss = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean()
        grad = np.where((y_pred > EPSILON) & (y_pred < 1 - EPSILON), (p - y_true) / (p * (1 - p)), 0.0) / y_pred.size
        return float(loss), grad.astype(np.float32)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        diff = np.asarray(y_pred, dtype=np.float64) - y_true
        return float((diff**2).mean()), (2 * diff / diff.size).astype(np.float32)


_LOSSES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    if identifier not in _LOSSES:
        raise ValueError(f"unknown loss {identifier!r}; fastconv has {', '.join(_LOSSES)}")
    loss = _LOSSES[identifier]()
    loss.name = identifier
    return loss
