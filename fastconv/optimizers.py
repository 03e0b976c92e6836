"""Keras' optimizers with Keras' update formulas and defaults.

* SGD: ``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``).
* RMSprop: ``a = rho * a + (1 - rho) * g**2``; ``w -= lr * g / sqrt(a + epsilon)``.
* Adam: ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
  ``w -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + epsilon)``.

The old ``lr=`` spelling of the notes is accepted. Updates are in place on
each trainable weight that has a gradient; a frozen weight never changes.
The arithmetic is the current backend's (``sgd_update``, ``rmsprop_update``,
``adam_update``), so weights and state stay where the backend keeps them.
"""

import numpy as np

from fastconv.backends import get_backend, to_numpy
from fastconv.interrupts import held_interrupts
from fastconv.utils import check_number


def check_learning_rate(value, owner):
    """``value`` as a float >= 0; NaN, infinity, negatives and non-numbers raise ValueError naming ``owner``."""
    return check_number(value, "learning_rate", owner)


def check_epsilon(value, owner):
    """epsilon > 0: with 0 a weight whose gradient and state are 0 would be updated by 0 / 0. (Every setting is
    checked so: a NaN or out-of-range one would turn every weight into NaN at the next step.)"""
    epsilon = check_number(value, "epsilon", owner)
    if epsilon == 0:
        raise ValueError(f"{owner}: epsilon must be > 0 (a weight with zero gradient and state would become 0 / 0 = NaN), got {value!r}")
    return epsilon


class Optimizer:
    slot_names = ()  # Keras 3's names of the per-weight state, in the order of ``slot(weight, index)``
    non_negative_slots = ()  # the slots that hold running means of squares

    def __init__(self, learning_rate=0.01, lr=None, name=None):
        self.learning_rate = check_learning_rate(lr if lr is not None else learning_rate, type(self).__name__)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = {}

    def slot(self, weight, index=0):
        """Per-weight state (zeros at first, on the backend's device), kept while the weight lives."""
        key = (id(weight), index)
        backend = get_backend()
        if key not in self._slots:
            self._slots[key] = backend.zeros(weight.value.shape)
        self._slots[key] = backend.to_device(self._slots[key])
        return self._slots[key]

    def apply(self, weights):
        """One step on every trainable weight that has a gradient; clears the gradients.

        All or nothing: every gradient is checked before the first weight changes, and a Ctrl-C during the step is
        held until the iteration count, every weight and every slot have moved.
        """
        updated = [weight for weight in weights if weight.trainable and weight.grad is not None]
        for weight in updated:
            if weight.grad.shape != weight.value.shape:
                raise ValueError(f"gradient of {weight.name} has shape {weight.grad.shape}, the weight {weight.value.shape}")
        backend = get_backend()
        with held_interrupts():
            self.iterations += 1
            for weight in updated:
                self.update(backend, weight, weight.grad)
            for weight in weights:
                weight.grad = None

    def update(self, backend, weight, grad):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}

    # --- state (saved by fastconv.models.optimizer_state in Keras' layouts) ---------------

    def get_state(self, weights):
        """``(iterations, slots)``: ``slots[k][i]`` is a host copy of slot ``slot_names[k]`` of ``weights[i]`` (changing
        it never changes the optimizer); a slot not yet used is zeros, as when fresh."""
        slots = [
            [np.array(to_numpy(self._slots[(id(w), k)])) if (id(w), k) in self._slots else np.zeros(w.shape, np.float32) for w in weights]
            for k in range(len(self.slot_names))
        ]
        return self.iterations, slots

    def check_state(self, weights, iterations, slots):
        """ValueError unless ``(iterations, slots)`` is a state this optimizer can continue from: a count >= 0, each
        slot of its weight's shape and finite, running means of squares >= 0 (else the next step makes NaN)."""
        owner = type(self).__name__
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"{owner}: the iteration count must be an integer >= 0, got {iterations!r}")
        if len(slots) != len(self.slot_names) or any(len(kind) != len(weights) for kind in slots):
            raise ValueError(f"{owner} state for {len(weights)} weights needs {len(self.slot_names)} slot(s) for each")
        for kind, slot_name in zip(slots, self.slot_names):
            for weight, value in zip(weights, kind):
                if np.shape(value) != tuple(weight.shape):
                    raise ValueError(f"{owner} {slot_name} of {weight.name}: shape {np.shape(value)}, expected {weight.shape}")
                value = np.asarray(value)
                if not np.isfinite(value).all():
                    raise ValueError(f"{owner} {slot_name} of {weight.name} holds NaN or infinity")
                if slot_name in self.non_negative_slots and (value < 0).any():
                    raise ValueError(f"{owner} {slot_name} of {weight.name} holds negative values (min {value.min()}); it is a mean of squares")

    def set_state(self, weights, iterations, slots):
        """Restore what :meth:`get_state` gave for ``weights``: float32 copies of the slots, all or none, after
        :meth:`check_state`."""
        self.check_state(weights, iterations, slots)
        self.iterations = int(iterations)
        self._slots = {
            (id(weight), k): np.array(value, dtype=np.float32) for k, kind in enumerate(slots) for weight, value in zip(weights, kind)
        }


class SGD(Optimizer):
    @property
    def slot_names(self):
        return ("momentum",) if self.momentum else ()

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = check_number(momentum, "momentum", "SGD", 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"SGD: nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def update(self, backend, weight, grad):
        velocity = self.slot(weight) if self.momentum else backend.empty(0)
        backend.sgd_update(weight.value, grad, velocity, self.learning_rate, self.momentum, self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    slot_names = ("velocity",)
    non_negative_slots = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = check_number(rho, "rho", "RMSprop", 0.0, 1.0)
        self.epsilon = check_epsilon(epsilon, "RMSprop")

    def update(self, backend, weight, grad):
        backend.rmsprop_update(weight.value, grad, self.slot(weight), self.learning_rate, self.rho, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    slot_names = ("momentum", "velocity")
    non_negative_slots = ("velocity",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        # beta = 1 divides by 1 - beta**t = 0 at the first step
        self.beta_1 = check_number(beta_1, "beta_1", "Adam", 0.0, 1.0, high_included=False)
        self.beta_2 = check_number(beta_2, "beta_2", "Adam", 0.0, 1.0, high_included=False)
        self.epsilon = check_epsilon(epsilon, "Adam")

    def update(self, backend, weight, grad):
        step = self.learning_rate * np.sqrt(1 - self.beta_2**self.iterations) / (1 - self.beta_1**self.iterations)
        backend.adam_update(weight.value, grad, self.slot(weight, 0), self.slot(weight, 1), step, self.beta_1, self.beta_2, self.epsilon)

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
    """An optimizer from its saved class name and config; ValueError naming what is unknown."""
    classes = {cls.__name__: cls for cls in (SGD, RMSprop, Adam)}
    if class_name not in classes:
        raise ValueError(f"unknown optimizer class {class_name!r}; fastconv has {', '.join(classes)}")
    try:
        return classes[class_name](**config)
    except TypeError as error:
        raise ValueError(f"optimizer {class_name} cannot take the saved config {config}: {error}") from None
