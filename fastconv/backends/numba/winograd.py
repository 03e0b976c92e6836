"""3x3 stride-1 convolution by Winograd's F(m x m, 3x3), m = 2 or 4, as src_ext/winograd.pyx (the algorithm and its
notation are explained there; the matrices are fastconv.backends.winograd_tiles'): the kernel transformed once per
call, then per block of output tiles the input transform, a^2 BLAS products (``np.dot``) and the output transform
with the bias; for the kernel gradient, per block the input and gradient transforms and a^2 products V[k]^T Z[k]
added into their group's partial by BLAS itself (``_blas.gemm``, beta = 1), then K^T dU.

x: (N, H, W, C); kernel: (3, 3, C, F); out_u: (a^2, C, F), a^2 = 16 for F(2x2) and 36 for F(4x4); out_y:
(N, OH, OW, F); all float32, C-contiguous; plan: a ``fastconv.backends.plans.ConvPlan`` whose ``block_tiles`` counts
tiles. Both kernels return False when the kernel or a product is not finite (a NaN or +-inf in x, which the
transforms would spread across a tile): the caller then computes that convolution by the direct method.
"""

import math

import numpy as np
from numba import cfunc, njit

from fastconv.backends import buffers, winograd_tiles
from fastconv.backends.numba._blas import NO_TRANSPOSE, TRANSPOSE, gemm
from fastconv.backends.numba._common import NO_ALIAS, SERIAL, group_count
from fastconv.backends.numba._driver import (BLOCK_OPTIONS, BLOCK_SIGNATURE, DRIVER, GRADIENT_PARTIALS, GRADIENT_PLAN, GRADIENT_X,
                                             GRADIENT_Y, conv_plan_at, float32_1d, float32_3d, float32_4d, int64_1d, job_of,
                                             new_job, put, put_conv_plan, run, run_kernel_gradient, scratch)

# Compiled in as constants: B^T, A^T and K = kron(G, G) of F(2x2) and of F(4x4). Numba's on-disk cache does not
# see an edit of winograd_tiles.py: clear this folder's __pycache__ after changing the matrices.
INPUT_T_2, INPUT_T_4 = (winograd_tiles.input_matrix(m).astype(np.float32) for m in (2, 4))
OUTPUT_T_2, OUTPUT_T_4 = (winograd_tiles.output_matrix(m).astype(np.float32) for m in (2, 4))
KERNEL_T_2, KERNEL_T_4 = (winograd_tiles.kernel_transform_matrix(m) for m in (2, 4))
# A (a, m) for the gradient transform A dY A^T, and K^T (9, a^2) for the kernel transform's adjoint.
OUTPUT_N_2, OUTPUT_N_4 = (np.ascontiguousarray(winograd_tiles.output_matrix(m).T).astype(np.float32) for m in (2, 4))
KERNEL_N_2, KERNEL_N_4 = (np.ascontiguousarray(winograd_tiles.kernel_transform_matrix(m).T) for m in (2, 4))


@njit(**SERIAL)
def winograd_kernel_transform(kernel, out_u):
    """out_u[a*i + j] = (G g G^T)[i, j] for every channel pair, as one product K @ kernel (K = kron(G, G)); out_u's
    a^2 rows (16 or 36) pick F(2x2) or F(4x4). False if the kernel holds a NaN or +-inf."""
    if out_u.shape[0] != KERNEL_T_2.shape[0] and out_u.shape[0] != KERNEL_T_4.shape[0]:
        raise ValueError("winograd_kernel_transform: out_u must have 16 (F(2x2)) or 36 (F(4x4)) positions")
    if _count_nonfinite(kernel.reshape(-1)) > 0:
        return False
    kernel_t = KERNEL_T_2 if out_u.shape[0] == KERNEL_T_2.shape[0] else KERNEL_T_4
    np.dot(kernel_t, kernel.reshape(9, -1), out_u.reshape(out_u.shape[0], -1))
    return True


