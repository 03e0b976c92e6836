"""What the CUDA kernels share: the launch configuration of element-wise kernels, a fill and a column sum."""

from numba import config, cuda, float64

# The simulator runs every GPU thread as a Python thread: there, small blocks keep tests quick.
THREADS = 32 if config.ENABLE_CUDASIM else 256


def blocks(count):
    """Blocks of THREADS threads that cover ``count`` elements (at least one)."""
    return max(1, (count + THREADS - 1) // THREADS)


@cuda.jit
def _column_sums_kernel(matrix, sums):
    col = cuda.grid(1)
    if col < matrix.shape[1]:
        total = float64(0.0)
        for row in range(matrix.shape[0]):
            total += matrix[row, col]
        sums[col] = total


def column_sums(matrix, sums):
    _column_sums_kernel[blocks(matrix.shape[1]), THREADS](matrix, sums)


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
