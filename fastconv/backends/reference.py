"""The reference backend: plain NumPy in float64, written to be read.

This module is the specification. Every compiled backend is tested against
it, and its own backward passes are tested against finite differences. It
favours clarity over speed: convolution is a sum over kernel offsets of
matrix products, pooling a loop over windows.

Layout is NHWC (Keras ``channels_last``); kernels are ``(KH, KW, C_in, C_out)``.
Inputs may be any floating dtype; results are float64.
"""

import numpy as np

from fastconv.backends import checks, host_ops

name = "reference"
STRICT = False


def to_device(array):
    """This backend's arrays are NumPy arrays: device arrays of another backend are copied back."""
    return checks.host_array(array)


def to_host(array):
    """Return ``array`` as a NumPy array (identity on CPU backends)."""
    return checks.host_array(array)


def empty(shape, dtype=np.float32):
    """An uninitialised array of this backend."""
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype=np.float32):
    """A zero-filled array of this backend (optimizer state)."""
    return np.zeros(shape, dtype=dtype)


# Element-wise products and optimizer updates: plain NumPy, in place, shared with the compiled backends.
multiply = host_ops.multiply
sgd_update = host_ops.sgd_update
rmsprop_update = host_ops.rmsprop_update
adam_update = host_ops.adam_update


def _pad(x_nhwc, geometry, value=0.0):
    return np.pad(
        np.asarray(x_nhwc, dtype=np.float64),
        ((0, 0), (geometry.pad_top, geometry.pad_bottom), (geometry.pad_left, geometry.pad_right), (0, 0)),
        constant_values=value,
    )


def _window(x_padded, row, col, geometry, strides):
    """The input pixels that kernel offset (row, col) meets at every output position: (N, OH, OW, C)."""
    stride_h, stride_w = strides
    return x_padded[
        :,
        row : row + stride_h * (geometry.out_h - 1) + 1 : stride_h,
        col : col + stride_w * (geometry.out_w - 1) + 1 : stride_w,
        :,
    ]


# --- convolution -----------------------------------------------------------


def conv2d_forward(x_nhwc, kernel, bias, strides=(1, 1), padding="valid", relu=False):
    """y[n, i, j, f] = bias[f] + sum_{r, s, c} x_pad[n, i*SH + r, j*SW + s, c] * kernel[r, s, c, f], then
    max(y, 0) if ``relu`` (as relu_forward: NaN stays NaN).

    x_nhwc: (N, H, W, C); kernel: (KH, KW, C, F); bias: (F,) or None.
    Returns y: (N, OH, OW, F) float64.
    """
    strides, _, geometry = checks.check_conv2d_forward(x_nhwc, kernel, bias, strides, padding, STRICT)
    x_padded = _pad(x_nhwc, geometry)
    kernel = np.asarray(kernel, dtype=np.float64)
    y = np.zeros((x_nhwc.shape[0], geometry.out_h, geometry.out_w, kernel.shape[3]))
    for row in range(kernel.shape[0]):
        for col in range(kernel.shape[1]):
            y += _window(x_padded, row, col, geometry, strides) @ kernel[row, col]
    if bias is not None:
        y += bias
    return np.maximum(y, 0.0) if relu else y


