"""The one GEMM of the CUDA backend: shared-memory tiles, register-blocked, bias in its epilogue.

The convolution (im2col + GEMM, and a gathering col2im for the input gradient) and the dense layer share it.
"""

from numba import config, cuda, float32

# GEMM blocking: each block computes a BM x BN tile of C from BK-deep slices of A and B staged in
# shared memory; each thread keeps a TM x TN sub-tile in registers. The simulator runs every GPU
# thread as a Python thread: there, small tiles and blocks keep tests quick (and make the GEMM cross
# many tile boundaries, which is what the tests should exercise).
if config.ENABLE_CUDASIM:
    BM, BN, BK, TM, TN = 8, 8, 4, 2, 2
else:
    BM, BN, BK, TM, TN = 64, 64, 8, 4, 4
GEMM_THREADS = (BM // TM) * (BN // TN)


@cuda.jit
def _gemm_kernel(a, b, c, bias, m, n, k, transpose_a, transpose_b, beta, use_bias):
    """c (m, n) = op(a) @ op(b) + beta * c (+ bias over columns).

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
    for i in range(TM):
        for j in range(TN):
            accumulator[i, j] = 0.0
    for depth in range(0, k, BK):
        for element in range(thread, BM * BK, GEMM_THREADS):
            i, kk = element // BK, element % BK
            row, kc = first_row + i, depth + kk
            value = float32(0.0)
            if row < m and kc < k:
                value = a[kc, row] if transpose_a else a[row, kc]
            tile_a[kk, i] = value
        for element in range(thread, BK * BN, GEMM_THREADS):
            kk, j = element // BN, element % BN
            kc, col = depth + kk, first_col + j
            value = float32(0.0)
            if kc < k and col < n:
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
                if beta != 0.0:
                    value += beta * c[row, col]
                if use_bias:
                    value += bias[col]
                c[row, col] = value


def gemm(a, b, c, transpose_a=False, transpose_b=False, beta=0.0, bias=None):
    """c = op(a) @ op(b) + beta * c (+ bias), row-major device matrices."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    use_bias = bias is not None
    grid = ((n + BN - 1) // BN, (m + BM - 1) // BM)
    _gemm_kernel[grid, (BN // TN, BM // TM)](a, b, c, bias if use_bias else c[0], m, n, k, transpose_a, transpose_b, beta, use_bias)
