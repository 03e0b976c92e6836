"""What the Numba kernels share: their compile options, the bias and ReLU epilogues and one reduction."""

import numpy as np
from numba import njit, prange

# Compiled on first use and cached on disk; nogil so that Python threads may call them at once.
SERIAL = dict(cache=True, nogil=True)
PARALLEL = dict(cache=True, nogil=True, parallel=True)


@njit(**SERIAL)
def relu_in_place(values):
    """values = max(values, 0), NaN kept (as relu_forward), any shape: the forward convolution's epilogue."""
    flat = values.reshape(-1)
    for i in range(np.uint64(flat.shape[0])):  # a select, not a branch, and an unsigned index: both vectorise
        value = flat[i]
        flat[i] = 0.0 if value <= 0 else value


@njit(**SERIAL)
def add_bias_relu(block, bias, relu):
    """block (rows, F) += bias (F,), then max(., 0), NaN kept, if ``relu``: the GEMM forward's epilogue, one pass.

    As one loop with selects over unsigned offsets it vectorises; ``block += bias`` and a branch per element took
    5x as long on a (2048, 32) block.
    """
    rows, filters = block.shape
    flat, unsigned_filters = block.reshape(-1), np.uint64(filters)
    for i in range(np.uint64(rows)):
        start = i * unsigned_filters
        for f in range(unsigned_filters):
            value = flat[start + f] + bias[f]
            if relu:
                value = 0.0 if value <= 0 else value
            flat[start + f] = value


# Below this many elements column sums run on the calling thread: starting a parallel region cost ~0.3 ms, where
# summing a (7744, 64) gradient (MNIST's conv2) takes 0.06 ms on one thread.
_PARALLEL_SUM_ELEMENTS = 1 << 22


@njit(**SERIAL)
def column_sums(matrix, sums):
    """sums[j] = sum_i matrix[i, j], in float64: row blocks in parallel for a large matrix, else on this thread."""
    if matrix.size >= _PARALLEL_SUM_ELEMENTS:
        _column_sums_parallel(matrix, sums)
        return
    acc = np.zeros(matrix.shape[1])
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            acc[j] += matrix[i, j]
    for j in range(matrix.shape[1]):
        sums[j] = acc[j]


@njit(**PARALLEL)
def _column_sums_parallel(matrix, sums):
    rows, cols = matrix.shape
    blocks = 16
    partial = np.zeros((blocks, cols))
    for block in prange(blocks):
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            for j in range(cols):
                partial[block, j] += matrix[i, j]
    for j in range(cols):
        sums[j] = partial[:, j].sum()
