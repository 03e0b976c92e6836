"""Conv2D, Keras' arguments and defaults, NHWC."""

from fastconv import activations
from fastconv.backends import get_backend
from fastconv.layers.base import Layer, check_channels_last, check_image_rank, weight_gradients_enabled
from fastconv.shapes import normalize_pair, normalize_padding, output_hw, positive_int


class Conv2D(Layer):
    """2-D convolution: kernel (KH, KW, C_in, filters), bias (filters,), then the activation.

    ``Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1))`` as in Keras.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, data_format=None, **kwargs):  # fmt: skip
        super().__init__(activation=activation, **kwargs)
        self.filters = positive_int(filters, f"Conv2D {self.name!r}: filters")
        check_channels_last(self, data_format)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size")
        self.strides = normalize_pair(strides, "strides")
        self.padding = normalize_padding(padding)
        self.use_bias = use_bias
        self.set_weight_options(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
        self.kernel = self.bias = None

    def check_input_shape(self, input_shape):
        check_image_rank(self, input_shape)
        if self.kernel is not None and input_shape[3] != self.kernel.shape[2]:
            raise ValueError(
                f"Layer {self.name!r} expected {self.kernel.shape[2]} input channels, got {input_shape[3]} "
                f"(input shape {tuple(input_shape)})"
            )
        try:
            output_hw(input_shape[1:3], self.kernel_size, self.strides, self.padding)
        except ValueError:
            raise ValueError(
                f"Layer {self.name!r}: kernel {self.kernel_size} is larger than its input {tuple(input_shape[1:3])} "
                f"(input shape {tuple(input_shape)}, padding {self.padding!r})"
            ) from None

    def build(self, input_shape):
        kernel_shape = (*self.kernel_size, input_shape[3], self.filters)
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)
        self.activation_in_call = self.activation is activations.RELU

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *output_hw(input_shape[1:3], self.kernel_size, self.strides, self.padding), self.filters)

    def call(self, x, training):
        """x -> (conv(x) + bias, x); max(., 0) applied as the convolution writes it where the activation is a ReLU
        (``activation_in_call``: one pass over the activation instead of two; its backward is the usual
        relu_backward on that output)."""
        bias = self.bias.value if self.use_bias else None
        relu = self.activation_in_call
        return get_backend().conv2d_forward(x, self.kernel.value, bias, self.strides, self.padding, relu=relu), x

    def backward_call(self, grad_z, x, need_input_grad):
        backend = get_backend()
        if self.trainable and weight_gradients_enabled():
            self.kernel.grad, grad_bias = backend.conv2d_backward_kernel(
                x, grad_z, self.kernel.shape, self.strides, self.padding, self.use_bias
            )
            if self.use_bias:
                self.bias.grad = grad_bias
        if not need_input_grad:
            return None
        return backend.conv2d_backward_input(grad_z, self.kernel.value, x.shape, self.strides, self.padding)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }
