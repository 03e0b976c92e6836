"""The fused losses from logits: softmax + cross-entropy and sigmoid + binary cross-entropy, with their gradients."""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL

@njit(**PARALLEL)
def softmax_cross_entropy(logits, targets, out_grad_logits):
    """Mean categorical cross-entropy of softmax(logits); out_grad_logits = (softmax * sum(t) - t) / N. Returns the loss.

    The arithmetic is in float64: the gradient of a confident, correct prediction
    is 1 - p for p near 1, which float32 would round away.
    """
    batch, classes = logits.shape
    loss = 0.0
    for n in prange(batch):
        peak = np.float64(logits[n].max())
        total = 0.0
        target_mass = 0.0
        for k in range(classes):
            total += np.exp(np.float64(logits[n, k]) - peak)
            target_mass += targets[n, k]
        log_total = np.log(total)
        row_loss = 0.0
        for k in range(classes):
            log_prob = np.float64(logits[n, k]) - peak - log_total
            row_loss -= targets[n, k] * log_prob
            out_grad_logits[n, k] = (np.exp(log_prob) * target_mass - targets[n, k]) / batch
        loss += row_loss
    return loss / batch


@njit(**PARALLEL)
def sigmoid_binary_cross_entropy(logits, targets, out_grad_logits):
    """Mean binary cross-entropy of sigmoid(logits), in float64; out_grad_logits = (sigmoid(z) - t) / (N * K). Returns the loss."""
    batch, classes = logits.shape
    count = batch * classes
    loss = 0.0
    for n in prange(batch):
        for k in range(classes):
            z = np.float64(logits[n, k])
            t = np.float64(targets[n, k])
            loss += max(z, 0.0) - z * t + np.log1p(np.exp(-abs(z)))
            out_grad_logits[n, k] = (1.0 / (1.0 + np.exp(-z)) - t) / count
    return loss / count
