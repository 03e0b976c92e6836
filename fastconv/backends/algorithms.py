"""Which convolution algorithm runs a layer: im2col + GEMM, or Winograd F(2x2, 3x3) or F(4x4, 3x3).

Winograd applies to 3x3 kernels with stride 1 ('valid' or 'same'), on the backends that provide its kernels
(Cython and Numba). ``"auto"`` (the default) picks the algorithm and Winograd's tile per layer shape by a rule
measured on the notes' layers (``docs/performance.md``). The other settings force one, from code with
:func:`set_conv_algorithm` or from the environment with ``FASTCONV_CONV_ALGORITHM``: ``"gemm"``; ``"winograd"``
(the tile still chosen by shape); ``"winograd_2x2"`` or ``"winograd_4x4"``. A forced Winograd runs wherever it
applies and the GEMM elsewhere, as cuDNN does with an algorithm that does not support a shape.
"""

import functools
import os

CONV_ALGORITHMS = ("auto", "gemm", "winograd", "winograd_2x2", "winograd_4x4")
WINOGRAD_ALGORITHMS = {"winograd_2x2": 2, "winograd_4x4": 4}
_chosen = None

# auto: Winograd when both channel counts and the output's area reach these. Its transforms cost
# O(tiles * 16 * (C + F)) against the products' O(tiles * 16 * C * F): with few channels (the first layer of a
# net: C = 1 or 3) they dominate. On a small output (MNIST's conv3: 3x3) a quarter of each tile's work is thrown
# away at the edges and the per-call kernel transform is not paid back; below 12 x 12 that holds unless the layer
# is wide (MNIST's conv2, 11 x 11 with 32 -> 64 channels: the input gradient 1.2-1.8x slower by Winograd on both
# backends; VGG16's block5, 9 x 9 with 512: Winograd 1.3x faster). Measured: docs/performance.md.
_MIN_WINOGRAD_CHANNELS = 16
_MIN_WINOGRAD_OUTPUT_PIXELS = 64
_MIN_NARROW_WINOGRAD_OUTPUT_PIXELS = 144
_MIN_WIDE_WINOGRAD_CHANNELS = 256
_MIN_F4X4_OUTPUT_SIDE = 16


def set_conv_algorithm(name):
    """Use ``name`` ('auto', 'gemm' or 'winograd') for every convolution from now on; returns it."""
    global _chosen
    _chosen = _checked(name, "set_conv_algorithm")
    return _chosen


def conv_algorithm():
    """The algorithm setting in use: the last :func:`set_conv_algorithm`, else ``$FASTCONV_CONV_ALGORITHM``, else 'auto'."""
    if _chosen is not None:
        return _chosen
    return _checked(os.environ.get("FASTCONV_CONV_ALGORITHM", "auto").strip().lower() or "auto", "FASTCONV_CONV_ALGORITHM")


def _checked(name, where):
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"{where}: unknown convolution algorithm {name!r}; choose one of {', '.join(CONV_ALGORITHMS)}")
    return name


def winograd_applies(kernel_shape, strides):
    """True for a 3x3 kernel (KH, KW, C, F) with stride 1: Winograd F(m x m, 3x3)'s case."""
    return tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)


def tile_side(algorithm):
    """m of a Winograd algorithm name ('winograd_2x2' -> 2, 'winograd_4x4' -> 4)."""
    return WINOGRAD_ALGORITHMS[algorithm]


@functools.lru_cache(maxsize=256)
def _auto_kernel_gradient(channels, filters, out_h, out_w):
    """The kernel gradient's own rule: its Winograd form sums a^2 (C, F) products over every tile, so it gains
    wherever the channels and output are not tiny, and most with F(4x4), even on MNIST's 11x11 conv2 (1.78 ms
    against the GEMM's 2.48, cython; 3.03 against 3.52, numba) and cats vs dogs' 15x15 conv4 (9.7 against 13.5).
    Wide layers on small outputs keep F(2x2): VGG16's block5 (9x9, 512 channels) takes 36 ms with it against 42,
    F(4x4)'s per-thread partial sums being 38 MB there."""
    narrowest = min(channels, filters)
    if narrowest < _MIN_WINOGRAD_CHANNELS or out_h * out_w < _MIN_WINOGRAD_OUTPUT_PIXELS:
        return "gemm"
    if narrowest >= _MIN_WIDE_WINOGRAD_CHANNELS and min(out_h, out_w) < _MIN_F4X4_OUTPUT_SIDE:
        return "winograd_2x2"
    return "winograd_4x4"


@functools.lru_cache(maxsize=256)
def _auto(channels, filters, out_h, out_w):
    narrowest, pixels = min(channels, filters), out_h * out_w
    if narrowest < _MIN_WINOGRAD_CHANNELS or pixels < _MIN_WINOGRAD_OUTPUT_PIXELS:
        return "gemm"
    if pixels < _MIN_NARROW_WINOGRAD_OUTPUT_PIXELS and narrowest < _MIN_WIDE_WINOGRAD_CHANNELS:
        return "gemm"
    return _winograd_tile(out_h, out_w)


def _winograd_tile(out_h, out_w):
    """F(4x4) on outputs of at least 16 x 16 (VGG16's blocks 1-4, cats vs dogs' conv2-3), else F(2x2): a smaller
    output wastes more of F(4x4)'s 4x4 tiles at its edges, and its transforms cost more per position."""
    return "winograd_4x4" if min(out_h, out_w) >= _MIN_F4X4_OUTPUT_SIDE else "winograd_2x2"


def choose(kernel_shape, strides, out_hw, has_winograd, kernel_gradient=False):
    """'gemm', 'winograd_2x2' or 'winograd_4x4' for a convolution with this kernel (KH, KW, C, F), strides and
    output (OH, OW) of its forward pass, on a backend that has (``has_winograd``) or lacks the Winograd kernels.
    Under 'auto' the forward pass and the input gradient of a layer get one answer and its kernel gradient
    (``kernel_gradient=True``) its own; a forced setting holds for all three."""
    setting = conv_algorithm()
    if not has_winograd or setting == "gemm" or not winograd_applies(kernel_shape, strides):
        return "gemm"
    if setting == "auto":
        rule = _auto_kernel_gradient if kernel_gradient else _auto
        return rule(kernel_shape[2], kernel_shape[3], out_hw[0], out_hw[1])
    return _winograd_tile(*out_hw) if setting == "winograd" else setting