@njit(**SERIAL)
def winograd_kernel_transform_backward(grad_u, out_grad_kernel):
    """out_grad_kernel (3, 3, C, F) = K^T grad_u, the adjoint of winograd_kernel_transform; grad_u: (a^2, C, F), the
    gradient with respect to the transformed kernel, a^2 = 16 or 36."""
    if grad_u.shape[0] != KERNEL_T_2.shape[0] and grad_u.shape[0] != KERNEL_T_4.shape[0]:
        raise ValueError("winograd_kernel_transform_backward: grad_u must have 16 (F(2x2)) or 36 (F(4x4)) positions")
    kernel_n = KERNEL_N_2 if grad_u.shape[0] == KERNEL_T_2.shape[0] else KERNEL_N_4
    np.dot(kernel_n, grad_u.reshape(grad_u.shape[0], -1), out_grad_kernel.reshape(9, -1))


@njit(**SERIAL)
def _count_nonfinite(values):
    """How many of values (flat float32) are NaN or +-inf: a non-finite pixel always leaves one among the products.

    An integer test on the bits (exponent field all ones), which vectorises, as src_ext/winograd.pyx's all_finite:
    a loop of ``np.isfinite`` per value took 77 us for one (36, 64, 64) block, 12.5 ms of cats vs dogs' conv2
    forward; this takes 20 us."""
    bits = values.view(np.uint32)
    count = np.uint64(0)
    for i in range(np.uint64(bits.shape[0])):
        count += np.uint64((bits[i] & np.uint32(0x7F800000)) == np.uint32(0x7F800000))
    return np.int64(count)


@njit(**SERIAL)
def line(matrix, src, src_offset, src_stride, dst, dst_offset, dst_stride, count):
    """dst[dst_offset + i * dst_stride + c] = sum_k matrix[i, k] * src[src_offset + k * src_stride + c] for c < count:
    one of the transforms' six matrices (B^T, A^T or A of F(2x2) or F(4x4), told apart by their shapes) applied
    to its vectors; src, dst flat float32, offsets, strides and count unsigned (uint64).

    The matrices are written out, as in src_ext/_winograd_lines.pxd: one loop over c reads the inputs once and
    writes each output once, the sums in the matrix's column order. The loops are compiled with their arguments
    marked as not aliasing one another (``NO_ALIAS``, Cython's ``__restrict__``): the lines a transform reads and
    writes never overlap, and without the mark LLVM would check the twelve lines' ranges against each other at run
    time on every call, or not vectorise. tests/test_kernels.py checks each against winograd_tiles' matrix.
    """
    rows, columns = matrix.shape
    if columns == 6:
        if rows == 6:
            _input_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count)
        else:
            _output_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, NO_BIAS, False)
    elif columns == 4:
        if rows == 6:
            _gradient_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count)
        elif rows == 4:
            _input_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count)
        else:
            _output_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, NO_BIAS, False)
    else:
        _gradient_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count)


# Each line below: src and dst flat float32 (never overlapping where they are read and written), src_offset,
# src_stride (the distance between the vectors read), dst_offset, dst_stride and count unsigned; every index is
# unsigned arithmetic (a signed term would make Numba compute the index in float64). A^T's lines, the output
# transform's, also finish the convolution when they write the output: ``bias`` (count,) added to every vector
# written, then max(., 0), NaN kept, if ``relu`` (NO_BIAS: the first pass, nothing added). In the same loop, the
# sums rounded to float32 first as before; a separate pass over the written pixels was not vectorised and took
# 2.9 of cats vs dogs' conv2's 45 ms forward.
NO_BIAS = np.zeros(0, np.float32)


@njit(**SERIAL, inline="always")
def _finish(value, bias, c, relu):
    """value + bias[c], then max(., 0) with NaN kept if relu; value itself where bias is NO_BIAS (empty)."""
    if bias.shape[0] == 0:
        return value
    value = value + bias[c]
    if relu and value <= 0:
        return np.float32(0)
    return value


@njit(**NO_ALIAS)
def _input_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count):
    f = np.float32
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    s2, t2 = s1 + src_stride, t1 + dst_stride
    s3, t3 = s2 + src_stride, t2 + dst_stride
    s4, t4 = s3 + src_stride, t3 + dst_stride
    s5, t5 = s4 + src_stride, t4 + dst_stride
    for c in range(count):
        d0, d1, d2, d3, d4, d5 = src[src_offset + c], src[s1 + c], src[s2 + c], src[s3 + c], src[s4 + c], src[s5 + c]
        dst[dst_offset + c] = d0 - f(1.5) * d1 - f(2) * d2 + f(1.5) * d3 + d4
        dst[t1 + c] = -d1 + f(0.5) * d2 + f(2.5) * d3 + d4
        dst[t2 + c] = d1 - f(2.5) * d2 + f(0.5) * d3 + d4
        dst[t3 + c] = f(-2) * d1 - d2 + f(2) * d3 + d4
        dst[t4 + c] = f(0.5) * d1 - d2 - f(0.5) * d3 + d4
        dst[t5 + c] = d1 - f(1.5) * d2 - f(2) * d3 + f(1.5) * d4 + d5


@njit(**NO_ALIAS)
def _output_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, bias, relu):
    f = np.float32
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    s2, t2 = s1 + src_stride, t1 + dst_stride
    s3, t3 = s2 + src_stride, t2 + dst_stride
    s4, s5 = s3 + src_stride, s3 + src_stride + src_stride
    for c in range(count):
        d0, d1, d2, d3, d4, d5 = src[src_offset + c], src[s1 + c], src[s2 + c], src[s3 + c], src[s4 + c], src[s5 + c]
        dst[dst_offset + c] = _finish(d0 + d1 + d2 + d3 + d4, bias, c, relu)
        dst[t1 + c] = _finish(d1 - d2 + f(0.5) * d3 - f(2) * d4, bias, c, relu)
        dst[t2 + c] = _finish(d1 + d2 + f(0.25) * d3 + f(4) * d4, bias, c, relu)
        dst[t3 + c] = _finish(d1 - d2 + f(0.125) * d3 - f(8) * d4 + d5, bias, c, relu)


@njit(**NO_ALIAS)
def _gradient_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count):
    f = np.float32
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    s2, t2 = s1 + src_stride, t1 + dst_stride
    s3, t3 = s2 + src_stride, t2 + dst_stride
    t4, t5 = t3 + dst_stride, t3 + dst_stride + dst_stride
    for c in range(count):
        d0, d1, d2, d3 = src[src_offset + c], src[s1 + c], src[s2 + c], src[s3 + c]
        dst[dst_offset + c] = d0
        dst[t1 + c] = d0 + d1 + d2 + d3
        dst[t2 + c] = d0 - d1 + d2 - d3
        dst[t3 + c] = d0 + f(0.5) * d1 + f(0.25) * d2 + f(0.125) * d3
        dst[t4 + c] = d0 - f(2) * d1 + f(4) * d2 - f(8) * d3
        dst[t5 + c] = d3


@njit(**NO_ALIAS)
def _input_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count):
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    s2, t2 = s1 + src_stride, t1 + dst_stride
    s3, t3 = s2 + src_stride, t2 + dst_stride
    for c in range(count):
        d0, d1, d2, d3 = src[src_offset + c], src[s1 + c], src[s2 + c], src[s3 + c]
        dst[dst_offset + c] = d0 - d2
        dst[t1 + c] = d1 + d2
        dst[t2 + c] = d2 - d1
        dst[t3 + c] = d1 - d3


@njit(**NO_ALIAS)
def _output_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, bias, relu):
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    s2, s3 = s1 + src_stride, s1 + src_stride + src_stride
    for c in range(count):
        d0, d1, d2, d3 = src[src_offset + c], src[s1 + c], src[s2 + c], src[s3 + c]
        dst[dst_offset + c] = _finish(d0 + d1 + d2, bias, c, relu)
        dst[t1 + c] = _finish(d1 - d2 - d3, bias, c, relu)


@njit(**NO_ALIAS)
def _gradient_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count):
    s1, t1 = src_offset + src_stride, dst_offset + dst_stride
    t2, t3 = t1 + dst_stride, t1 + dst_stride + dst_stride
    for c in range(count):
        d0, d1 = src[src_offset + c], src[s1 + c]
        dst[dst_offset + c] = d0
        dst[t1 + c] = d0 + d1
        dst[t2 + c] = d0 - d1
        dst[t3 + c] = -d1


