"""The optimizers' updates in place on flat device arrays (formulas: fastconv.backends.host_ops); the arrays a step
reads and writes are the ``out_`` ones, after the gradient."""

import math

from numba import cuda

from fastconv.backends.cuda._common import THREADS, blocks

@cuda.jit
def _sgd_kernel(weight, grad, velocity, learning_rate, momentum, nesterov):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        if momentum == 0.0:
            weight[i] -= learning_rate * grad[i]
        else:
            velocity[i] = momentum * velocity[i] - learning_rate * grad[i]
            weight[i] += momentum * velocity[i] - learning_rate * grad[i] if nesterov else velocity[i]


@cuda.jit
def _rmsprop_kernel(weight, grad, mean_square, learning_rate, rho, epsilon):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        mean_square[i] = rho * mean_square[i] + (1.0 - rho) * grad[i] * grad[i]
        weight[i] -= learning_rate * grad[i] / math.sqrt(mean_square[i] + epsilon)


@cuda.jit
def _adam_kernel(weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        first[i] += (1.0 - beta_1) * (grad[i] - first[i])
        second[i] += (1.0 - beta_2) * (grad[i] * grad[i] - second[i])
        weight[i] -= step_size * first[i] / (math.sqrt(second[i]) + epsilon)


def sgd_update(grad, out_weight, out_velocity, learning_rate, momentum, nesterov):
    """grad, out_weight: (size,); out_velocity: (size,), or (0,) without momentum (then unused)."""
    out_velocity = out_velocity if out_velocity.size else out_weight
    _sgd_kernel[blocks(out_weight.shape[0]), THREADS](out_weight, grad, out_velocity, learning_rate, momentum, nesterov)


def rmsprop_update(grad, out_weight, out_mean_square, learning_rate, rho, epsilon):
    """All (size,); out_weight and out_mean_square read and written in place."""
    _rmsprop_kernel[blocks(out_weight.shape[0]), THREADS](out_weight, grad, out_mean_square, learning_rate, rho, epsilon)


def adam_update(grad, out_weight, out_first, out_second, step_size, beta_1, beta_2, epsilon):
    """All (size,); out_weight, out_first and out_second read and written in place."""
    _adam_kernel[blocks(out_weight.shape[0]), THREADS](out_weight, grad, out_first, out_second, step_size, beta_1, beta_2,
                                                       epsilon)  # fmt: skip