def conv2d_backward_input(grad_out, kernel, input_shape, strides=(1, 1), padding="valid"):
    """Gradient of the loss with respect to the convolution's input.

    grad_out: (N, OH, OW, F); kernel: (KH, KW, C, F); input_shape: (N, H, W, C).
    Returns grad_x: (N, H, W, C) float64.
    """
    input_shape, (strides, _, geometry) = checks.check_conv2d_backward_input(
        grad_out, kernel, input_shape, strides, padding, STRICT
    )
    n, height, width, channels = input_shape
    grad_padded = np.zeros((n, height + geometry.pad_top + geometry.pad_bottom, width + geometry.pad_left + geometry.pad_right, channels))
    grad_out = np.asarray(grad_out, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    for row in range(kernel.shape[0]):
        for col in range(kernel.shape[1]):
            _window(grad_padded, row, col, geometry, strides)[...] += grad_out @ kernel[row, col].T
    return grad_padded[:, geometry.pad_top : geometry.pad_top + height, geometry.pad_left : geometry.pad_left + width, :]


def conv2d_backward_kernel(x_nhwc, grad_out, kernel_shape, strides=(1, 1), padding="valid", with_bias=True):
    """Gradients with respect to the kernel and the bias.

    x_nhwc: (N, H, W, C); grad_out: (N, OH, OW, F); kernel_shape: (KH, KW, C, F).
    Returns (grad_kernel (KH, KW, C, F), grad_bias (F,) or None), float64.
    """
    kernel_shape, (strides, _, geometry) = checks.check_conv2d_backward_kernel(
        x_nhwc, grad_out, kernel_shape, strides, padding, STRICT
    )
    x_padded = _pad(x_nhwc, geometry)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    grad_kernel = np.zeros(kernel_shape)
    for row in range(kernel_shape[0]):
        for col in range(kernel_shape[1]):
            grad_kernel[row, col] = np.einsum("nhwc,nhwf->cf", _window(x_padded, row, col, geometry, strides), grad_out)
    grad_bias = grad_out.sum(axis=(0, 1, 2)) if with_bias else None
    return grad_kernel, grad_bias


# --- pooling ---------------------------------------------------------------


def _clip_window(i, j, strides, pool_size, geometry, input_hw):
    """Rows [r0, r1) and columns [c0, c1) of the real (unpadded) input under output pixel (i, j)."""
    top = i * strides[0] - geometry.pad_top
    left = j * strides[1] - geometry.pad_left
    return max(top, 0), min(top + pool_size[0], input_hw[0]), max(left, 0), min(left + pool_size[1], input_hw[1])


def max_pool2d_forward(x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
    """y[n, i, j, c] = max of x over the window of output pixel (i, j); padding never wins.

    x_nhwc: (N, H, W, C). Returns (y (N, OH, OW, C) float64, argmax (N, OH, OW, C) int32),
    argmax holding the flat index ``row * W + col`` of the winner in its input plane,
    which is what the backward pass needs.
    """
    pool_size, strides, _, geometry = checks.check_pool2d_forward("max_pool2d_forward", x_nhwc, pool_size, strides, padding, STRICT)
    n, height, width, channels = x_nhwc.shape
    y = np.empty((n, geometry.out_h, geometry.out_w, channels))
    argmax = np.empty(y.shape, dtype=np.int32)
    for i in range(geometry.out_h):
        for j in range(geometry.out_w):
            r0, r1, c0, c1 = _clip_window(i, j, strides, pool_size, geometry, (height, width))
            window = np.asarray(x_nhwc[:, r0:r1, c0:c1, :], dtype=np.float64).reshape(n, -1, channels)
            best = window.argmax(axis=1)
            y[:, i, j, :] = np.take_along_axis(window, best[:, None, :], axis=1)[:, 0, :]
            best_row, best_col = np.divmod(best, c1 - c0)
            argmax[:, i, j, :] = (r0 + best_row) * width + (c0 + best_col)
    return y, argmax


def max_pool2d_backward(grad_out, argmax, input_shape, pooled_relu=None, pool_size=None, strides=None, padding="valid"):
    """Route each output gradient to the input pixel that won its window.

    grad_out, argmax: (N, OH, OW, C); input_shape: (N, H, W, C). Returns grad_x float64. With ``pooled_relu``, the
    pool's own output (N, OH, OW, C) when its input was a ReLU's output, it returns the gradient of the ReLU's input
    instead: the pooled values are the ReLU's outputs at the winners, so relu_backward(grad_out, pooled_relu) routed
    back equals relu_backward of the routed gradient, computed on the pool's small output. ``pool_size``,
    ``strides``, ``padding``: the forward pass's window, which the compiled kernels may use to write each window
    directly; it does not change the result, and when given it is checked against the shapes.
    """
    if pool_size is not None:
        checks.check_pool2d_backward("max_pool2d_backward", grad_out, input_shape, pool_size, strides, padding, STRICT)
    if pooled_relu is not None:
        grad_out = relu_backward(grad_out, pooled_relu)
    input_shape = checks.check_max_pool2d_backward(grad_out, argmax, input_shape, STRICT)
    n, height, width, channels = input_shape
    grad_planes = np.zeros((n, height * width, channels))
    sample = np.arange(n)[:, None, None, None]
    channel = np.arange(channels)[None, None, None, :]
    np.add.at(grad_planes, (sample, argmax, channel), np.asarray(grad_out, dtype=np.float64))
    return grad_planes.reshape(input_shape)


def avg_pool2d_forward(x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
    """y[n, i, j, c] = mean of the real (unpadded) inputs in the window of (i, j), as Keras does.

    x_nhwc: (N, H, W, C). Returns y (N, OH, OW, C) float64.
    """
    pool_size, strides, _, geometry = checks.check_pool2d_forward("avg_pool2d_forward", x_nhwc, pool_size, strides, padding, STRICT)
    n, height, width, channels = x_nhwc.shape
    y = np.empty((n, geometry.out_h, geometry.out_w, channels))
    for i in range(geometry.out_h):
        for j in range(geometry.out_w):
            r0, r1, c0, c1 = _clip_window(i, j, strides, pool_size, geometry, (height, width))
            y[:, i, j, :] = np.asarray(x_nhwc[:, r0:r1, c0:c1, :], dtype=np.float64).mean(axis=(1, 2))
    return y


def avg_pool2d_backward(grad_out, input_shape, pool_size=(2, 2), strides=None, padding="valid"):
    """Spread each output gradient evenly over the real inputs of its window.

    grad_out: (N, OH, OW, C); input_shape: (N, H, W, C). Returns grad_x float64.
    """
    input_shape, (pool_size, strides, _, geometry) = checks.check_pool2d_backward(
        "avg_pool2d_backward", grad_out, input_shape, pool_size, strides, padding, STRICT
    )
    grad_x = np.zeros(input_shape)
    for i in range(geometry.out_h):
        for j in range(geometry.out_w):
            r0, r1, c0, c1 = _clip_window(i, j, strides, pool_size, geometry, input_shape[1:3])
            share = np.asarray(grad_out[:, i, j, :], dtype=np.float64) / ((r1 - r0) * (c1 - c0))
            grad_x[:, r0:r1, c0:c1, :] += share[:, None, None, :]
    return grad_x


# --- dense -----------------------------------------------------------------


def dense_forward(x, kernel, bias):
    """y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,) or None."""
    checks.check_dense_forward(x, kernel, bias, STRICT)
    y = np.asarray(x, dtype=np.float64) @ np.asarray(kernel, dtype=np.float64)
    return y if bias is None else y + bias


def dense_backward(grad_out, x, kernel, with_bias=True):
    """Returns (grad_x (N, D_in), grad_kernel (D_in, D_out), grad_bias (D_out,) or None), float64."""
    checks.check_dense_backward(grad_out, x, kernel, STRICT)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    grad_x = grad_out @ np.asarray(kernel, dtype=np.float64).T
    grad_kernel = np.asarray(x, dtype=np.float64).T @ grad_out
    return grad_x, grad_kernel, grad_out.sum(axis=0) if with_bias else None


# --- activations -----------------------------------------------------------


def relu_forward(x):
    """max(x, 0), any shape."""
    checks.check_array("relu_forward", "x", x, None, STRICT)
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def relu_backward(grad_out, y):
    """grad_out where the forward output y was positive, else 0."""
    checks.check_same_shape("relu_backward", [("grad_out", grad_out), ("y", y)], None, STRICT)
    return np.where(np.asarray(y) > 0, np.asarray(grad_out, dtype=np.float64), 0.0)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), any shape."""
    checks.check_array("sigmoid_forward", "x", x, None, STRICT)
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def sigmoid_backward(grad_out, y):
    """grad_out * y * (1 - y), y being the forward output."""
    checks.check_same_shape("sigmoid_backward", [("grad_out", grad_out), ("y", y)], None, STRICT)
    y = np.asarray(y, dtype=np.float64)
    return np.asarray(grad_out, dtype=np.float64) * y * (1.0 - y)


def softmax_forward(x):
    """Row-wise softmax of x: (N, K)."""
    checks.check_array("softmax_forward", "x", x, 2, STRICT)
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def softmax_backward(grad_out, y):
    """Vector-Jacobian product of the row-wise softmax: y * (grad_out - sum(grad_out * y))."""
    checks.check_same_shape("softmax_backward", [("grad_out", grad_out), ("y", y)], 2, STRICT)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return y * (grad_out - (grad_out * y).sum(axis=1, keepdims=True))


# --- fused losses ----------------------------------------------------------


def softmax_cross_entropy(logits, targets):
    """Mean over the batch of -sum_k targets * log softmax(logits), and its gradient.

    logits, targets: (N, K); each targets row a distribution (one-hot for labels).
    Returns (loss float, grad_logits (N, K) float64) where
    grad_logits = (softmax(logits) * sum_k targets - targets) / N.
    """
    checks.check_loss_inputs("softmax_cross_entropy", logits, targets, STRICT)
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    batch = logits.shape[0]
    loss = -(targets * log_probs).sum() / batch
    grad = (np.exp(log_probs) * targets.sum(axis=1, keepdims=True) - targets) / batch
    return float(loss), grad


def sigmoid_binary_cross_entropy(logits, targets):
    """Mean over all elements of the binary cross-entropy of sigmoid(logits), and its gradient.

    logits, targets: (N, K), targets in [0, 1]. The loss per element is written
    max(z, 0) - z * t + log(1 + exp(-|z|)), which never overflows.
    Returns (loss float, grad_logits (N, K) float64) = (sigmoid(z) - t) / (N * K).
    """
    checks.check_loss_inputs("sigmoid_binary_cross_entropy", logits, targets, STRICT)
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    loss = (np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean()
    grad = (1.0 / (1.0 + np.exp(-z)) - t) / z.size
    return float(loss), grad
