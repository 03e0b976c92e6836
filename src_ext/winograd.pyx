# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), NHWC float32.

Each 2x2 block of output pixels (a tile) is computed from the 4x4 input patch under it as
Y = A^T [(G g G^T) * (B^T d B)] A: 16 products per tile and channel pair instead of 36, so the
multiplications drop 2.25x. The 16 element-wise products over all channel pairs are 16 matrix
products, (tiles, C) @ (C, F), done by BLAS on blocks of tiles that fit a core's cache:

    U[k] = (G g G^T)[k]: (C, F), k = 0..15       transformed once per call (winograd_kernel_transform)
    V[k] = (B^T d B)[k]: (tiles, C)              per block, in the thread that multiplies it
    M[k] = V[k] @ U[k]:  (tiles, F)              16 BLAS calls per block
    y    = A^T M A + bias                        2x2 pixels per tile, clipped to the output

The transforms use only 0, +-1 and +-1/2, so F(2x2, 3x3) keeps float32 within the tolerance of the direct
method; F(4x4, 3x3) would need coefficients up to 8 and loses about two more digits. The padding is read as
zeros (tiles are clipped to the input), so 'same' and 'valid' differ only in pad_top/pad_left and the output size.
The gradient to the input is this same convolution of grad_out with the kernel rotated by 180 degrees and its
channels swapped (see fastconv.backends.compiled); the gradient to the kernel stays with im2col.

The transforms mix the 16 pixels of a patch, so one NaN or +-inf would reach outputs whose window does not hold
it (and inf - inf makes NaN of an output the direct method gives as inf). Both kernels therefore report a
non-finite kernel or product (a non-finite input pixel always leaves one in M: inf * 0 is NaN and no sum makes
a NaN or inf finite again), and the caller computes that convolution by the direct method instead.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from _linalg cimport gemm_row_major

cdef enum:
    TILE = 4        # the input patch of a tile is TILE x TILE
    POSITIONS = 16  # its transformed positions, row-major: k = 4 * i + j


def winograd_kernel_transform(const float[:, :, :, ::1] kernel, float[:, :, ::1] out_u):
    """out_u[4i+j] = (G g G^T)[i, j] for every channel pair. kernel: (3, 3, C, F); out_u: (16, C, F), written.

    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. Returns False if the kernel holds a NaN or
    +-inf (out_u is then not to be used), else True.
    """
    cdef Py_ssize_t channels = kernel.shape[2], filters = kernel.shape[3]
    if kernel.shape[0] != 3 or kernel.shape[1] != 3 or out_u.shape[0] != POSITIONS \
            or out_u.shape[1] != channels or out_u.shape[2] != filters:
        raise ValueError(f"winograd_kernel_transform: kernel ({kernel.shape[0]}, {kernel.shape[1]}, {channels}, "
                         f"{filters}) and out_u ({out_u.shape[0]}, {out_u.shape[1]}, {out_u.shape[2]}) must be "
                         f"(3, 3, C, F) and (16, C, F)")
    cdef Py_ssize_t c
    if not all_finite(&kernel[0, 0, 0, 0], 9 * channels * filters):
        return False
    with nogil:
        for c in prange(channels, schedule='static'):
            transform_filters(&kernel[0, 0, c, 0], channels * filters, &out_u[0, c, 0], channels * filters, filters)
    return True


cdef bint all_finite(const float* values, Py_ssize_t count) noexcept nogil:
    """No NaN or +-inf among values[0:count]: no exponent field all ones (an integer test, which vectorises)."""
    cdef const unsigned int* bits = <const unsigned int*>values
    cdef Py_ssize_t i
    cdef unsigned int special = 0
    for i in range(count):
        special += (bits[i] & 0x7f800000u) == 0x7f800000u
    return special == 0


cdef void transform_filters(const float* g, Py_ssize_t g_stride, float* u, Py_ssize_t u_stride,
                            Py_ssize_t filters) noexcept nogil:
    """u[k * u_stride + f] = (G g G^T)[k] for one input channel and every filter f, g[(3r + s) * g_stride + f]
    holding the kernel tap (r, s): one pass over the filters, which the compiler vectorises."""
    cdef Py_ssize_t f, r, col
    cdef float g0, g1, g2, a, b, c
    cdef float rows[4][3]  # G g
    for f in range(filters):
        for col in range(3):
            g0 = g[(0 + col) * g_stride + f]
            g1 = g[(3 + col) * g_stride + f]
            g2 = g[(6 + col) * g_stride + f]
            rows[0][col] = g0
            rows[1][col] = 0.5 * (g0 + g1 + g2)
            rows[2][col] = 0.5 * (g0 - g1 + g2)
            rows[3][col] = g2
        for r in range(TILE):
            a = rows[r][0]
            b = rows[r][1]
            c = rows[r][2]
            u[(4 * r + 0) * u_stride + f] = a
            u[(4 * r + 1) * u_stride + f] = 0.5 * (a + b + c)
            u[(4 * r + 2) * u_stride + f] = 0.5 * (a - b + c)
            u[(4 * r + 3) * u_stride + f] = c


