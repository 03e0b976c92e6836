"""The optimizers' updates in place on flat float32 arrays, each in one pass, as src_ext/updates.pyx (formulas:
fastconv.backends.host_ops); the arrays a step reads and writes are the ``out_`` ones, after the gradient."""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL


def _check_lengths(op, weight, grad, first, second):
    if not (grad.shape[0] == first.shape[0] == second.shape[0] == weight.shape[0]):
        raise ValueError(
            f"{op}: the weight has {weight.shape[0]} elements, the gradient {grad.shape[0]} and the state "
            f"{first.shape[0]} and {second.shape[0]}"
        )


@njit(**PARALLEL)
def _sgd(weight, grad, velocity, learning_rate, momentum, nesterov):
    lr, mu = np.float32(learning_rate), np.float32(momentum)
    if momentum == 0:
        for i in prange(weight.shape[0]):
            weight[i] -= lr * grad[i]
    else:
        for i in prange(weight.shape[0]):
            step = lr * grad[i]
            velocity[i] = mu * velocity[i] - step
            weight[i] += mu * velocity[i] - step if nesterov else velocity[i]


@njit(**PARALLEL)
def _rmsprop(weight, grad, mean_square, learning_rate, rho, epsilon):
    lr, decay, rest, eps = np.float32(learning_rate), np.float32(rho), np.float32(1 - rho), np.float32(epsilon)
    for i in prange(weight.shape[0]):
        mean_square[i] = decay * mean_square[i] + rest * grad[i] * grad[i]
        weight[i] -= lr * grad[i] / np.sqrt(mean_square[i] + eps)


@njit(**PARALLEL)
def _adam(weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
    step, rest_1, rest_2, eps = np.float32(step_size), np.float32(1 - beta_1), np.float32(1 - beta_2), np.float32(epsilon)
    for i in prange(weight.shape[0]):
        first[i] += rest_1 * (grad[i] - first[i])
        second[i] += rest_2 * (grad[i] * grad[i] - second[i])
        weight[i] -= step * first[i] / (np.sqrt(second[i]) + eps)


def sgd_update(grad, out_weight, out_velocity, learning_rate, momentum, nesterov):
    """out_weight -= lr * grad; with momentum: out_velocity = momentum * out_velocity - lr * grad, out_weight +=
    out_velocity (Nesterov: out_weight += momentum * out_velocity - lr * grad). grad, out_weight: (size,);
    out_velocity: (size,), or (0,) without momentum."""
    _check_lengths("sgd_update", out_weight, grad, out_velocity if momentum else out_weight, out_weight)
    _sgd(out_weight, grad, out_velocity, float(learning_rate), float(momentum), bool(nesterov))


def rmsprop_update(grad, out_weight, out_mean_square, learning_rate, rho, epsilon):
    """out_mean_square = rho * out_mean_square + (1 - rho) * grad**2; out_weight -= lr * grad /
    sqrt(out_mean_square + epsilon); all (size,)."""
    _check_lengths("rmsprop_update", out_weight, grad, out_mean_square, out_weight)
    _rmsprop(out_weight, grad, out_mean_square, float(learning_rate), float(rho), float(epsilon))


def adam_update(grad, out_weight, out_first, out_second, step_size, beta_1, beta_2, epsilon):
    """out_first += (1 - beta_1)(grad - out_first); out_second += (1 - beta_2)(grad**2 - out_second);
    out_weight -= step_size * out_first / (sqrt(out_second) + epsilon); all (size,)."""
    _check_lengths("adam_update", out_weight, grad, out_first, out_second)
    _adam(out_weight, grad, out_first, out_second, float(step_size), float(beta_1), float(beta_2), float(epsilon))
