"""The layers the benchmarks time, and one training step of each on every implementation.

A step is what one layer costs in a training iteration: forward, then the
gradients of its kernel and bias and, except for a network's first layer
(whose input needs none, as in any framework), of its input.
"""

from dataclasses import dataclass

import numpy as np

from fastconv.backends import load_backend
from fastconv.shapes import window_geometry

try:
    import torch
except ImportError:  # torch is the optional [bench] extra
    torch = None


@dataclass(frozen=True)
class ConvLayer:
    name: str
    input_shape: tuple  # (N, H, W, C)
    filters: int
    kernel: int = 3
    first: bool = False

    @property
    def kernel_shape(self):
        return (self.kernel, self.kernel, self.input_shape[3], self.filters)

    def output_shape(self):
        g = window_geometry(self.input_shape[1:3], (self.kernel, self.kernel), (1, 1), "valid")
        return (self.input_shape[0], g.out_h, g.out_w, self.filters)

    def flops(self):
        """Multiply-adds x 2 of forward, grad-kernel and (unless first) grad-input: 2 or 3 equal products."""
        n, oh, ow, f = self.output_shape()
        forward = 2 * n * oh * ow * f * self.kernel * self.kernel * self.input_shape[3]
        return forward * (2 if self.first else 3)


@dataclass(frozen=True)
class PoolLayer:
    name: str
    input_shape: tuple
    pool: int = 2

    def flops(self):
        return int(np.prod(self.input_shape))  # one comparison per input element; for reference only


# The notes' convnets: MNIST (listing 5.1, batch 64) and cats vs dogs (listing 5.5, batch 32).
MNIST = [
    ConvLayer("mnist conv1 28x28x1->32", (64, 28, 28, 1), 32, first=True),
    PoolLayer("mnist pool1 26x26x32", (64, 26, 26, 32)),
    ConvLayer("mnist conv2 13x13x32->64", (64, 13, 13, 32), 64),
    PoolLayer("mnist pool2 11x11x64", (64, 11, 11, 64)),
    ConvLayer("mnist conv3 5x5x64->64", (64, 5, 5, 64), 64),
]
CATS_DOGS = [
    ConvLayer("catsdogs conv1 150x150x3->32", (32, 150, 150, 3), 32, first=True),
    PoolLayer("catsdogs pool1 148x148x32", (32, 148, 148, 32)),
    ConvLayer("catsdogs conv2 74x74x32->64", (32, 74, 74, 32), 64),
    PoolLayer("catsdogs pool2 72x72x64", (32, 72, 72, 64)),
    ConvLayer("catsdogs conv3 36x36x64->128", (32, 36, 36, 64), 128),
    PoolLayer("catsdogs pool3 34x34x128", (32, 34, 34, 128)),
    ConvLayer("catsdogs conv4 17x17x128->128", (32, 17, 17, 128), 128),
    PoolLayer("catsdogs pool4 15x15x128", (32, 15, 15, 128)),
]
LAYERS = MNIST + CATS_DOGS
IMPLEMENTATIONS = ("cython", "numba", "torch", "reference")


def make_step(layer, implementation, seed=0, backend=None):
    """A zero-argument function running one training step of ``layer`` on ``implementation`` (or on ``backend``, a
    backend object, when given)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape).astype(np.float32)
    if implementation == "torch":
        return _torch_step(layer, x, rng)
    backend = backend or load_backend(implementation)
    if isinstance(layer, ConvLayer):
        kernel = (rng.standard_normal(layer.kernel_shape) * 0.1).astype(np.float32)
        bias = rng.standard_normal(layer.filters).astype(np.float32)
        grad_out = rng.standard_normal(layer.output_shape()).astype(np.float32)

        def conv_step():
            backend.conv2d_forward(x, kernel, bias)
            backend.conv2d_backward_kernel(x, grad_out, layer.kernel_shape)
            if not layer.first:
                backend.conv2d_backward_input(grad_out, kernel, layer.input_shape)

        return conv_step

    y, argmax = backend.max_pool2d_forward(x, layer.pool)
    grad_out = rng.standard_normal(y.shape).astype(np.float32)

    def pool_step():
        _, saved_argmax = backend.max_pool2d_forward(x, layer.pool)
        # the window given, as MaxPooling2D gives it: non-overlapping windows are written directly, not scattered
        backend.max_pool2d_backward(grad_out, saved_argmax, layer.input_shape, None, layer.pool)

    return pool_step


def _torch_step(layer, x_nhwc, rng):
    """The same step in PyTorch, NCHW (its default layout), gradients cleared each time."""
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    x.requires_grad_(not getattr(layer, "first", False))
    if isinstance(layer, ConvLayer):
        module = torch.nn.Conv2d(layer.input_shape[3], layer.filters, layer.kernel)
    else:
        module = torch.nn.MaxPool2d(layer.pool)
    with torch.no_grad():
        grad_out = torch.from_numpy(rng.standard_normal(module(x).shape).astype(np.float32))

    def torch_step():
        for tensor in (x, *module.parameters()):
            tensor.grad = None
        module(x).backward(grad_out)

    return torch_step
