"""ReLU, sigmoid and softmax forward and backward, and the element-wise product, one thread per element (softmax:
per row). Flat (size,) device arrays except softmax's (N, K)."""

import math

from numba import cuda, float64

from fastconv.backends.cuda._common import THREADS, blocks

@cuda.jit
def _relu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = 0.0 if x[i] <= 0 else x[i]  # NaN stays NaN


@cuda.jit
def _relu_backward_kernel(grad_out, y, grad_x):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


@cuda.jit
def _sigmoid_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = 1.0 / (1.0 + math.exp(-x[i]))


@cuda.jit
def _sigmoid_backward_kernel(grad_out, y, grad_x):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


@cuda.jit
def _multiply_kernel(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] * b[i]


def relu_forward(x, out_y):
    _relu_kernel[blocks(x.shape[0]), THREADS](x, out_y)


def relu_backward(grad_out, y, out_grad_x):
    _relu_backward_kernel[blocks(y.shape[0]), THREADS](grad_out, y, out_grad_x)


def sigmoid_forward(x, out_y):
    _sigmoid_kernel[blocks(x.shape[0]), THREADS](x, out_y)


def sigmoid_backward(grad_out, y, out_grad_x):
    _sigmoid_backward_kernel[blocks(y.shape[0]), THREADS](grad_out, y, out_grad_x)


def multiply(a, b, out):
    _multiply_kernel[blocks(a.shape[0]), THREADS](a, b, out)


@cuda.jit
def _softmax_kernel(x, y):
    n = cuda.grid(1)
    if n < x.shape[0]:
        peak = x[n, 0]
        for k in range(1, x.shape[1]):
            peak = max(peak, x[n, k])
        total = float64(0.0)
        for k in range(x.shape[1]):
            y[n, k] = math.exp(x[n, k] - peak)
            total += y[n, k]
        for k in range(x.shape[1]):
            y[n, k] = y[n, k] / total


@cuda.jit
def _softmax_backward_kernel(grad_out, y, grad_x):
    n = cuda.grid(1)
    if n < y.shape[0]:
        dot = float64(0.0)
        for k in range(y.shape[1]):
            dot += float64(grad_out[n, k]) * y[n, k]
        for k in range(y.shape[1]):
            grad_x[n, k] = y[n, k] * (grad_out[n, k] - dot)


def softmax_forward(x, out_y):
    _softmax_kernel[blocks(x.shape[0]), THREADS](x, out_y)


def softmax_backward(grad_out, y, out_grad_x):
    _softmax_backward_kernel[blocks(y.shape[0]), THREADS](grad_out, y, out_grad_x)
