"""Activation functions by Keras name, each a forward/backward pair on the current backend."""

from fastconv.backends import get_backend


class Activation:
    """One activation: ``forward(z) -> y`` and ``backward(grad_y, y) -> grad_z`` (backward needs only y)."""

    def __init__(self, name):
        self.name = name

    def forward(self, z):
        return getattr(get_backend(), f"{self.name}_forward")(z)

    def backward(self, grad_y, y):
        return getattr(get_backend(), f"{self.name}_backward")(grad_y, y)

    def __repr__(self):
        return self.name


class Softmax(Activation):
    """Softmax over the last axis; the kernels work on (rows, classes) matrices."""

    def forward(self, z):
        shape = tuple(z.shape)
        return get_backend().softmax_forward(z.reshape(-1, shape[-1])).reshape(shape)

    def backward(self, grad_y, y):
        shape = tuple(y.shape)
        return get_backend().softmax_backward(grad_y.reshape(-1, shape[-1]), y.reshape(-1, shape[-1])).reshape(shape)


_ACTIVATIONS = {"relu": Activation("relu"), "sigmoid": Activation("sigmoid"), "softmax": Softmax("softmax")}


def get(identifier):
    """``'relu'``, ``'sigmoid'``, ``'softmax'``, ``'linear'`` or None -> an :class:`Activation` or None (linear)."""
    if identifier is None or identifier == "linear":
        return None
    if isinstance(identifier, Activation):
        return identifier
    if identifier not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {identifier!r}; fastconv has {', '.join(['linear', *_ACTIVATIONS])}")
    return _ACTIVATIONS[identifier]


def serialize(activation):
    return "linear" if activation is None else activation.name
