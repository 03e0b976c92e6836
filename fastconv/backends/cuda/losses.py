"""The fused losses on the GPU, one thread per row: the gradient stays on the device, N row losses come back."""

import math

import numpy as np
from numba import cuda, float64

from fastconv.backends.cuda._common import THREADS, blocks

@cuda.jit
def _softmax_cross_entropy_kernel(logits, targets, grad, row_loss):
    """Per row, in float64: loss -sum t log softmax(z); grad (softmax * sum t - t) / N."""
    n = cuda.grid(1)
    batch, classes = logits.shape
    if n < batch:
        peak = float64(logits[n, 0])
        for k in range(1, classes):
            peak = max(peak, float64(logits[n, k]))
        total, mass = float64(0.0), float64(0.0)
        for k in range(classes):
            total += math.exp(float64(logits[n, k]) - peak)
            mass += targets[n, k]
        log_total = math.log(total)
        loss = float64(0.0)
        for k in range(classes):
            log_prob = float64(logits[n, k]) - peak - log_total
            loss -= targets[n, k] * log_prob
            grad[n, k] = (math.exp(log_prob) * mass - targets[n, k]) / batch
        row_loss[n] = loss


@cuda.jit
def _sigmoid_cross_entropy_kernel(logits, targets, grad, row_loss):
    n = cuda.grid(1)
    batch, classes = logits.shape
    if n < batch:
        loss = float64(0.0)
        for k in range(classes):
            z, t = float64(logits[n, k]), float64(targets[n, k])
            loss += max(z, 0.0) - z * t + math.log1p(math.exp(-abs(z)))
            grad[n, k] = (1.0 / (1.0 + math.exp(-z)) - t) / (batch * classes)
        row_loss[n] = loss


def _row_losses(kernel, logits, targets, grad):
    row_loss = cuda.device_array(logits.shape[0], dtype=np.float64)
    kernel[blocks(logits.shape[0]), THREADS](logits, targets, grad, row_loss)
    return row_loss.copy_to_host().sum()  # N numbers come back, not the gradient


def softmax_cross_entropy(logits, targets, out_grad_logits):
    return _row_losses(_softmax_cross_entropy_kernel, logits, targets, out_grad_logits) / logits.shape[0]


def sigmoid_binary_cross_entropy(logits, targets, out_grad_logits):
    return _row_losses(_sigmoid_cross_entropy_kernel, logits, targets, out_grad_logits) / logits.size
