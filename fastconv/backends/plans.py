"""The plans a low-level convolution or pooling kernel runs by, named instead of a row of positional integers.

:class:`~fastconv.backends.compiled.CompiledBackend` makes one per call from the checked geometry and hands it to
``conv2d_*``/``*_pool2d_*`` of every backend (Cython reads it into a C struct, Numba receives it as a typed tuple,
CUDA unpacks it for its launches). A field a backend does not need (the GPU takes the whole batch, so it ignores
the block sizes and ``threads``) is simply not read.
"""

from typing import NamedTuple


class ConvPlan(NamedTuple):
    """How a 2-D convolution kernel walks its input.

    stride_h, stride_w: steps between output pixels; pad_top, pad_left: zero rows/columns before the input
    (the bottom/right padding follows from the output size); kernel_h, kernel_w: the window;
    threads: how many threads may share the blocks (CPU);
    block_pixels: output pixels whose patches one block gathers and multiplies (GEMM forward and kernel gradient);
    block_samples: whole samples per block of the GEMM input gradient (their patch gradients are one product);
    block_tiles: m x m output tiles per block of a Winograd F(m x m, 3x3) kernel;
    a block size the plan's algorithm does not use is 0 (and the GPU, which takes the whole batch, reads none);
    relu: the forward pass's epilogue: max(y, 0) applied as the output is written, so a Conv2D with
    ``activation='relu'`` writes its activation once (read by the forward kernels only).
    """

    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    kernel_h: int
    kernel_w: int
    threads: int
    block_pixels: int = 0
    block_samples: int = 0
    block_tiles: int = 0
    relu: bool = False


class PoolPlan(NamedTuple):
    """How a 2-D pooling kernel walks its input: the window (pool_h, pool_w), the strides, the top/left padding.

    Windows are clipped to the real input (``_clip_window`` in every backend), so padding never takes part.
    """

    pool_h: int
    pool_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
