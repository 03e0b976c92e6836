"""Keras 3's image preprocessing layers of the second edition's chapter 8: Rescaling, RandomFlip, RandomRotation and
RandomZoom, NHWC.

The random layers transform while training (in ``fit``, and when called directly: ``data_augmentation(images)``,
Keras 3's default) and pass their input through unchanged in ``predict`` and ``evaluate``. Each image draws its own
transformation from the layer's ``seed`` or, without one, from fastconv's generator (``utils.set_random_seed``).
Rotation and zoom follow Keras 3.15: an affine map from each output pixel to a point of the input, sampled bilinearly
(or at the nearest pixel), points outside filled by ``fill_mode`` as Keras does ('reflect': d c b a | a b c d | d c b
a; 'constant', 'nearest'); measured against ``keras.ops.image.affine_transform`` to 1e-6.

They compute on the host with NumPy (a device backend's arrays are copied over and back). Rescaling and RandomFlip
pass gradients back; a rotation or zoom that was applied passes none (it sits before the layers that train, as in
every listing): asking for its input gradient raises a ValueError naming the layer.
"""

import math

import numpy as np

from fastconv import utils
from fastconv.backends import get_backend
from fastconv.layers.base import Layer, check_channels_last, check_image_rank

# Keras' 'caffe' preprocessing (VGG16's preprocess_input): the ImageNet mean pixel, in BGR order.
MEAN_PIXEL_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# Keras' 'wrap' (TensorFlow's folding of coordinates, not of pixels) is not among them: refused by name.
FILL_MODES = ("reflect", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class Rescaling(Layer):
    """``x * scale + offset``, any shape: ``Rescaling(1.0 / 255)`` (listing 8.7)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = _number(scale, self, "scale"), _number(offset, self, "offset")

    def call(self, x, training):
        backend = get_backend()
        host = backend.to_host(x)
        return backend.to_device((host * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)), None

    def backward_call(self, grad_z, cache, need_input_grad):
        if not need_input_grad:
            return None
        backend = get_backend()
        return backend.to_device((backend.to_host(grad_z) * np.float32(self.scale)).astype(np.float32))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class CaffePreprocessing(Layer):
    """VGG16's ``preprocess_input`` as a step of a functional model (listing 8.23: ``x = preprocess_input(x)`` on a
    symbolic tensor): RGB -> BGR, minus the ImageNet mean pixel; any shape whose last axis holds 3 channels.

    Keras 3 records the same step as five operations (three ``GetItem``, ``Stack``, ``Add``); fastconv reads those
    back as this layer and writes this layer as those, so both open each other's files. Its summary row is one.
    """

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != 3:
            raise ValueError(f"Layer {self.name!r} (preprocess_input) expects RGB inputs with 3 channels last, got shape {tuple(input_shape)}")

    def call(self, x, training):
        backend = get_backend()
        return backend.to_device(caffe_preprocess(backend.to_host(x))), None

    def backward_call(self, grad_z, cache, need_input_grad):
        if not need_input_grad:
            return None
        backend = get_backend()
        return backend.to_device(np.ascontiguousarray(np.asarray(backend.to_host(grad_z))[..., ::-1]))


def caffe_preprocess(rgb):
    """(..., 3) RGB on the 0-255 scale -> a new float32 array: BGR, minus :data:`MEAN_PIXEL_BGR` (Keras' 'caffe'
    mode, what VGG16's ImageNet weights expect)."""
    return np.asarray(rgb)[..., ::-1].astype(np.float32) - MEAN_PIXEL_BGR


class _RandomImageLayer(Layer):
    """A layer that transforms each image of a batch (N, H, W, C) at random while training, else passes it on."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_channels_last(self, data_format)
        self.seed = seed
        self._own_rng = None if seed is None else np.random.default_rng(seed)

    def _rng(self):
        return self._own_rng if self._own_rng is not None else utils.rng()

    def check_input_shape(self, input_shape):
        check_image_rank(self, input_shape)

    def call(self, x, training):
        if training is False:  # None (a direct call) transforms, as in Keras 3
            return x, None
        backend = get_backend()
        images = backend.to_host(x)
        transformed, cache = self.transform(np.asarray(images, dtype=np.float32), self._rng())
        return backend.to_device(transformed), cache

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class RandomFlip(_RandomImageLayer):
    """Flip each image with probability 1/2: left-right ('horizontal'), top-bottom ('vertical'), or both together
    ('horizontal_and_vertical', the default: one draw per image, as Keras 3.15 does)."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if mode not in FLIP_MODES:
            raise ValueError(f"RandomFlip {self.name!r}: mode must be one of {FLIP_MODES}, got {mode!r}")
        self.mode = mode

    def _flip(self, images, flips):
        out = images
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            out = np.where(flips[:, None, None, None], out[:, :, ::-1], out)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            out = np.where(flips[:, None, None, None], out[:, ::-1], out)
        return np.ascontiguousarray(out, dtype=np.float32)

    def transform(self, images, rng):
        flips = rng.random(images.shape[0]) <= 0.5
        return self._flip(images, flips), flips

    def backward_call(self, grad_z, flips, need_input_grad):
        if not need_input_grad:
            return None
        if flips is None:
            return grad_z
        backend = get_backend()
        return backend.to_device(self._flip(np.asarray(backend.to_host(grad_z), dtype=np.float32), flips))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _AffineImageLayer(_RandomImageLayer):
    """A random affine map per image (rotation, zoom), sampled as :func:`affine_transform` does."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"{type(self).__name__} {self.name!r}: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def transform(self, images, rng):
        matrices = self.matrices(images.shape[0], images.shape[1], images.shape[2], rng)
        return affine_transform(images, matrices, self.fill_mode, self.interpolation, self.fill_value), True

    def backward_call(self, grad_z, transformed, need_input_grad):
        if not need_input_grad:
            return None
        if transformed is None:
            return grad_z
        raise ValueError(
            f"{type(self).__name__} {self.name!r} passes no gradient to its input while it transforms (training): put it "
            "before the layers that train, as an augmentation step"
        )

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}  # fmt: skip


class RandomRotation(_AffineImageLayer):
    """Rotate each image about its centre by an angle drawn from ``[lower, upper] * 2 pi``: ``factor`` is ``(lower,
    upper)`` or one number f for ``(-f, f)`` (``RandomRotation(0.1)``: up to 36 degrees either way)."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value, **kwargs)
        self.factor = factor
        self.lower, self.upper = _factor_range(factor, self, "factor", (-1.0, 1.0))

    def matrices(self, batch, height, width, rng):
        angles = np.radians(rng.uniform(self.lower * 360.0, self.upper * 360.0, batch))
        cos, sin = np.cos(angles), np.sin(angles)
        cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
        # Keras' _compute_affine_matrix with scale 1 and no shear or translation
        return np.stack([cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos], axis=1)

    def get_config(self):
        return {**super().get_config(), "factor": _serial(self.factor)}


class RandomZoom(_AffineImageLayer):
    """Zoom each image about its centre: its height by ``1 + u``, u drawn from ``height_factor``'s ``(lower, upper)``
    (or ``(-f, f)`` for one number f); positive zooms out, negative in. The width by its own draw from
    ``width_factor``, or by the height's (the aspect kept) when ``width_factor`` is None."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):  # fmt: skip
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_range = _factor_range(height_factor, self, "height_factor", (-1.0, 1.0), open_low=True)
        self.width_range = None if width_factor is None else _factor_range(width_factor, self, "width_factor", (-1.0, 1.0), open_low=True)

    def matrices(self, batch, height, width, rng):
        zoom_y = rng.uniform(1.0 + self.height_range[0], 1.0 + self.height_range[1], batch)
        zoom_x = zoom_y if self.width_range is None else rng.uniform(1.0 + self.width_range[0], 1.0 + self.width_range[1], batch)
        zeros = np.zeros(batch)
        return np.stack([zoom_x, zeros, (width - 1) / 2.0 * (1.0 - zoom_x), zeros, zoom_y, (height - 1) / 2.0 * (1.0 - zoom_y)], axis=1)

    def get_config(self):
        return {**super().get_config(), "height_factor": _serial(self.height_factor), "width_factor": _serial(self.width_factor)}


def affine_transform(images, matrices, fill_mode="reflect", interpolation="bilinear", fill_value=0.0):
    """images (N, H, W, C) float32, matrices (N, 6) ``[a0, a1, a2, b0, b1, b2]`` -> (N, H, W, C) float32 whose pixel
    (row y, column x) is the input sampled at column ``a0 x + a1 y + a2``, row ``b0 x + b1 y + b2``."""
    batch, height, width, _ = images.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    a0, a1, a2, b0, b1, b2 = (matrices[:, k, None, None] for k in range(6))
    x_in, y_in = a0 * cols + a1 * rows + a2, b0 * cols + b1 * rows + b2  # (N, H, W)
    samples = np.arange(batch)[:, None, None]
    if interpolation == "nearest":
        return _gather(images, samples, np.floor(y_in + 0.5), np.floor(x_in + 0.5), fill_mode, fill_value).astype(np.float32)
    y0, x0 = np.floor(y_in), np.floor(x_in)
    wy, wx = (y_in - y0)[..., None], (x_in - x0)[..., None]
    top = _gather(images, samples, y0, x0, fill_mode, fill_value) * (1 - wx) + _gather(images, samples, y0, x0 + 1, fill_mode, fill_value) * wx
    bottom = _gather(images, samples, y0 + 1, x0, fill_mode, fill_value) * (1 - wx) + _gather(images, samples, y0 + 1, x0 + 1, fill_mode, fill_value) * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _gather(images, samples, rows, cols, fill_mode, fill_value):
    """images[n, rows, cols] (float64) with indices outside the image mapped (or filled) by ``fill_mode``."""
    height, width = images.shape[1:3]
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    if fill_mode == "constant":
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        values = images[samples, np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)].astype(np.float64)
        return np.where(inside[..., None], values, fill_value)
    return images[samples, _fold(rows, height, fill_mode), _fold(cols, width, fill_mode)].astype(np.float64)


def _fold(index, size, fill_mode):
    """Indices of any integer into [0, size): 'reflect' mirrors about the edges (d c b a | a b c d | d c b a),
    'nearest' clamps."""
    if fill_mode == "nearest":
        return np.clip(index, 0, size - 1)
    folded = np.mod(index, 2 * size)
    return np.where(folded >= size, 2 * size - 1 - folded, folded)


def _number(value, layer, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: {what} must be a finite number, got {value!r}")
    return float(value)


def _factor_range(factor, layer, what, bounds, open_low=False):
    """``(lower, upper)`` of a Keras factor: a pair (sorted), or one number f meaning ``(-|f|, |f|)``; each within
    ``bounds`` (the lower bound excluded with ``open_low``: a zoom of -1 would shrink the image to nothing)."""
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{type(layer).__name__} {layer.name!r}: {what} must be a number or a pair, got {factor!r}")
        lower, upper = sorted(_number(value, layer, what) for value in factor)
    else:
        size = abs(_number(factor, layer, what))
        lower, upper = -size, size
    low, high = bounds
    if lower < low or (open_low and lower <= low) or upper > high:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: {what} must lie in [{low}, {high}], got {factor!r}")
    return lower, upper


def _serial(factor):
    return list(factor) if isinstance(factor, tuple) else factor
