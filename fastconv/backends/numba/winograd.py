"""3x3 stride-1 convolution by Winograd's F(2x2, 3x3), as src_ext/winograd.pyx (the algorithm and its notation
are explained there): the kernel transformed once per call, then per block of 2x2 output tiles the input
transform, 16 BLAS products (``np.dot``) and the output transform with the bias.

x: (N, H, W, C); kernel: (3, 3, C, F); out_u: (16, C, F); out_y: (N, OH, OW, F); all float32, C-contiguous;
plan: a ``fastconv.backends.plans.ConvPlan`` whose ``block_rows`` counts tiles. Both kernels return False when
the kernel or a product is not finite (a NaN or +-inf in x, which the transforms would spread across a tile): the
caller then computes that convolution by the direct method.
"""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL, SERIAL


@njit(**SERIAL)
def winograd_kernel_transform(kernel, out_u):
    """out_u[4i+j] = (G g G^T)[i, j] for every channel pair; G = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]].

    False if the kernel holds a NaN or +-inf.
    """
    if not np.isfinite(kernel).all():
        return False
    gg = np.empty((4, 3, kernel.shape[2], kernel.shape[3]), dtype=np.float32)  # G g
    for s in range(3):
        g0, g1, g2 = kernel[0, s], kernel[1, s], kernel[2, s]
        gg[0, s] = g0
        gg[1, s] = np.float32(0.5) * (g0 + g1 + g2)
        gg[2, s] = np.float32(0.5) * (g0 - g1 + g2)
        gg[3, s] = g2
    for r in range(4):
        out_u[4 * r + 0] = gg[r, 0]
        out_u[4 * r + 1] = np.float32(0.5) * (gg[r, 0] + gg[r, 1] + gg[r, 2])
        out_u[4 * r + 2] = np.float32(0.5) * (gg[r, 0] - gg[r, 1] + gg[r, 2])
        out_u[4 * r + 3] = gg[r, 2]
    return True


@njit(**SERIAL)
def _count_nonfinite(values):
    """How many of values (flat) are NaN or +-inf: a non-finite pixel always leaves one among the products."""
    count = 0
    for value in values:
        count += not np.isfinite(value)
    return count


@njit(**SERIAL)
def _input_transform(x_sample, v, t, top, left, patch):
    """v[k, t] = (B^T d B)[k] for the 4x4 patch d at (top, left) of x_sample (H, W, C), zeros outside it.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; patch: (16, C) scratch.
    """
    height, width, channels = x_sample.shape
    for i in range(4):
        for j in range(4):
            row, col = top + i, left + j
            inside = 0 <= row < height and 0 <= col < width
            for c in range(channels):
                patch[4 * i + j, c] = x_sample[row, col, c] if inside else 0.0
    for j in range(4):  # rows: B^T d, in place
        for c in range(channels):
            d0, d1, d2, d3 = patch[j, c], patch[4 + j, c], patch[8 + j, c], patch[12 + j, c]
            patch[j, c] = d0 - d2
            patch[4 + j, c] = d1 + d2
            patch[8 + j, c] = d2 - d1
            patch[12 + j, c] = d1 - d3
    for i in range(4):  # columns: (B^T d) B
        for c in range(channels):
            d0, d1, d2, d3 = patch[4 * i, c], patch[4 * i + 1, c], patch[4 * i + 2, c], patch[4 * i + 3, c]
            v[4 * i + 0, t, c] = d0 - d2
            v[4 * i + 1, t, c] = d1 + d2
            v[4 * i + 2, t, c] = d2 - d1
            v[4 * i + 3, t, c] = d1 - d3


@njit(**SERIAL)
def _output_transform(m, t, y_sample, top, left, bias):
    """The 2x2 pixels at (top, left) of y_sample (OH, OW, F) = A^T m[:, t] A + bias, those inside it only.

    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
    """
    out_h, out_w, filters = y_sample.shape
    for f in range(filters):
        top_0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
        top_1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
        top_2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
        top_3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
        y_sample[top, left, f] = top_0 + top_1 + top_2 + bias[f]
        if left + 1 < out_w:
            y_sample[top, left + 1, f] = top_1 - top_2 - top_3 + bias[f]
        if top + 1 < out_h:
            bottom_0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
            bottom_1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
            bottom_2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
            bottom_3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
            y_sample[top + 1, left, f] = bottom_0 + bottom_1 + bottom_2 + bias[f]
            if left + 1 < out_w:
                y_sample[top + 1, left + 1, f] = bottom_1 - bottom_2 - bottom_3 + bias[f]


@njit(**PARALLEL)
def winograd_conv2d_forward(x, u, bias, out_y, plan):
    """out_y = conv3x3(x, kernel) + bias, stride 1, from u = winograd_kernel_transform(kernel), in blocks of tiles.

    False if a product is not finite (x held a NaN or +-inf; out_y is then not to be used).
    """
    batch, out_h, out_w, filters = out_y.shape
    channels = x.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    tiles, block_tiles = batch * tiles_h * tiles_w, plan.block_rows
    nonfinite = 0
    for block in prange((tiles + block_tiles - 1) // block_tiles):
        first = block * block_tiles
        count = min(block_tiles, tiles - first)
        v = np.empty((16, count, channels), dtype=np.float32)
        m = np.empty((16, count, filters), dtype=np.float32)
        patch = np.empty((16, channels), dtype=np.float32)
        for t in range(count):
            tile = first + t
            n, th, tw = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
            _input_transform(x[n], v, t, 2 * th - plan.pad_top, 2 * tw - plan.pad_left, patch)
        for k in range(16):
            np.dot(v[k], u[k], m[k])
        nonfinite += _count_nonfinite(m.reshape(-1))
        for t in range(count):
            tile = first + t
            n, th, tw = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
            _output_transform(m, t, out_y[n], 2 * th, 2 * tw, bias)
    return nonfinite == 0
