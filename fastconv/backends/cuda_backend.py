"""The ``cuda`` backend: numba.cuda kernels, arrays resident on the GPU.

Its arrays are Numba device arrays. ``to_device`` copies a NumPy array to the
GPU (a device array stays), ``to_host`` copies back; kernels also accept
NumPy inputs and copy them over. Weights, optimizer state and activations stay
on the GPU during ``fit``: per step the batch goes in and the loss and the
outputs needed for the metrics come out.

Loading it without a usable GPU raises ImportError saying why; fastconv never
falls back to another backend silently. Under ``NUMBA_ENABLE_CUDASIM=1`` it
runs on Numba's CUDA simulator (slow; for tests on small shapes).
"""

import numpy as np

from fastconv.backends import checks
from fastconv.backends.compiled import CompiledBackend


def _require_gpu():
    try:
        from numba import cuda
    except Exception as error:  # numba without its CUDA target, or a broken install
        raise ImportError(f"numba.cuda cannot be imported ({error}); install numba-cuda with a CUDA driver") from error
    try:
        available = cuda.is_available()
    except Exception as error:
        raise ImportError(f"numba.cuda cannot reach a GPU: {error}") from error
    if not available:
        raise ImportError(
            "no CUDA GPU is usable here (numba.cuda.is_available() is False: no NVIDIA GPU, no driver, or an "
            "unsupported one); set NUMBA_ENABLE_CUDASIM=1 to run on Numba's simulator"
        )
    return cuda


cuda = _require_gpu()

from fastconv.backends import cuda_kernels  # noqa: E402  (needs the check above first)


