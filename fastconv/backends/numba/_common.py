"""What the Numba kernels share: their compile options, the ReLU epilogue and one reduction."""

import numpy as np
from numba import njit, prange

# Compiled on first use and cached on disk; nogil so that Python threads may call them at once.
SERIAL = dict(cache=True, nogil=True)
PARALLEL = dict(cache=True, nogil=True, parallel=True)


@njit(**SERIAL)
def relu_in_place(values):
    """values = max(values, 0), NaN kept (as relu_forward), any shape: the forward convolution's epilogue."""
    flat = values.reshape(-1)
    for i in range(flat.shape[0]):
        if flat[i] <= 0:
            flat[i] = 0.0


@njit(**PARALLEL)
def column_sums(matrix, sums):
    """sums[j] = sum_i matrix[i, j], in float64, row blocks in parallel."""
    rows, cols = matrix.shape
    blocks = 16 if rows >= 16 else 1
    partial = np.zeros((blocks, cols))
    for block in prange(blocks):
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            for j in range(cols):
                partial[block, j] += matrix[i, j]
    for j in range(cols):
        sums[j] = partial[:, j].sum()
