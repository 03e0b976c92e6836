"""Element-wise products and optimizer updates on NumPy arrays, in place: the formulas, as the reference backend runs
them (in float64 in the kernel tests) and as the compiled backends' ``updates`` kernels must match.

The formulas are Keras' (see ``fastconv.optimizers``); ``multiply`` also serves the CPU backends (dropout masks).
Every update changes ``weight`` (and its state arrays) in place and returns nothing.
"""

import numpy as np


def multiply(a, b):
    """a * b, element-wise, same shapes (dropout masks)."""
    if a.shape != b.shape:
        raise ValueError(f"multiply: shapes {a.shape} and {b.shape} differ")
    return a * b


def sgd_update(weight, grad, velocity, learning_rate, momentum, nesterov):
    """v = momentum * v - lr * g; w += v (Nesterov: w += momentum * v - lr * g). No momentum: w -= lr * g."""
    if momentum == 0:
        weight -= learning_rate * grad
        return
    velocity *= momentum
    velocity -= learning_rate * grad
    if nesterov:
        weight += momentum * velocity - learning_rate * grad
    else:
        weight += velocity


def rmsprop_update(weight, grad, mean_square, learning_rate, rho, epsilon):
    """a = rho * a + (1 - rho) * g**2; w -= lr * g / sqrt(a + epsilon)."""
    mean_square *= rho
    mean_square += (1 - rho) * grad * grad
    weight -= learning_rate * grad / np.sqrt(mean_square + epsilon)


def adam_update(weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
    """m += (1 - b1)(g - m); v += (1 - b2)(g**2 - v); w -= step_size * m / (sqrt(v) + epsilon).

    ``step_size`` is lr * sqrt(1 - b2**t) / (1 - b1**t), computed once per step by the optimizer.
    """
    first += (1 - beta_1) * (grad - first)
    second += (1 - beta_2) * (grad * grad - second)
    weight -= step_size * first / (np.sqrt(second) + epsilon)
