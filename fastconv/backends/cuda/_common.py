"""What the CUDA kernels share: the launch configuration of element-wise kernels, a fill and a column sum."""

import numpy as np
from numba import config, cuda, float64

# The simulator runs every GPU thread as a Python thread: there, small blocks keep tests quick.
THREADS = 32 if config.ENABLE_CUDASIM else 256


def blocks(count):
    """Blocks of THREADS threads that cover ``count`` elements (at least one)."""
    return max(1, (count + THREADS - 1) // THREADS)


# Column sums in two passes: each thread of the first adds up one column over ROWS_PER_PART rows (neighbouring
# threads read neighbouring columns), the second adds the parts in order. A thread per column over all rows took
# a serial loop of N*OH*OW (700k for cats vs dogs' conv1) on 32 threads.
ROWS_PER_PART = 4 if config.ENABLE_CUDASIM else 512


@cuda.jit
def _column_parts_kernel(matrix, parts):
    index = cuda.grid(1)
    rows, columns = matrix.shape
    if index >= parts.shape[0] * columns:
        return
    part, col = index // columns, index % columns
    total = float64(0.0)
    for row in range(part * ROWS_PER_PART, min(rows, (part + 1) * ROWS_PER_PART)):
        total += matrix[row, col]
    parts[part, col] = total


@cuda.jit
def _column_sums_kernel(parts, sums):
    col = cuda.grid(1)
    if col < parts.shape[1]:
        total = float64(0.0)
        for part in range(parts.shape[0]):
            total += parts[part, col]
        sums[col] = total


def column_sums(matrix, sums):
    """sums (n,) = matrix (m, n) summed over its rows (float64 inside, float32 out), the same bits on every run."""
    rows, columns = matrix.shape
    parts = cuda.device_array((max(1, -(-rows // ROWS_PER_PART)), columns), dtype=np.float64)
    _column_parts_kernel[blocks(parts.size), THREADS](matrix, parts)
    _column_sums_kernel[blocks(columns), THREADS](parts, sums)


@cuda.jit
def _fill_kernel(flat, value):
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = value


def fill(array, value):
    """Set every element of a device array to ``value``."""
    flat = array.reshape(array.size)
    _fill_kernel[blocks(flat.shape[0]), THREADS](flat, value)


@cuda.jit(device=True)
def nhwc_index(index, height, width, channels):
    """(n, row, col, channel) of the flat index of a C-contiguous (N, H, W, C) array."""
    return index // (channels * width * height), (index // (channels * width)) % height, (index // channels) % width, index % channels
