"""ReLU, sigmoid and softmax forward and backward (backward from the output y), as src_ext/activations.pyx."""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL

@njit(**PARALLEL)
def relu_forward(x, out_y):
    """out_y = max(x, 0), NaN kept as NaN; flat (size,) buffers."""
    for i in prange(x.shape[0]):
        out_y[i] = 0.0 if x[i] <= 0 else x[i]


@njit(**PARALLEL)
def relu_backward(grad_out, y, out_grad_x):
    """out_grad_x = grad_out where y > 0, else 0; flat buffers."""
    for i in prange(y.shape[0]):
        out_grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


@njit(**PARALLEL)
def sigmoid_forward(x, out_y):
    """out_y = 1 / (1 + exp(-x)); flat buffers."""
    for i in prange(x.shape[0]):
        out_y[i] = 1.0 / (1.0 + np.exp(-x[i]))


@njit(**PARALLEL)
def sigmoid_backward(grad_out, y, out_grad_x):
    """out_grad_x = grad_out * y * (1 - y); flat buffers."""
    for i in prange(y.shape[0]):
        out_grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


@njit(**PARALLEL)
def softmax_forward(x, out_y):
    """Row-wise softmax. x, out_y: (N, K)."""
    for n in prange(x.shape[0]):
        peak = x[n].max()
        total = 0.0
        for k in range(x.shape[1]):
            out_y[n, k] = np.exp(x[n, k] - peak)
            total += out_y[n, k]
        for k in range(x.shape[1]):
            out_y[n, k] = out_y[n, k] / total


@njit(**PARALLEL)
def softmax_backward(grad_out, y, out_grad_x):
    """out_grad_x = y * (grad_out - sum_k grad_out * y) row-wise; all (N, K)."""
    for n in prange(y.shape[0]):
        dot = 0.0
        for k in range(y.shape[1]):
            dot += np.float64(grad_out[n, k]) * y[n, k]
        for k in range(y.shape[1]):
            out_grad_x[n, k] = y[n, k] * (grad_out[n, k] - dot)
