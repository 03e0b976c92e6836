"""Activation functions by Keras name, each a forward/backward pair on the current backend."""

from fastconv.backends import get_backend


class Activation:
    """One activation: ``forward(z) -> y`` and ``backward(grad_y, y) -> grad_z`` (backward needs only y), each the
    current backend's kernel pair that ``forward_kernel``/``backward_kernel`` pick from it."""

    def __init__(self, name, forward_kernel, backward_kernel):
        self.name = name
        self.forward_kernel, self.backward_kernel = forward_kernel, backward_kernel

    def forward(self, z):
        return self.forward_kernel(get_backend())(z)

    def backward(self, grad_y, y):
        return self.backward_kernel(get_backend())(grad_y, y)

    def __repr__(self):
        return self.name


class Softmax(Activation):
    """Softmax over the last axis; the kernels work on (rows, classes) matrices."""

    def __init__(self):
        super().__init__("softmax", lambda backend: backend.softmax_forward, lambda backend: backend.softmax_backward)

    def forward(self, z):
        shape = tuple(z.shape)
        return get_backend().softmax_forward(z.reshape(-1, shape[-1])).reshape(shape)

    def backward(self, grad_y, y):
        shape = tuple(y.shape)
        return get_backend().softmax_backward(grad_y.reshape(-1, shape[-1]), y.reshape(-1, shape[-1])).reshape(shape)


RELU = Activation("relu", lambda backend: backend.relu_forward, lambda backend: backend.relu_backward)
SIGMOID = Activation("sigmoid", lambda backend: backend.sigmoid_forward, lambda backend: backend.sigmoid_backward)
SOFTMAX = Softmax()
_ACTIVATIONS = {"relu": RELU, "sigmoid": SIGMOID, "softmax": SOFTMAX}


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
