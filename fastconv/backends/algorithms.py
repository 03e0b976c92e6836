"""Which convolution algorithm runs a layer: im2col + GEMM, or Winograd F(2x2, 3x3) or F(4x4, 3x3).

Winograd applies to 3x3 kernels with stride 1 ('valid' or 'same'), on the backends that provide its kernels
(Cython and Numba). ``"auto"`` (the default) picks the algorithm and Winograd's tile per layer shape by a rule
measured on the notes' layers (``docs/performance.md``). The other settings force one, from code with
:func:`set_conv_algorithm` or from the environment with ``FASTCONV_CONV_ALGORITHM``: ``"gemm"``; ``"winograd"``
(the tile still chosen by shape); ``"winograd_2x2"`` or ``"winograd_4x4"``. A forced Winograd runs wherever it
applies and the GEMM elsewhere, as cuDNN does with an algorithm that does not support a shape.

Winograd also needs an output at least 2 pixels on each side. Its rounding error is relative to the whole kernel
(the transforms mix all nine taps, which then cancel), while a one-pixel-wide 'same' convolution sums only the
kernel's middle row or column: where those taps are small the error broke the 1e-5 contract (5e-5 measured for a
1x1 input), so such a layer takes the GEMM, exact to the taps it uses.
"""

import enum
import functools
import os


class ConvAlgorithm(str, enum.Enum):
    """A convolution algorithm setting, equal to its name (``ConvAlgorithm.GEMM == "gemm"``). ``AUTO`` and
    ``WINOGRAD`` are settings only: :func:`choose` answers ``GEMM``, ``WINOGRAD_2X2`` or ``WINOGRAD_4X4``."""

    AUTO = "auto"
    GEMM = "gemm"
    WINOGRAD = "winograd"
    WINOGRAD_2X2 = "winograd_2x2"
    WINOGRAD_4X4 = "winograd_4x4"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def tile_side(self):
        """m of a Winograd F(m x m, 3x3) algorithm (2 or 4); 0 for the others."""
        return {"winograd_2x2": 2, "winograd_4x4": 4}.get(self.value, 0)


CONV_ALGORITHMS = tuple(algorithm.value for algorithm in ConvAlgorithm)
_chosen = None

# auto: Winograd when both channel counts and the output's area reach these. Its transforms cost
# O(tiles * a^2 * (C + F)) against the products' O(tiles * a^2 * C * F): with few channels (the first layer of a
# net: C = 1 or 3) they dominate. On a tiny output (MNIST's conv3: 3x3) most of each tile's work is thrown away at
# the edges and the per-call kernel transform is not paid back. Measured: docs/performance.md.
_MIN_WINOGRAD_CHANNELS = 16
_MIN_WINOGRAD_OUTPUT_PIXELS = 64
# The tile: F(4x4) everywhere but on wide layers (>= 256 channels) with an output side under 16, where F(4x4)'s edge
# tiles waste the most of the largest products and its transformed kernels and partial sums are largest (VGG16's
# block5, 9x9 with 512 channels: F(2x2) 30.7 ms against 34.3 forward).
_MIN_F4X4_OUTPUT_SIDE = 16
_MIN_WIDE_WINOGRAD_CHANNELS = 256
# The input gradient of a narrow layer on a small output stays with the GEMM: its Winograd form is a 'full'
# convolution of grad_out onto the input, which on MNIST's conv2 (11x11 -> 13x13, 64 -> 32 channels) gains
# nothing on cython (1.90 ms against 1.93) and loses on numba (3.31 against 2.48).
_MIN_INPUT_GRADIENT_OUTPUT_PIXELS = 144


def set_conv_algorithm(name):
    """Use ``name`` (one of ``CONV_ALGORITHMS``: 'auto', 'gemm', 'winograd', 'winograd_2x2' or 'winograd_4x4') for
    every convolution from now on; returns it."""
    global _chosen
    _chosen = _checked(name, "set_conv_algorithm")
    return _chosen


def conv_algorithm():
    """The algorithm setting in use: the last :func:`set_conv_algorithm`, else ``$FASTCONV_CONV_ALGORITHM``, else 'auto'."""
    if _chosen is not None:
        return ConvAlgorithm(_chosen)
    return _checked(os.environ.get("FASTCONV_CONV_ALGORITHM", "auto").strip().lower() or "auto", "FASTCONV_CONV_ALGORITHM")


def _checked(name, where):
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"{where}: unknown convolution algorithm {name!r}; choose one of {', '.join(CONV_ALGORITHMS)}")
    return ConvAlgorithm(name)


def winograd_applies(kernel_shape, strides):
    """True for a 3x3 kernel (KH, KW, C, F) with stride 1: Winograd F(m x m, 3x3)'s case."""
    return tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)


@functools.lru_cache(maxsize=256)
def _auto(channels, filters, out_h, out_w, input_gradient):
    narrowest, pixels = min(channels, filters), out_h * out_w
    if narrowest < _MIN_WINOGRAD_CHANNELS or pixels < _MIN_WINOGRAD_OUTPUT_PIXELS:
        return ConvAlgorithm.GEMM
    if input_gradient and narrowest < _MIN_WIDE_WINOGRAD_CHANNELS and pixels < _MIN_INPUT_GRADIENT_OUTPUT_PIXELS:
        return ConvAlgorithm.GEMM
    return _winograd_tile(channels, filters, out_h, out_w)


def _winograd_tile(channels, filters, out_h, out_w):
    """F(4x4), but F(2x2) for a wide layer (min(C, F) >= 256) on an output side under 16, and for an output side
    under 4 (a forced Winograd on a sliver of an output, where a 4x4 tile would be mostly outside it)."""
    wide = min(channels, filters) >= _MIN_WIDE_WINOGRAD_CHANNELS
    side = min(out_h, out_w)
    small = side < 4 or (wide and side < _MIN_F4X4_OUTPUT_SIDE)
    return ConvAlgorithm.WINOGRAD_2X2 if small else ConvAlgorithm.WINOGRAD_4X4


def choose(kernel_shape, strides, out_hw, has_winograd, input_gradient=False):
    """``ConvAlgorithm.GEMM``, ``WINOGRAD_2X2`` or ``WINOGRAD_4X4`` for a convolution with this kernel (KH, KW, C, F), strides and
    output (OH, OW) of its forward pass, on a backend that has (``has_winograd``) or lacks the Winograd kernels.
    Under 'auto' the forward pass and the kernel gradient of a layer get one answer and its input gradient
    (``input_gradient=True``) may get the GEMM instead; a forced setting holds for all three."""
    setting = conv_algorithm()
    if not has_winograd or setting is ConvAlgorithm.GEMM or not winograd_applies(kernel_shape, strides) or min(out_hw) < 2:
        return ConvAlgorithm.GEMM
    if setting is ConvAlgorithm.AUTO:
        return _auto(kernel_shape[2], kernel_shape[3], out_hw[0], out_hw[1], input_gradient)
    return _winograd_tile(kernel_shape[2], kernel_shape[3], *out_hw) if setting is ConvAlgorithm.WINOGRAD else setting