@njit(**SERIAL)
def _input_transform(x_sample, input_t, v, v_offset, top, left, patch, rows):
    """v[k * tiles * C + v_offset + c] = (B^T d B)[k] for the a x a patch d at (top, left) of x_sample (H, W, C),
    zeros outside it; v_offset = t * C places tile t of a (a^2, tiles, C) block.

    input_t: B^T (a, a); v: that block, flat; patch, rows: >= a * a * C floats of scratch (flat). A patch wholly
    inside the input is read in place; the first pass (B^T d) runs over whole rows of a pixels, a * C values at a
    time (cats vs dogs' conv2 tiles: 2.8 -> 1.6 us each)."""
    height, width, channels = x_sample.shape
    a = input_t.shape[0]
    unsigned_channels = np.uint64(channels)
    span = np.uint64(a) * unsigned_channels
    v_stride = np.uint64(v.shape[0]) // np.uint64(a * a)
    if top >= 0 and left >= 0 and top + a <= height and left + a <= width:
        source, source_stride = x_sample.reshape(-1), np.uint64(width) * unsigned_channels
        source_offset = np.uint64(top * width + left) * unsigned_channels
    else:
        x_flat = x_sample.reshape(-1)
        for i in range(a):
            row = top + i
            for j in range(a):
                col = left + j
                target = np.uint64(a * i + j) * unsigned_channels
                if row < 0 or row >= height or col < 0 or col >= width:
                    for c in range(unsigned_channels):
                        patch[target + c] = 0.0
                else:
                    start = np.uint64(row * width + col) * unsigned_channels
                    for c in range(unsigned_channels):
                        patch[target + c] = x_flat[start + c]
        source, source_stride, source_offset = patch, span, np.uint64(0)
    line(input_t, source, source_offset, source_stride, rows, np.uint64(0), span, span)  # rows: B^T d
    for i in range(a):  # columns: (B^T d) B
        line(input_t, rows, np.uint64(i) * span, unsigned_channels, v, np.uint64(a * i) * v_stride + v_offset, v_stride, unsigned_channels)


@njit(**SERIAL)
def _output_line(output_t, src, src_offset, src_stride, dst, dst_offset, dst_stride, count, bias, relu):
    """A^T's line (output_t: (m, a), F(2x2) or F(4x4)) with the convolution's epilogue: bias (count,) added to every
    vector written, then max(., 0) if relu; NO_BIAS adds nothing."""
    if output_t.shape[1] == 6:
        _output_line_4(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, bias, relu)
    else:
        _output_line_2(src, src_offset, src_stride, dst, dst_offset, dst_stride, count, bias, relu)


@njit(**SERIAL)
def _output_transform(m, output_t, m_offset, y_sample, top, left, bias, relu, rows):
    """The m x m pixels at (top, left) of y_sample (OH, OW, F) = A^T M A + bias (then max(., 0), NaN kept, if
    ``relu``), those inside it only.

    m: a flat (a^2, tiles, F) block, position k of tile t at m[k * tiles * F + m_offset], m_offset = t * F;
    output_t: A^T (m, a); rows: >= a * a * F floats of scratch (flat).
    """
    out_h, out_w, filters = y_sample.shape
    side, a = output_t.shape
    unsigned_filters = np.uint64(filters)
    m_stride = np.uint64(m.shape[0]) // np.uint64(a * a)
    for j in range(a):  # rows: A^T M
        _output_line(output_t, m, np.uint64(j) * m_stride + m_offset, np.uint64(a) * m_stride, rows, np.uint64(j) * unsigned_filters, np.uint64(a) * unsigned_filters, unsigned_filters, NO_BIAS, False)
    y_flat = y_sample.reshape(-1)
    kept_h, kept_w = min(side, out_h - top), min(side, out_w - left)
    clipped = np.uint64(side * a) * unsigned_filters  # a clipped row is made whole in rows[clipped:], then copied
    for i in range(kept_h):  # columns: (A^T M) A + bias
        row_start = np.uint64((top + i) * out_w + left) * unsigned_filters
        if kept_w == side:
            _output_line(output_t, rows, np.uint64(a * i) * unsigned_filters, unsigned_filters, y_flat, row_start, unsigned_filters, unsigned_filters, bias, relu)
        else:
            _output_line(output_t, rows, np.uint64(a * i) * unsigned_filters, unsigned_filters, rows, clipped, unsigned_filters, unsigned_filters, bias, relu)
            y_flat[row_start:row_start + np.uint64(kept_w) * unsigned_filters] = rows[clipped:clipped + np.uint64(kept_w) * unsigned_filters]


