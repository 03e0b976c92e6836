"""Keras' accuracy metrics, on predictions or on the logits the fused losses keep."""

import numpy as np


def categorical_accuracy(targets, outputs):
    """Fraction of rows whose largest output is at the target's largest entry (logits or probabilities)."""
    return float(np.mean(np.argmax(outputs, axis=-1) == np.argmax(targets, axis=-1)))


def binary_accuracy(targets, outputs, logits=False):
    """Fraction of outputs on the target's side of 0.5 (of 0 for logits)."""
    predicted = outputs > (0.0 if logits else 0.5)
    return float(np.mean(predicted == (targets > 0.5)))


def accuracy_for(loss_name, output_shape):
    """What 'accuracy' means for a loss, as in Keras: binary for binary cross-entropy or one output, else categorical."""
    if loss_name == "binary_crossentropy" or output_shape[-1] == 1:
        return "binary"
    return "categorical"


def check_metrics(metrics):
    """Names of the metrics asked for; only accuracy (spelled 'accuracy' or 'acc') is supported."""
    names = list(metrics or [])
    for name in names:
        if name not in ("accuracy", "acc"):
            raise ValueError(f"unknown metric {name!r}; fastconv supports 'accuracy' (or 'acc')")
    return names
