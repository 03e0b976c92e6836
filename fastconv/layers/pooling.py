"""MaxPooling2D and AveragePooling2D (Keras' arguments and defaults: strides default to the pool size), and their
global forms GlobalMaxPooling2D and GlobalAveragePooling2D."""

from fastconv.backends import get_backend
from fastconv.layers.base import Layer, check_channels_last, check_image_rank
from fastconv.shapes import normalize_pair, normalize_padding, output_hw


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_channels_last(self, data_format)
        self.pool_size = normalize_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides")
        self.padding = normalize_padding(padding)

    def check_input_shape(self, input_shape):
        check_image_rank(self, input_shape)
        try:
            output_hw(input_shape[1:3], self.pool_size, self.strides, self.padding)
        except ValueError:
            raise ValueError(
                f"Layer {self.name!r}: pool {self.pool_size} is larger than its input {tuple(input_shape[1:3])} "
                f"(input shape {tuple(input_shape)})"
            ) from None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *output_hw(input_shape[1:3], self.pool_size, self.strides, self.padding), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Maximum over each window; the backward pass routes the gradient to the winner."""

    def call(self, x, training):
        y, argmax = get_backend().max_pool2d_forward(x, self.pool_size, self.strides, self.padding)
        return y, (argmax, x.shape, y)

    def backward_call(self, grad_z, cache, need_input_grad):
        argmax, input_shape, _ = cache
        if not need_input_grad:
            return None
        return get_backend().max_pool2d_backward(grad_z, argmax, input_shape, None, *self._window())

    def _window(self):
        return self.pool_size, self.strides, self.padding

    def backward_through_relu(self, grad_y, cache):
        """The gradient of the pre-activation of the ReLU layer before this pool, in one pass: the mask is applied to
        the pooled gradient (its values are the ReLU's outputs at the winners), and that layer skips its own
        relu_backward over the whole activation (``Model.backward`` pairs them)."""
        (argmax, input_shape, y), _ = cache
        return get_backend().max_pool2d_backward(grad_y, argmax, input_shape, y, *self._window())


class AveragePooling2D(_Pooling2D):
    """Mean over each window's real (unpadded) pixels."""

    def call(self, x, training):
        return get_backend().avg_pool2d_forward(x, self.pool_size, self.strides, self.padding), x.shape

    def backward_call(self, grad_z, input_shape, need_input_grad):
        if not need_input_grad:
            return None
        return get_backend().avg_pool2d_backward(grad_z, input_shape, self.pool_size, self.strides, self.padding)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    """Pool over all of height x width, (N, H, W, C) -> (N, C): the windowed kernels with one window per map."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_channels_last(self, data_format)
        self.keepdims = bool(keepdims)

    def check_input_shape(self, input_shape):
        check_image_rank(self, input_shape)

    def compute_output_shape(self, input_shape):
        batch, channels = input_shape[0], input_shape[3]
        return (batch, 1, 1, channels) if self.keepdims else (batch, channels)

    def _output(self, y_n11c):
        shape = tuple(y_n11c.shape)
        return y_n11c if self.keepdims else y_n11c.reshape(shape[0], shape[3])

    def _grad_maps(self, grad_z):
        shape = tuple(grad_z.shape)
        return grad_z if self.keepdims else grad_z.reshape(shape[0], 1, 1, shape[1])

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum of each channel's whole map; the gradient goes to the winning pixel."""

    def call(self, x, training):
        window = tuple(x.shape[1:3])
        y, argmax = get_backend().max_pool2d_forward(x, window, window, "valid")
        return self._output(y), (argmax, x.shape)

    def backward_call(self, grad_z, cache, need_input_grad):
        argmax, input_shape = cache
        return get_backend().max_pool2d_backward(self._grad_maps(grad_z), argmax, input_shape) if need_input_grad else None


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean of each channel's whole map."""

    def call(self, x, training):
        window = tuple(x.shape[1:3])
        return self._output(get_backend().avg_pool2d_forward(x, window, window, "valid")), x.shape

    def backward_call(self, grad_z, input_shape, need_input_grad):
        if not need_input_grad:
            return None
        window = tuple(input_shape[1:3])
        return get_backend().avg_pool2d_backward(self._grad_maps(grad_z), input_shape, window, window, "valid")


GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