@njit(**SERIAL)
def _gradient_transform(grad_sample, output_n, z, z_offset, top, left, patch, rows):
    """z[k * tiles * F + z_offset + f] = (A dY A^T)[k] for the m x m output gradient dY at (top, left) of
    grad_sample (OH, OW, F), zeros outside it; z_offset = t * F places tile t of a flat (a^2, tiles, F) block.

    output_n: A (a, m); patch, rows: >= a * a * F floats of scratch (flat). A tile wholly inside is read in place
    and the first pass (A dY) runs over whole rows of m pixels, as in _input_transform."""
    out_h, out_w, filters = grad_sample.shape
    a, side = output_n.shape
    unsigned_filters = np.uint64(filters)
    span = np.uint64(side) * unsigned_filters
    z_stride = np.uint64(z.shape[0]) // np.uint64(a * a)
    if top + side <= out_h and left + side <= out_w:
        source, source_stride = grad_sample.reshape(-1), np.uint64(out_w) * unsigned_filters
        source_offset = np.uint64(top * out_w + left) * unsigned_filters
    else:
        grad_flat = grad_sample.reshape(-1)
        for i in range(side):
            for j in range(side):
                target = np.uint64(side * i + j) * unsigned_filters
                if top + i >= out_h or left + j >= out_w:
                    for f in range(unsigned_filters):
                        patch[target + f] = 0.0
                else:
                    start = np.uint64((top + i) * out_w + left + j) * unsigned_filters
                    for f in range(unsigned_filters):
                        patch[target + f] = grad_flat[start + f]
        source, source_stride, source_offset = patch, span, np.uint64(0)
    line(output_n, source, source_offset, source_stride, rows, np.uint64(0), span, span)  # rows: A dY
    for i in range(a):  # columns: (A dY) A^T
        line(output_n, rows, np.uint64(i) * span, unsigned_filters, z, np.uint64(a * i) * z_stride + z_offset, z_stride, unsigned_filters)


@njit(**SERIAL)
def _tile_origin(tile, tiles_h, tiles_w, side):
    """(n, top, left): the sample of tile number ``tile`` of the (N, tiles_h, tiles_w) grid of side x side output
    tiles, and the output pixel at its top left corner."""
    return tile // (tiles_h * tiles_w), side * ((tile // tiles_w) % tiles_h), side * (tile % tiles_w)


@njit(**SERIAL)
def _input_transforms(x, input_t, v, first, count, tiles_h, tiles_w, plan, patch, rows):
    """V of a block: _input_transform of tiles first .. first + count - 1, tile t of the block at offset t * C of
    each position of v (flat (a^2, block tiles, C)); the input is read ``plan.pad_top``/``pad_left`` up and left."""
    side, channels = input_t.shape[0] - 2, x.shape[3]
    for t in range(count):
        n, top, left = _tile_origin(first + t, tiles_h, tiles_w, side)
        _input_transform(x[n], input_t, v, np.uint64(t * channels), top - plan.pad_top, left - plan.pad_left, patch, rows)


@njit(**SERIAL)
def _matrices(positions):
    """B^T, A^T and A of the tile whose transformed kernel has ``positions`` (a^2) rows: 16 F(2x2), 36 F(4x4)."""
    if positions == INPUT_T_2.size:
        return INPUT_T_2, OUTPUT_T_2, OUTPUT_N_2
    if positions == INPUT_T_4.size:
        return INPUT_T_4, OUTPUT_T_4, OUTPUT_N_4
    raise ValueError("Winograd kernels: a transformed kernel must have 16 (F(2x2)) or 36 (F(4x4)) positions")


@njit(**SERIAL)
def _tile_grid(batch, out_h, out_w, side, block_tiles):
    """(tiles_h, tiles_w, tiles, blocks): the grid of side x side tiles over an (N, OH, OW) output, in blocks."""
    tiles_h, tiles_w = (out_h + side - 1) // side, (out_w + side - 1) // side
    tiles = batch * tiles_h * tiles_w
    return tiles_h, tiles_w, tiles, (tiles + block_tiles - 1) // block_tiles


