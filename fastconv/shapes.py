"""Shape arithmetic shared by every backend and, later, by the layers.

All of it follows TensorFlow/Keras:

* ``valid``: no padding; windows that do not fit are dropped, so the output
  length is ``floor((n - k) / s) + 1`` — the textbook ``(N - F + 2P) / S + 1``
  with ``P = 0``.
* ``same``: the output length is ``ceil(n / s)``; the total padding is
  ``max((out - 1) * s + k - n, 0)``, with the odd pixel going to the bottom /
  right.

Convolution and pooling use the same rule, so one set of helpers serves both.
"""

from typing import NamedTuple

import numpy as np

PADDINGS = ("valid", "same")


class Geometry2D(NamedTuple):
    """Where a 2-D window slides: output size and the padding on each side."""

    out_h: int
    out_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


def positive_int(value, name):
    """``value`` as a Python int >= 1; NumPy integers are accepted, bools, floats and strings are not."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def normalize_pair(value, name):
    """Return ``value`` as a pair of positive ints (``3`` -> ``(3, 3)``).

    Raises ``ValueError`` quoting the bad value, as Keras' argument checks do.
    """
    if _is_int(value):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return tuple(int(v) for v in pair)


def _is_int(value):
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def normalize_padding(padding):
    """Return ``'valid'`` or ``'same'`` (case-insensitive), else raise ``ValueError``."""
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def same_padding(length, window, stride):
    """Padding ``(before, after)`` that TensorFlow adds along one axis for ``same``."""
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return total // 2, total - total // 2


def output_length(length, window, stride, padding):
    """Output length along one axis; ``ValueError`` when a ``valid`` window does not fit."""
    if padding == "same":
        return -(-length // stride)
    if window > length:
        raise ValueError(f"window of size {window} is larger than the input of size {length}")
    return (length - window) // stride + 1


def window_geometry(input_hw, window_hw, strides, padding):
    """Output size and padding of a 2-D sliding window.

    ``input_hw`` = (H, W), ``window_hw`` = (KH, KW), ``strides`` = (SH, SW),
    ``padding`` in ``('valid', 'same')``. Returns a :class:`Geometry2D`.
    """
    (height, width), (window_h, window_w), (stride_h, stride_w) = input_hw, window_hw, strides
    if padding == "same":
        pad_top, pad_bottom = same_padding(height, window_h, stride_h)
        pad_left, pad_right = same_padding(width, window_w, stride_w)
    else:
        pad_top = pad_bottom = pad_left = pad_right = 0
    if window_h > height + pad_top + pad_bottom or window_w > width + pad_left + pad_right:
        raise ValueError(
            f"window {tuple(window_hw)} is larger than the padded input "
            f"{(height + pad_top + pad_bottom, width + pad_left + pad_right)} "
            f"(input {tuple(input_hw)}, padding {padding!r})"
        )
    return Geometry2D(
        output_length(height, window_h, stride_h, padding),
        output_length(width, window_w, stride_w, padding),
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
    )


def known_hw(input_hw):
    """Whether both spatial sizes are known: a model built without them (``VGG16(include_top=False)``, Keras'
    ``(None, None, 3)``) learns them when it is called."""
    return all(size is not None for size in input_hw)


def output_hw(input_hw, window_hw, strides, padding):
    """(OH, OW) of a sliding window over (H, W); a size that is not known yet (None) stays None."""
    if known_hw(input_hw):
        geometry = window_geometry(input_hw, window_hw, strides, padding)
        return geometry.out_h, geometry.out_w
    return tuple(None if size is None else output_length(size, window, stride, padding)
                 for size, window, stride in zip(input_hw, window_hw, strides))  # fmt: skip
