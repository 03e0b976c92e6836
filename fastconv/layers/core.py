"""Dense, Flatten, Dropout and Activation layers."""

import numpy as np

from fastconv import activations, utils
from fastconv.backends import get_backend
from fastconv.layers.base import Layer, weight_gradients_enabled
from fastconv.shapes import positive_int


class Dense(Layer):
    """y = activation(x @ kernel + bias) over the last axis; kernel (D_in, units)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, input_dim=None, **kwargs):  # fmt: skip
        if input_dim is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_dim,)  # Keras 2's shorthand, as in listing 5.18
        super().__init__(activation=activation, **kwargs)
        self.units = positive_int(units, f"Dense {self.name!r}: units")
        self.use_bias = use_bias
        self.set_weight_options(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
        self.kernel = self.bias = None

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Layer {self.name!r} (Dense) expects input of rank >= 2, got shape {tuple(input_shape)}")
        if self.kernel is not None and input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Layer {self.name!r} expected {self.kernel.shape[0]} input features, got {input_shape[-1]} "
                f"(input shape {tuple(input_shape)})"
            )

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def call(self, x, training):
        shape = tuple(x.shape)  # device arrays' shapes may not take negative indices
        x_rows = x.reshape(-1, shape[-1])
        y = get_backend().dense_forward(x_rows, self.kernel.value, self.bias.value if self.use_bias else None)
        return y.reshape(*shape[:-1], self.units), x

    def backward_call(self, grad_z, x, need_input_grad):
        x_rows = x.reshape(-1, tuple(x.shape)[-1])
        grad_x, grad_kernel, grad_bias = get_backend().dense_backward(
            grad_z.reshape(-1, self.units), x_rows, self.kernel.value, self.use_bias
        )
        if self.trainable and weight_gradients_enabled():
            self.kernel.grad = grad_kernel
            if self.use_bias:
                self.bias.grad = grad_bias
        return grad_x.reshape(x.shape) if need_input_grad else None

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), a view of the NHWC data (Keras' channels_last order)."""

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2 or any(d is None for d in input_shape[1:]):
            raise ValueError(f"Layer {self.name!r} (Flatten) needs fully defined non-batch dimensions, got {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def call(self, x, training):
        return x.reshape(x.shape[0], -1), x.shape

    def backward_call(self, grad_z, input_shape, need_input_grad):
        return grad_z.reshape(input_shape) if need_input_grad else None


class Dropout(Layer):
    """While training, zero each input with probability ``rate`` and scale the rest by 1 / (1 - rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout {self.name!r}: rate must be in [0, 1), got {rate!r}")
        if noise_shape is not None:
            raise ValueError(f"Dropout {self.name!r}: noise_shape is not supported")
        self.rate = float(rate)
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def call(self, x, training):
        if not training or self.rate == 0:
            return x, None
        backend = get_backend()
        rng = self._rng or utils.rng()
        mask = backend.to_device(((rng.random(x.shape) >= self.rate) / (1.0 - self.rate)).astype(np.float32))
        return backend.multiply(x, mask), mask

    def backward_call(self, grad_z, mask, need_input_grad):
        if not need_input_grad:
            return None
        return grad_z if mask is None else get_backend().multiply(grad_z, mask)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Activation(Layer):
    """Applies an activation by name: ``Activation('relu')``."""

    def __init__(self, activation, **kwargs):
        super().__init__(activation=activation, **kwargs)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}