# The blocks run on the Cython driver (``_driver``), as conv.py's: record layouts (fields of int64, an array as its
# address then its shape): forward x (4-D), u (3-D), bias, out_y (4-D), the per-block counts of products that are
# not finite, ConvPlan; the kernel gradient's is _driver's (its partials 4-D).
_X, _U, _BIAS, _Y, _NONFINITE, _PLAN = 0, 5, 9, 11, 16, 18


@njit(**SERIAL)
def _block_scratch(job, positions, block_tiles, channels, filters):
    """The running thread's V (or its input tiles), M (or Z) and two tile rows, flat, from its own scratch; None
    where there is no memory for them."""
    side = 6 if positions == 36 else 4
    width = max(channels, filters)
    v = scratch(job, 0, positions * block_tiles * channels)
    m = scratch(job, 1, positions * block_tiles * filters)
    patch = scratch(job, 2, side * side * width)
    rows = scratch(job, 3, side * side * width)
    return v, m, patch, rows


def winograd_conv2d_backward_kernel(x, grad_out, out_grad_u, out_grad_bias, plan):
    """out_grad_u[k] = sum over tiles of V[k]^T Z[k], the gradient with respect to the transformed kernel (a^2, C, F),
    its a^2 (16 or 36) picking F(2x2) or F(4x4); out_grad_bias (F,) = grad_out summed over N, OH, OW ((0,) to skip).

    The blocks are cut into a fixed number of groups (``group_count``), each summed into its own partial by whichever
    thread takes it, added in group order, so results are repeatable. False if the sum is not finite (x or grad_out
    held a NaN or +-inf).
    """
    positions, channels, filters = out_grad_u.shape
    side = math.isqrt(positions) - 2  # the output tile's side, m = a - 2
    blocks = _tile_grid(grad_out.shape[0], grad_out.shape[1], grad_out.shape[2], side, plan.block_tiles)[3]
    groups = group_count(blocks, plan.threads)
    partials = buffers.pool.empty((groups, positions, channels, filters))
    return _winograd_conv2d_backward_kernel_launch(x, grad_out, out_grad_u, out_grad_bias, plan, partials, DRIVER,
                                                   _WINOGRAD_BACKWARD_KERNEL_BLOCK)  # fmt: skip


@njit(**SERIAL)
def _winograd_conv2d_backward_kernel_launch(x, grad_out, out_grad_u, out_grad_bias, plan, partials, driver, block_fn):
    _matrices(out_grad_u.shape[0])  # ValueError for neither tile, here: a block function cannot raise
    run_kernel_gradient(x, grad_out, partials, out_grad_u, out_grad_bias, plan, driver, block_fn)
    return _count_nonfinite(out_grad_u.reshape(-1)) == 0