cdef void input_transform(const float* x_sample, float* v, Py_ssize_t tile_stride, Py_ssize_t top,
                          Py_ssize_t left, Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels,
                          float* patch) noexcept nogil:
    """v[k * tile_stride + c] = (B^T d B)[k] for the 4x4 patch d at (top, left), zeros outside the input.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; patch: 16 * C floats of scratch.
    """
    cdef Py_ssize_t i, j, c, row, col
    cdef const float* source
    cdef float* target
    cdef float d0, d1, d2, d3
    for i in range(TILE):
        row = top + i
        for j in range(TILE):
            col = left + j
            target = patch + (4 * i + j) * channels
            if row < 0 or row >= height or col < 0 or col >= width:
                memset(target, 0, channels * sizeof(float))
            else:
                source = x_sample + (row * width + col) * channels
                for c in range(channels):
                    target[c] = source[c]
    # Rows: patch <- B^T d, in place, one column j at a time.
    for j in range(TILE):
        for c in range(channels):
            d0 = patch[(0 + j) * channels + c]
            d1 = patch[(4 + j) * channels + c]
            d2 = patch[(8 + j) * channels + c]
            d3 = patch[(12 + j) * channels + c]
            patch[(0 + j) * channels + c] = d0 - d2
            patch[(4 + j) * channels + c] = d1 + d2
            patch[(8 + j) * channels + c] = d2 - d1
            patch[(12 + j) * channels + c] = d1 - d3
    # Columns: v <- (B^T d) B.
    for i in range(TILE):
        for c in range(channels):
            d0 = patch[(4 * i + 0) * channels + c]
            d1 = patch[(4 * i + 1) * channels + c]
            d2 = patch[(4 * i + 2) * channels + c]
            d3 = patch[(4 * i + 3) * channels + c]
            v[(4 * i + 0) * tile_stride + c] = d0 - d2
            v[(4 * i + 1) * tile_stride + c] = d1 + d2
            v[(4 * i + 2) * tile_stride + c] = d2 - d1
            v[(4 * i + 3) * tile_stride + c] = d1 - d3


cdef void output_transform(const float* m, Py_ssize_t tile_stride, float* y_sample, Py_ssize_t top,
                           Py_ssize_t left, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                           const float* bias) noexcept nogil:
    """The 2x2 output pixels at (top, left) = A^T m A + bias, those inside the output only.

    m[k * tile_stride + f] holds position k of the tile; A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
    """
    cdef Py_ssize_t f
    cdef float top_0, top_1, top_2, top_3, bottom_0, bottom_1, bottom_2, bottom_3
    cdef float* upper = y_sample + (top * out_w + left) * filters
    cdef float* lower = upper + out_w * filters
    cdef bint right = left + 1 < out_w, below = top + 1 < out_h
    for f in range(filters):
        top_0 = m[f] + m[4 * tile_stride + f] + m[8 * tile_stride + f]
        top_1 = m[tile_stride + f] + m[5 * tile_stride + f] + m[9 * tile_stride + f]
        top_2 = m[2 * tile_stride + f] + m[6 * tile_stride + f] + m[10 * tile_stride + f]
        top_3 = m[3 * tile_stride + f] + m[7 * tile_stride + f] + m[11 * tile_stride + f]
        bottom_0 = m[4 * tile_stride + f] - m[8 * tile_stride + f] - m[12 * tile_stride + f]
        bottom_1 = m[5 * tile_stride + f] - m[9 * tile_stride + f] - m[13 * tile_stride + f]
        bottom_2 = m[6 * tile_stride + f] - m[10 * tile_stride + f] - m[14 * tile_stride + f]
        bottom_3 = m[7 * tile_stride + f] - m[11 * tile_stride + f] - m[15 * tile_stride + f]
        upper[f] = top_0 + top_1 + top_2 + bias[f]
        if right:
            upper[filters + f] = top_1 - top_2 - top_3 + bias[f]
        if below:
            lower[f] = bottom_0 + bottom_1 + bottom_2 + bias[f]
            if right:
                lower[filters + f] = bottom_1 - bottom_2 - bottom_3 + bias[f]


