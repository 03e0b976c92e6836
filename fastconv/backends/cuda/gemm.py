"""The one GEMM of the CUDA backend: shared-memory tiles, register-blocked, bias in its epilogue.

The convolution (im2col + GEMM, and a gathering col2im for the input gradient) and the dense layer share it.
A product with few output tiles and a long depth (every kernel gradient: (KH*KW*C, F) summed over N*OH*OW
pixels) is split along its depth so that the whole GPU works on it: each slice of the depth writes its partial
product, and a second kernel adds the slices in order (the same bits on every run; no atomics).
"""

import functools

import numpy as np
from numba import config, cuda, float32

from fastconv.backends.cuda._common import THREADS, blocks

# GEMM blocking: each block computes a BM x BN tile of C from BK-deep slices of A and B staged in
# shared memory; each thread keeps a TM x TN sub-tile in registers. The simulator runs every GPU
# thread as a Python thread: there, small tiles and blocks keep tests quick (and make the GEMM cross
# many tile boundaries, which is what the tests should exercise).
if config.ENABLE_CUDASIM:
    BM, BN, BK, TM, TN = 8, 8, 4, 2, 2
else:
    BM, BN, BK, TM, TN = 64, 64, 8, 4, 4
GEMM_THREADS = (BM // TM) * (BN // TN)
# Split the depth while the output tiles fill fewer than target_blocks() blocks (two per multiprocessor on a GPU),
# into slices of at least MIN_SLICE_DEPTH (so that a block's loop stays long enough to pay for its partial tile).
MIN_SLICE_DEPTH = 2 * BK if config.ENABLE_CUDASIM else 256


@functools.cache
def target_blocks():
    """Blocks that keep the GPU busy: two per multiprocessor (16 under the simulator, so that tests split)."""
    return 16 if config.ENABLE_CUDASIM else 2 * cuda.get_current_device().MULTIPROCESSOR_COUNT


def depth_slices(m, n, k):
    """How many slices of the depth ``k`` an (m, n) product is split into (1: not split)."""
    tiles = ((m + BM - 1) // BM) * ((n + BN - 1) // BN)
    if tiles >= target_blocks():
        return 1
    return max(1, min((target_blocks() + tiles - 1) // tiles, k // MIN_SLICE_DEPTH))


@cuda.jit
def _gemm_kernel(a, b, c_slices, bias, m, n, k, slice_depth, transpose_a, transpose_b, beta, use_bias):
    """c_slices[z] (m, n) = op(a)[:, depths of slice z] @ op(b)[depths of slice z, :], z = blockIdx.z, slice z
    holding depths [z * slice_depth, (z + 1) * slice_depth); with one slice, + beta * c + bias (the epilogue).

    Register-blocked: a block of (BN/TN, BM/TM) threads owns a BM x BN tile of c; per BK-deep step
    it stages op(a)[tile rows, step] (transposed, so a thread's TM values are contiguous) and
    op(b)[step, tile columns] in shared memory, then each thread updates its TM x TN accumulators.
    """
    tile_a = cuda.shared.array((BK, BM), float32)
    tile_b = cuda.shared.array((BK, BN), float32)
    accumulator = cuda.local.array((TM, TN), float32)
    a_values = cuda.local.array(TM, float32)
    b_values = cuda.local.array(TN, float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    thread = ty * (BN // TN) + tx
    first_row, first_col = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    first_depth = cuda.blockIdx.z * slice_depth
    last_depth = min(k, first_depth + slice_depth)
    c = c_slices[cuda.blockIdx.z]
    epilogue = c_slices.shape[0] == 1
    for i in range(TM):
        for j in range(TN):
            accumulator[i, j] = 0.0
    for depth in range(first_depth, last_depth, BK):
        for element in range(thread, BM * BK, GEMM_THREADS):
            i, kk = element // BK, element % BK
            row, kc = first_row + i, depth + kk
            value = float32(0.0)
            if row < m and kc < last_depth:
                value = a[kc, row] if transpose_a else a[row, kc]
            tile_a[kk, i] = value
        for element in range(thread, BK * BN, GEMM_THREADS):
            kk, j = element // BN, element % BN
            kc, col = depth + kk, first_col + j
            value = float32(0.0)
            if kc < last_depth and col < n:
                value = b[col, kc] if transpose_b else b[kc, col]
            tile_b[kk, j] = value
        cuda.syncthreads()
        for kk in range(BK):
            for i in range(TM):
                a_values[i] = tile_a[kk, ty * TM + i]
            for j in range(TN):
                b_values[j] = tile_b[kk, tx * TN + j]
            for i in range(TM):
                for j in range(TN):
                    accumulator[i, j] += a_values[i] * b_values[j]
        cuda.syncthreads()
    for i in range(TM):
        row = first_row + ty * TM + i
        for j in range(TN):
            col = first_col + tx * TN + j
            if row < m and col < n:
                value = accumulator[i, j]
                if epilogue and beta != 0.0:
                    value += beta * c[row, col]
                if epilogue and use_bias:
                    value += bias[col]
                c[row, col] = value


@cuda.jit
def _add_slices_kernel(c_slices, c, bias, beta, use_bias):
    """c = the sum of c_slices over its first axis, in slice order (+ beta * c + bias)."""
    index = cuda.grid(1)
    m, n = c.shape
    if index >= m * n:
        return
    row, col = index // n, index % n
    value = float32(0.0)
    for z in range(c_slices.shape[0]):
        value += c_slices[z, row, col]
    if beta != 0.0:
        value += beta * c[row, col]
    if use_bias:
        value += bias[col]
    c[row, col] = value


def gemm(a, b, c, transpose_a=False, transpose_b=False, beta=0.0, bias=None):
    """c = op(a) @ op(b) + beta * c (+ bias), row-major device matrices; split along the depth where the output
    alone would leave most of the GPU idle (:func:`depth_slices`)."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    use_bias = bias is not None
    bias = bias if use_bias else c[0]
    slices = depth_slices(m, n, k)
    depth = -(-k // slices)
    slice_depth = max(BK, -(-depth // BK) * BK)  # whole BK steps: every slice but the last is full
    slices = max(1, -(-k // slice_depth))
    grid = ((n + BN - 1) // BN, (m + BM - 1) // BM, slices)
    c_slices = c.reshape(1, m, n) if slices == 1 else cuda.device_array((slices, m, n), dtype=np.float32)
    _gemm_kernel[grid, (BN // TN, BM // TM)](a, b, c_slices, bias, m, n, k, slice_depth, transpose_a, transpose_b, beta, use_bias)
    if slices > 1:
        _add_slices_kernel[blocks(m * n), THREADS](c_slices, c, bias, beta, use_bias)