class CudaBackend(CompiledBackend):
    """The kernel API of ``fastconv.backends.reference`` on device arrays."""

    def __init__(self):
        super().__init__("cuda", cuda_kernels)

    def to_device(self, array):
        if checks.is_device_array(array):
            return array
        return cuda.to_device(np.ascontiguousarray(array))

    def to_host(self, array):
        return checks.host_array(array)

    def empty(self, shape, dtype=np.float32):
        return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        array = cuda.device_array(shape, dtype=dtype)
        if array.size:
            cuda_kernels.fill(array, 0)
        return array

    def _on_device(self, *arrays):
        return [None if a is None else self.to_device(a) for a in arrays]

    # Kernels accept NumPy inputs too: they are copied to the GPU first (checked there, as device arrays).

    def conv2d_forward(self, x_nhwc, kernel, bias, strides=(1, 1), padding="valid"):
        """x_nhwc: (N, H, W, C); kernel: (KH, KW, C, F); bias: (F,) or None -> y (N, OH, OW, F) device float32."""
        return super().conv2d_forward(*self._on_device(x_nhwc, kernel, bias), strides, padding)

    def conv2d_backward_input(self, grad_out, kernel, input_shape, strides=(1, 1), padding="valid"):
        """grad_out: (N, OH, OW, F); kernel: (KH, KW, C, F) -> grad_x (N, H, W, C) on the device."""
        return super().conv2d_backward_input(*self._on_device(grad_out, kernel), input_shape, strides, padding)

    def conv2d_backward_kernel(self, x_nhwc, grad_out, kernel_shape, strides=(1, 1), padding="valid", with_bias=True):
        """x_nhwc: (N, H, W, C); grad_out: (N, OH, OW, F) -> (grad_kernel, grad_bias or None) on the device."""
        return super().conv2d_backward_kernel(*self._on_device(x_nhwc, grad_out), kernel_shape, strides, padding, with_bias)

    def max_pool2d_forward(self, x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
        """x_nhwc: (N, H, W, C) -> (y, argmax int32) on the device."""
        return super().max_pool2d_forward(self.to_device(x_nhwc), pool_size, strides, padding)

    def max_pool2d_backward(self, grad_out, argmax, input_shape):
        """grad_out, argmax: (N, OH, OW, C) -> grad_x (N, H, W, C) on the device."""
        return super().max_pool2d_backward(*self._on_device(grad_out, argmax), input_shape)

    def avg_pool2d_forward(self, x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
        """x_nhwc: (N, H, W, C) -> y (N, OH, OW, C) on the device."""
        return super().avg_pool2d_forward(self.to_device(x_nhwc), pool_size, strides, padding)

    def avg_pool2d_backward(self, grad_out, input_shape, pool_size=(2, 2), strides=None, padding="valid"):
        """grad_out: (N, OH, OW, C) -> grad_x (N, H, W, C) on the device."""
        return super().avg_pool2d_backward(self.to_device(grad_out), input_shape, pool_size, strides, padding)

    def dense_forward(self, x, kernel, bias):
        """x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,) or None -> y (N, D_out) on the device."""
        return super().dense_forward(*self._on_device(x, kernel, bias))

    def dense_backward(self, grad_out, x, kernel, with_bias=True):
        """-> (grad_x, grad_kernel, grad_bias or None) on the device."""
        return super().dense_backward(*self._on_device(grad_out, x, kernel), with_bias)

    def relu_forward(self, x):
        """max(x, 0), any shape."""
        return super().relu_forward(self.to_device(x))

    def relu_backward(self, grad_out, y):
        """grad_out where y > 0, else 0."""
        return super().relu_backward(*self._on_device(grad_out, y))

    def sigmoid_forward(self, x):
        """1 / (1 + exp(-x)), any shape."""
        return super().sigmoid_forward(self.to_device(x))

    def sigmoid_backward(self, grad_out, y):
        """grad_out * y * (1 - y)."""
        return super().sigmoid_backward(*self._on_device(grad_out, y))

    def softmax_forward(self, x):
        """Row-wise softmax of x: (N, K)."""
        return super().softmax_forward(self.to_device(x))

    def softmax_backward(self, grad_out, y):
        """y * (grad_out - sum(grad_out * y)) row-wise."""
        return super().softmax_backward(*self._on_device(grad_out, y))

    def softmax_cross_entropy(self, logits, targets):
        """logits, targets: (N, K) -> (mean loss, grad_logits on the device)."""
        return super().softmax_cross_entropy(*self._on_device(logits, targets))

    def sigmoid_binary_cross_entropy(self, logits, targets):
        """logits, targets: (N, K) -> (mean loss, grad_logits on the device)."""
        return super().sigmoid_binary_cross_entropy(*self._on_device(logits, targets))

    def multiply(self, a, b):
        """a * b, element-wise, same shapes."""
        a, b = self._on_device(a, b)
        if a.shape != b.shape:
            raise ValueError(f"multiply: shapes {a.shape} and {b.shape} differ")
        out = self.empty(a.shape)
        cuda_kernels.multiply(a.reshape(a.size), b.reshape(b.size), out.reshape(out.size))
        return out

    def sgd_update(self, weight, grad, velocity, learning_rate, momentum, nesterov):
        """In place on device arrays (see fastconv.backends.host_ops for the formula)."""
        cuda_kernels.sgd_update(weight.reshape(weight.size), grad.reshape(grad.size), velocity.reshape(velocity.size),
                                learning_rate, momentum, nesterov)  # fmt: skip

    def rmsprop_update(self, weight, grad, mean_square, learning_rate, rho, epsilon):
        """In place on device arrays."""
        cuda_kernels.rmsprop_update(weight.reshape(weight.size), grad.reshape(grad.size), mean_square.reshape(mean_square.size),
                                    learning_rate, rho, epsilon)  # fmt: skip

    def adam_update(self, weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
        """In place on device arrays."""
        cuda_kernels.adam_update(weight.reshape(weight.size), grad.reshape(grad.size), first.reshape(first.size),
                                 second.reshape(second.size), step_size, beta_1, beta_2, epsilon)  # fmt: skip


backend = CudaBackend()
