"""The reference's backward passes against centred finite differences, in float64.

The reference is the specification the compiled backends are held to, so its
gradients are checked from first principles: for a random upstream gradient
G, the directional derivative of sum(forward(x) * G) must equal what the
backward pass returns. A last test chains conv -> relu -> max pool -> dense ->
softmax cross-entropy through each compiled backend and compares the kernel
gradient with finite differences of the whole network.
"""

import numpy as np
import pytest

from conftest import relative_error
from fastconv.backends import load_backend, to_numpy

reference = load_backend("reference")
STEP = 1e-6
GRADIENT_RTOL = 1e-6


def numerical_gradient(scalar_function, x):
    """Centred differences of a scalar function of the float64 array x, one element at a time."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + STEP
        plus = scalar_function(x)
        x[index] = saved - STEP
        minus = scalar_function(x)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * STEP)
    return grad


def assert_gradient(analytic, scalar_function, x, what):
    error = relative_error(analytic, numerical_gradient(scalar_function, x))
    assert error < GRADIENT_RTOL, f"{what}: relative error {error:.2e} against finite differences"


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, padding",
    [((2, 6, 5, 3), (3, 2, 3, 4), (1, 1), "valid"), ((2, 7, 6, 2), (3, 3, 2, 3), (2, 2), "same"), ((1, 5, 6, 2), (2, 4, 2, 2), (3, 2), "same")],
)
def test_conv2d_gradients(x_shape, kernel_shape, strides, padding):
    rng = np.random.default_rng(1)
    x, kernel, bias = rng.standard_normal(x_shape), rng.standard_normal(kernel_shape), rng.standard_normal(kernel_shape[3])
    grad_out = rng.standard_normal(reference.conv2d_forward(x, kernel, bias, strides, padding).shape)

    def loss(x=x, kernel=kernel, bias=bias):
        return (reference.conv2d_forward(x, kernel, bias, strides, padding) * grad_out).sum()

    grad_kernel, grad_bias = reference.conv2d_backward_kernel(x, grad_out, kernel_shape, strides, padding)
    assert_gradient(reference.conv2d_backward_input(grad_out, kernel, x_shape, strides, padding), lambda v: loss(x=v), x, "grad_x")
    assert_gradient(grad_kernel, lambda v: loss(kernel=v), kernel, "grad_kernel")
    assert_gradient(grad_bias, lambda v: loss(bias=v), bias, "grad_bias")


@pytest.mark.parametrize("pool_size, strides, padding", [((2, 2), None, "valid"), ((3, 2), (2, 1), "same"), ((2, 3), (1, 2), "valid")])
def test_pool2d_gradients(pool_size, strides, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 6, 3))
    y, argmax = reference.max_pool2d_forward(x, pool_size, strides, padding)
    grad_out = rng.standard_normal(y.shape)
    assert_gradient(
        reference.max_pool2d_backward(grad_out, argmax, x.shape),
        lambda v: (reference.max_pool2d_forward(v, pool_size, strides, padding)[0] * grad_out).sum(),
        x,
        "max pool grad_x",
    )
    assert_gradient(
        reference.avg_pool2d_backward(grad_out, x.shape, pool_size, strides, padding),
        lambda v: (reference.avg_pool2d_forward(v, pool_size, strides, padding) * grad_out).sum(),
        x,
        "avg pool grad_x",
    )


def test_dense_gradients():
    rng = np.random.default_rng(3)
    x, kernel, bias = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    grad_out = rng.standard_normal((4, 3))
    grad_x, grad_kernel, grad_bias = reference.dense_backward(grad_out, x, kernel)
    assert_gradient(grad_x, lambda v: (reference.dense_forward(v, kernel, bias) * grad_out).sum(), x, "grad_x")
    assert_gradient(grad_kernel, lambda v: (reference.dense_forward(x, v, bias) * grad_out).sum(), kernel, "grad_kernel")
    assert_gradient(grad_bias, lambda v: (reference.dense_forward(x, kernel, v) * grad_out).sum(), bias, "grad_bias")


@pytest.mark.parametrize("name", ["relu", "sigmoid", "softmax"])
def test_activation_gradients(name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5))
    forward, backward = getattr(reference, f"{name}_forward"), getattr(reference, f"{name}_backward")
    grad_out = rng.standard_normal(x.shape)
    assert_gradient(backward(grad_out, forward(x)), lambda v: (forward(v) * grad_out).sum(), x, name)


def test_loss_gradients():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 6)) * 3
    one_hot = np.eye(6)[rng.integers(0, 6, 4)]
    assert_gradient(reference.softmax_cross_entropy(logits, one_hot)[1], lambda v: reference.softmax_cross_entropy(v, one_hot)[0], logits, "softmax CE")
    soft = rng.dirichlet(np.ones(6), 4)
    assert_gradient(reference.softmax_cross_entropy(logits, soft)[1], lambda v: reference.softmax_cross_entropy(v, soft)[0], logits, "softmax CE, soft targets")
    binary = rng.integers(0, 2, (4, 6)).astype(np.float64)
    assert_gradient(
        reference.sigmoid_binary_cross_entropy(logits, binary)[1], lambda v: reference.sigmoid_binary_cross_entropy(v, binary)[0], logits, "binary CE"
    )


def _network_loss(backend, x, conv_kernel, conv_bias, dense_kernel, targets):
    """conv 3x3 'same' -> relu -> 2x2 max pool -> flatten -> dense -> softmax cross-entropy; also returns the cache."""
    conv_out = backend.conv2d_forward(x, conv_kernel, conv_bias, (1, 1), "same")
    relu_out = backend.relu_forward(conv_out)
    pooled, argmax = backend.max_pool2d_forward(relu_out, (2, 2), None, "valid")
    flat = pooled.reshape(pooled.shape[0], -1)
    logits = backend.dense_forward(flat, dense_kernel, None)
    loss, grad_logits = backend.softmax_cross_entropy(logits, targets)
    return loss, (relu_out, pooled, argmax, flat, grad_logits)


def test_network_gradient_through_each_backend(any_backend, any_backend_name):
    """Backpropagation through a small convnet on one backend equals finite differences of the float64 network."""
    backend = any_backend
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    conv_kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    conv_bias = rng.standard_normal(4).astype(np.float32)
    dense_kernel = rng.standard_normal((3 * 3 * 4, 5)).astype(np.float32)
    targets = np.eye(5, dtype=np.float32)[[0, 3, 1]]

    _, (relu_out, pooled, argmax, flat, grad_logits) = _network_loss(backend, x, conv_kernel, conv_bias, dense_kernel, targets)
    grad_flat, _, _ = backend.dense_backward(grad_logits, flat, dense_kernel, False)
    grad_relu = backend.max_pool2d_backward(grad_flat.reshape(pooled.shape), argmax, relu_out.shape)
    grad_conv = backend.relu_backward(grad_relu, relu_out)
    grad_kernel, grad_bias = backend.conv2d_backward_kernel(x, grad_conv, conv_kernel.shape, (1, 1), "same")

    as64 = [a.astype(np.float64) for a in (x, conv_kernel, conv_bias, dense_kernel, targets)]

    def network(kernel=as64[1], bias=as64[2]):
        return _network_loss(reference, as64[0], kernel, bias, as64[3], as64[4])[0]

    kernel64, bias64 = as64[1].copy(), as64[2].copy()
    rtol = GRADIENT_RTOL if any_backend_name == "reference" else 1e-5
    grad_kernel, grad_bias = to_numpy(grad_kernel), to_numpy(grad_bias)
    assert relative_error(grad_kernel, numerical_gradient(lambda v: network(kernel=v), kernel64)) < rtol
    assert relative_error(grad_bias, numerical_gradient(lambda v: network(bias=v), bias64)) < rtol