def winograd_conv2d_forward(const float[:, :, :, ::1] x, const float[:, :, ::1] u, const float[::1] bias,
                            float[:, :, :, ::1] out_y, plan):
    """out_y = conv3x3(x, kernel) + bias, stride 1, by F(2x2, 3x3) in blocks of ``plan.block_rows`` tiles.

    x: (N, H, W, C); u: (16, C, F) from winograd_kernel_transform; bias: (F,); out_y: (N, OH, OW, F), written;
    plan: a ConvPlan (3x3, stride 1; pad_top/pad_left as for the direct method; ``block_rows`` counts tiles).
    Returns False if a product is not finite (x held a NaN or +-inf; out_y is then not to be used), else True.
    """
    cdef Py_ssize_t batch = x.shape[0], height = x.shape[1], width = x.shape[2], channels = x.shape[3]
    cdef Py_ssize_t out_h = out_y.shape[1], out_w = out_y.shape[2], filters = out_y.shape[3]
    cdef Py_ssize_t pad_top = plan.pad_top, pad_left = plan.pad_left, block_tiles = plan.block_rows
    cdef int threads = plan.threads
    if (plan.kernel_h, plan.kernel_w, plan.stride_h, plan.stride_w) != (3, 3, 1, 1):
        raise ValueError(f"winograd_conv2d_forward: F(2x2, 3x3) needs a 3x3 kernel and stride 1, got {plan}")
    if block_tiles < 1 or threads < 1:
        raise ValueError(f"winograd_conv2d_forward: block_rows and threads must be positive in {plan}")
    if u.shape[0] != POSITIONS or u.shape[1] != channels or u.shape[2] != filters or bias.shape[0] != filters \
            or out_y.shape[0] != batch:
        raise ValueError(f"winograd_conv2d_forward: x ({batch}, {height}, {width}, {channels}), u ({u.shape[0]}, "
                         f"{u.shape[1]}, {u.shape[2]}), bias ({bias.shape[0]},) and out_y ({out_y.shape[0]}, "
                         f"{out_h}, {out_w}, {filters}) do not agree")
    if max(block_tiles, 1) * max(channels, filters) >= 2**31:
        raise ValueError("winograd_conv2d_forward: a block of tiles is too large for 32-bit BLAS indices")
    cdef Py_ssize_t tiles_h = (out_h + 1) // 2, tiles_w = (out_w + 1) // 2
    cdef Py_ssize_t tiles = batch * tiles_h * tiles_w
    cdef Py_ssize_t blocks = (tiles + block_tiles - 1) // block_tiles
    cdef Py_ssize_t block, first, count, t, tile, n, th, tw, k
    cdef const float* x_data = &x[0, 0, 0, 0]
    cdef const float* u_data = &u[0, 0, 0]
    cdef float* y_data = &out_y[0, 0, 0, 0]
    cdef float* v
    cdef float* m
    cdef float* patch
    cdef int failed = 0, nonfinite = 0
    cdef int* failed_flag = &failed  # written through a pointer: names assigned in a parallel block are private
    cdef int* nonfinite_flag = &nonfinite
    with nogil:
        with parallel(num_threads=threads):
            v = <float*>malloc(POSITIONS * block_tiles * channels * sizeof(float))
            m = <float*>malloc(POSITIONS * block_tiles * filters * sizeof(float))
            patch = <float*>malloc(POSITIONS * channels * sizeof(float))
            for block in prange(blocks, schedule='static'):
                if v == NULL or m == NULL or patch == NULL:
                    failed_flag[0] = 1
                    continue
                first = block * block_tiles
                count = min(block_tiles, tiles - first)
                for t in range(count):
                    tile = first + t
                    n = tile // (tiles_h * tiles_w)
                    th = (tile // tiles_w) % tiles_h
                    tw = tile % tiles_w
                    input_transform(x_data + n * height * width * channels, v + t * channels, count * channels,
                                    2 * th - pad_top, 2 * tw - pad_left, height, width, channels, patch)
                for k in range(POSITIONS):
                    gemm_row_major(False, False, <int>count, <int>filters, <int>channels, 1.0,
                                   v + k * count * channels, <int>channels, u_data + k * channels * filters,
                                   <int>filters, 0.0, m + k * count * filters, <int>filters)
                if not all_finite(m, POSITIONS * count * filters):
                    nonfinite_flag[0] = 1
                for t in range(count):
                    tile = first + t
                    n = tile // (tiles_h * tiles_w)
                    th = (tile // tiles_w) % tiles_h
                    tw = tile % tiles_w
                    output_transform(m + t * filters, count * filters, y_data + n * out_h * out_w * filters,
                                     2 * th, 2 * tw, out_h, out_w, filters, &bias[0])
            free(v)
            free(m)
            free(patch)
    if failed:
        raise MemoryError(f"winograd_conv2d_forward: cannot allocate a block of {block_tiles} tiles")
    return nonfinite == 0
