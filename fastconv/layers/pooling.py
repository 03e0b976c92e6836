"""MaxPooling2D and AveragePooling2D, Keras' arguments and defaults (strides default to the pool size)."""

from fastconv.backends import get_backend
from fastconv.layers.base import Layer
from fastconv.shapes import normalize_pair, normalize_padding, window_geometry


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{type(self).__name__} {self.name!r}: fastconv is channels_last, got data_format={data_format!r}")
        self.pool_size = normalize_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides")
        self.padding = normalize_padding(padding)

    def check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects input of rank 4 (batch, height, width, channels), "
                f"got shape {tuple(input_shape)}"
            )
        try:
            window_geometry(input_shape[1:3], self.pool_size, self.strides, self.padding)
        except ValueError:
            raise ValueError(
                f"Layer {self.name!r}: pool {self.pool_size} is larger than its input {tuple(input_shape[1:3])} "
                f"(input shape {tuple(input_shape)})"
            ) from None

    def compute_output_shape(self, input_shape):
        geometry = window_geometry(input_shape[1:3], self.pool_size, self.strides, self.padding)
        return (input_shape[0], geometry.out_h, geometry.out_w, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Maximum over each window; the backward pass routes the gradient to the winner."""

    def call(self, x, training):
        y, argmax = get_backend().max_pool2d_forward(x, self.pool_size, self.strides, self.padding)
        return y, (argmax, x.shape)

    def backward_call(self, grad_z, cache, need_input_grad):
        argmax, input_shape = cache
        return get_backend().max_pool2d_backward(grad_z, argmax, input_shape) if need_input_grad else None


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
