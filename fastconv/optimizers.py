"""Keras' optimizers with Keras' update formulas and defaults.

* SGD: ``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``).
* RMSprop: ``a = rho * a + (1 - rho) * g**2``; ``w -= lr * g / sqrt(a + epsilon)``.
* Adam: ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
  ``w -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + epsilon)``.

The old ``lr=`` spelling of the notes is accepted. Updates are in place on
each trainable weight that has a gradient; a frozen weight never changes.
"""

import numpy as np


class Optimizer:
    def __init__(self, learning_rate=0.01, lr=None, name=None):
        self.learning_rate = float(lr if lr is not None else learning_rate)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = {}

    def slot(self, weight, index=0):
        """Per-weight state (zeros at first), kept while the weight lives."""
        key = (id(weight), index)
        if key not in self._slots:
            self._slots[key] = np.zeros_like(weight.value)
        return self._slots[key]

    def apply(self, weights):
        """One step on every trainable weight that has a gradient; clears the gradients."""
        self.iterations += 1
        for weight in weights:
            if weight.trainable and weight.grad is not None:
                grad = np.asarray(weight.grad, dtype=np.float32)
                if grad.shape != weight.value.shape:
                    raise ValueError(f"gradient of {weight.name} has shape {grad.shape}, the weight {weight.value.shape}")
                self.update(weight, grad)
            weight.grad = None

    def update(self, weight, grad):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def update(self, weight, grad):
        if self.momentum == 0:
            weight.value -= self.learning_rate * grad
            return
        velocity = self.slot(weight)
        velocity *= self.momentum
        velocity -= self.learning_rate * grad
        if self.nesterov:
            weight.value += self.momentum * velocity - self.learning_rate * grad
        else:
            weight.value += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def update(self, weight, grad):
        mean_square = self.slot(weight)
        mean_square *= self.rho
        mean_square += (1 - self.rho) * grad * grad
        weight.value -= self.learning_rate * grad / np.sqrt(mean_square + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, weight, grad):
        first, second = self.slot(weight, 0), self.slot(weight, 1)
        first += (1 - self.beta_1) * (grad - first)
        second += (1 - self.beta_2) * (grad * grad - second)
        step = self.learning_rate * np.sqrt(1 - self.beta_2**self.iterations) / (1 - self.beta_1**self.iterations)
        weight.value -= step * first / (np.sqrt(second) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


_OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if not isinstance(identifier, str) or identifier.lower() not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {identifier!r}; fastconv has {', '.join(_OPTIMIZERS)}")
    return _OPTIMIZERS[identifier.lower()]()


def from_config(class_name, config):
    classes = {cls.__name__: cls for cls in (SGD, RMSprop, Adam)}
    return classes[class_name](**config)
