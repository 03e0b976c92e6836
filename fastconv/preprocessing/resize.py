"""Keras 3's image resize (``tf.image.resize``, which ``image_dataset_from_directory`` calls), in NumPy.

``tf.image.resize`` samples the source at half-pixel centres without antialiasing: an output pixel reads the 2 x 2
(bilinear) or 4 x 4 (bicubic) source pixels around ``(i + 0.5) * in / out - 0.5``, however much the image shrinks.
Pillow's filters widen with the shrink factor (antialiasing), so Pillow's "bilinear" of a 500 x 375 photo at 180 x 180
averages ~3 x 3 times more pixels than Keras'. Keras 2's ``load_img`` (``flow_from_directory``) does use Pillow; this
module is for the second edition's loader. Arithmetic in float32 in TensorFlow's order.

image: (H, W, C) uint8 or float32; returns (height, width, C) float32 (0-255 stays 0-255).
"""

import numpy as np

INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_KEYS_A = np.float32(-0.5)  # the Keys cubic's coefficient that TensorFlow's half-pixel bicubic uses


def resize(image, size, interpolation="bilinear"):
    """``image`` (H, W, C) resized to ``size`` = (height, width) as ``tf.image.resize(image, size, interpolation)``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"resize: interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    if image.ndim != 3:
        raise ValueError(f"resize: an image is (height, width, channels), got shape {image.shape}")
    height, width = size
    if interpolation == "nearest":
        return image[_nearest(image.shape[0], height)][:, _nearest(image.shape[1], width)].astype(np.float32)
    linear = interpolation == "bilinear"
    plan = _linear if linear else _cubic
    row_taps, row_weights = plan(image.shape[0], height)
    col_taps, col_weights = plan(image.shape[1], width)
    # Along rows first, as TensorFlow, over only the source rows and columns that some output reads (gathered before
    # the conversion to float32), then the rows combined; the planes are (height, width * C) so that NumPy's inner
    # loops run along whole rows, not along C = 3 values. Every output value is TensorFlow's expression.
    channels = image.shape[2]
    out = None
    for k in range(row_taps.shape[1]):
        source_rows = image[row_taps[:, k]]  # (height, W, C), as stored: gathered before any conversion
        along_rows = None
        for j in range(col_taps.shape[1]):
            values = np.take(source_rows, col_taps[:, j], axis=1).astype(np.float32).reshape(height, width * channels)
            along_rows = _add(along_rows, values, np.repeat(col_weights[:, j], channels), linear)
        out = _add(out, along_rows, row_weights[:, k].reshape(-1, 1), linear)
    return out.reshape(height, width, channels)


def _add(total, values, weight, linear):
    """Take in one more tap: bilinear's ``low + (high - low) * w`` (TensorFlow's lerp; ``weight`` is the upper
    tap's, the lower tap comes first and alone), bicubic's ``total + values * w``."""
    if linear:
        return values if total is None else total + (values - total) * weight
    return values * weight if total is None else total + values * weight


def _scale(in_size, out_size):
    return np.float32(in_size) / np.float32(out_size)


def _nearest(in_size, out_size):
    """Source index of each output index: floor((i + 0.5) * scale), at most in_size - 1."""
    centres = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * _scale(in_size, out_size)
    return np.minimum(np.floor(centres).astype(np.int64), in_size - 1)


def _source_positions(in_size, out_size):
    return (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * _scale(in_size, out_size) - np.float32(0.5)


def _linear(in_size, out_size):
    """(taps (out, 2), weights (out, 2)) for TensorFlow's half-pixel bilinear: the lower and upper source index and,
    in column 1, the upper's weight (the lerp; column 0 is unused: the lerp form needs one weight)."""
    positions = _source_positions(in_size, out_size)
    floors = np.floor(positions)
    lower = np.maximum(floors.astype(np.int64), 0)
    upper = np.minimum(np.ceil(positions).astype(np.int64), in_size - 1)
    lerp = (positions - floors).astype(np.float32)
    return np.stack([lower, upper], axis=1), np.stack([1 - lerp, lerp], axis=1)


_TABLE_SIZE = 1024


def _keys_table():
    """TensorFlow's table of Keys' cubic (a = -0.5): entry (i, 0) at distance i / 1024, (i, 1) at 1 + i / 1024."""
    a, x = _KEYS_A, (np.arange(_TABLE_SIZE + 1) / _TABLE_SIZE).astype(np.float32)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far_x = x + np.float32(1)
    far = ((a * far_x - 5 * a) * far_x + 8 * a) * far_x - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


def _cubic(in_size, out_size):
    """(indices (out, 4), weights (out, 4)) for TensorFlow's half-pixel bicubic: the four taps around each
    position, weighted from its table at the position's fraction rounded to the nearest 1/1024; taps outside the image
    get weight 0 and the others are scaled by 1 / their sum."""
    positions = _source_positions(in_size, out_size)
    floors = np.floor(positions)
    offsets = np.rint((positions - floors) * np.float32(_TABLE_SIZE)).astype(np.int64)
    table = _keys_table()
    weights = np.stack([table[offsets, 1], table[offsets, 0], table[_TABLE_SIZE - offsets, 0],
                        table[_TABLE_SIZE - offsets, 1]], axis=1)  # fmt: skip
    taps = floors.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    weights = np.where((taps >= 0) & (taps < in_size), weights, np.float32(0)).astype(np.float32)
    weights = weights * (np.float32(1) / weights.sum(axis=1, dtype=np.float32, keepdims=True))
    return np.clip(taps, 0, in_size - 1), weights.astype(np.float32)