@njit(**SERIAL)
def _winograd_conv2d_backward_kernel_block(job, group):
    """Group ``group`` of the tile blocks, summed into its partial."""
    x, grad_out, partials = float32_4d(job, GRADIENT_X), float32_4d(job, GRADIENT_Y), float32_4d(job, GRADIENT_PARTIALS)
    plan = conv_plan_at(job, GRADIENT_PLAN)
    batch, out_h, out_w, filters = grad_out.shape
    input_t, _, output_n = _matrices(partials.shape[1])
    a, side = output_n.shape
    positions, channels, groups, block_tiles = a * a, x.shape[3], partials.shape[0], plan.block_tiles
    tiles_h, tiles_w, tiles, blocks = _tile_grid(batch, out_h, out_w, side, block_tiles)
    v_flat, z_flat, patch_flat, rows_flat = _block_scratch(job, positions, block_tiles, channels, filters)
    if v_flat.size == 0 or z_flat.size == 0 or patch_flat.size == 0 or rows_flat.size == 0:
        return
    v, z = v_flat.reshape(positions, block_tiles, channels), z_flat.reshape(positions, block_tiles, filters)
    partials[group] = 0.0
    for block in range(group * blocks // groups, (group + 1) * blocks // groups):
        first = block * block_tiles
        count = min(block_tiles, tiles - first)
        _input_transforms(x, input_t, v_flat, first, count, tiles_h, tiles_w, plan, patch_flat, rows_flat)
        for t in range(count):
            n, top, left = _tile_origin(first + t, tiles_h, tiles_w, side)
            _gradient_transform(grad_out[n], output_n, z_flat, np.uint64(t * filters), top, left, patch_flat, rows_flat)
        for k in range(positions):
            gemm(1.0, v[k, :count], TRANSPOSE, z[k, :count], NO_TRANSPOSE, 1.0, partials[group, k])


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _winograd_conv2d_backward_kernel_cfunc(job_address, group):
    _winograd_conv2d_backward_kernel_block(job_of(job_address), group)


_WINOGRAD_BACKWARD_KERNEL_BLOCK = _winograd_conv2d_backward_kernel_cfunc.address


def winograd_conv2d_forward(x, u, bias, out_y, plan):
    """out_y = conv3x3(x, kernel) + bias (then max(., 0) if ``plan.relu``), stride 1, from u =
    winograd_kernel_transform(kernel), in blocks of tiles;
    u's a^2 rows (16 or 36) pick F(2x2) or F(4x4).

    False if a product is not finite (x held a NaN or +-inf; out_y is then not to be used).
    """
    return _winograd_conv2d_forward_launch(x, u, bias, out_y, plan, DRIVER, _WINOGRAD_FORWARD_BLOCK)


@njit(**SERIAL)
def _winograd_conv2d_forward_launch(x, u, bias, out_y, plan, driver, block_fn):
    side = _matrices(u.shape[0])[1].shape[0]  # ValueError for neither tile, here: a block function cannot raise
    blocks = _tile_grid(out_y.shape[0], out_y.shape[1], out_y.shape[2], side, plan.block_tiles)[3]
    nonfinite = np.zeros(blocks, dtype=np.int64)  # products that are not finite, by block
    job = new_job(driver)
    put(job, _X, x)
    put(job, _U, u)
    put(job, _BIAS, bias)
    put(job, _Y, out_y)
    put(job, _NONFINITE, nonfinite)
    put_conv_plan(job, _PLAN, plan)
    run(driver, block_fn, job, blocks, plan.threads)
    return nonfinite.sum() == 0


@njit(**SERIAL)
def _winograd_conv2d_forward_block(job, block):
    x, u, bias, out_y = float32_4d(job, _X), float32_3d(job, _U), float32_1d(job, _BIAS), float32_4d(job, _Y)
    nonfinite, plan = int64_1d(job, _NONFINITE), conv_plan_at(job, _PLAN)
    batch, out_h, out_w, filters = out_y.shape
    input_t, output_t, _ = _matrices(u.shape[0])
    side, a = output_t.shape
    positions, channels, block_tiles = a * a, x.shape[3], plan.block_tiles
    tiles_h, tiles_w, tiles, _ = _tile_grid(batch, out_h, out_w, side, block_tiles)
    v_flat, m_flat, patch_flat, rows_flat = _block_scratch(job, positions, block_tiles, channels, filters)
    if v_flat.size == 0 or m_flat.size == 0 or patch_flat.size == 0 or rows_flat.size == 0:
        return
    v, m = v_flat.reshape(positions, block_tiles, channels), m_flat.reshape(positions, block_tiles, filters)
    first = block * block_tiles
    count = min(block_tiles, tiles - first)
    _input_transforms(x, input_t, v_flat, first, count, tiles_h, tiles_w, plan, patch_flat, rows_flat)
    bad = 0
    for k in range(positions):
        np.dot(v[k, :count], u[k], m[k, :count])
        bad += _count_nonfinite(m[k, :count].reshape(-1))
    nonfinite[block] = bad
    for t in range(count):
        n, top, left = _tile_origin(first + t, tiles_h, tiles_w, side)
        _output_transform(m_flat, output_t, np.uint64(t * filters), out_y[n], top, left, bias, plan.relu, rows_flat)


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _winograd_conv2d_forward_cfunc(job_address, block):
    _winograd_conv2d_forward_block(job_of(job_address), block)


_WINOGRAD_FORWARD_BLOCK = _winograd_conv2d_forward_cfunc.address
