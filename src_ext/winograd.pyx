# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3), m = 2 or 4, NHWC float32.

Each m x m block of output pixels (a tile) is computed from the a x a input patch under it (a = m + 2) as
Y = A^T [(G g G^T) * (B^T d B)] A (the matrices: fastconv.backends.winograd_tiles): a^2 products per tile and
channel pair instead of 9 m^2, 2.25x fewer multiplications for F(2x2) and 4x fewer for F(4x4). The a^2
element-wise products over all channel pairs are a^2 matrix products, (tiles, C) @ (C, F), done by BLAS on blocks
of tiles:

    U[k] = (G g G^T)[k]: (C, F), k < a^2         transformed once per call (winograd_kernel_transform)
    V[k] = (B^T d B)[k]: (tiles, C)              per block, in the thread that multiplies it
    M[k] = V[k] @ U[k]:  (tiles, F)              a^2 BLAS calls per block
    y    = A^T M A + bias                        m x m pixels per tile, clipped to the output

The tile side is that of the transformed kernel: 16 positions for F(2x2), 36 for F(4x4). F(2x2)'s transforms
use only 0, +-1 and +-1/2; F(4x4)'s reach 8 and 1/24, and lose about one decimal digit more in float32 (measured:
docs/performance.md), still within the 1e-5 tolerance of the tests. The padding is read as zeros (tiles are
clipped to the input), so 'same' and 'valid' differ only in pad_top/pad_left and the output size. The gradient to
the input is this same convolution of grad_out with the kernel rotated by 180 degrees and its channels swapped
(see fastconv.backends.compiled). The gradient to the kernel is the adjoint of the forward's products: with
Z = A dY A^T the a x a transform of a tile's m x m output gradient,

    dU[k] = sum over tiles of V[k]^T @ Z[k]: (C, F)   a^2 BLAS products per block, summed per group
    dg    = K^T dU                                     (winograd_kernel_transform_backward)

The transforms mix the a^2 pixels of a patch, so one NaN or +-inf would reach outputs whose window does not hold
it (and inf - inf makes NaN of an output the direct method gives as inf). Both kernels therefore report a
non-finite kernel or product (a non-finite input pixel always leaves one in M: inf * 0 is NaN and no sum makes
a NaN or inf finite again), and the caller computes that convolution by the direct method instead.
"""
from libc.string cimport memcpy, memset

from _driver cimport default_threads, run_blocks, share_driver
from _linalg cimport NO_TRANSPOSE, TRANSPOSE, column_sums, gemm, strided_view, sum_groups, view
from _scratch cimport scratch_state, thread_scratch, trim_scratch
from _winograd_lines cimport (fastconv_gradient_line_2, fastconv_gradient_line_4, fastconv_input_line_2,
                              fastconv_input_line_4, fastconv_output_line_2, fastconv_output_line_4, line_transform)

share_driver()  # every module's kernels run on one driver (_driver.pxd)

import numpy as np

from fastconv.backends import winograd_tiles

cdef enum:
    MAX_PATCH = 6    # a for F(4x4)
    CHUNK = 64       # channels (or filters) transformed at a time, so that a tile's scratch stays in L1
    # thread_scratch slots: a block's transformed inputs V, its products M (or gradient transforms Z), a tile's
    # scratch, and the caller's partial kernel gradients, one per group
    V_SLOT = 0
    M_SLOT = 1
    TILE_SLOT = 2
    GROUPS_SLOT = 3
    # groups of blocks per thread in a kernel gradient (as in conv.pyx)
    GROUPS_PER_THREAD = 4


cdef struct Tiling:
    Py_ssize_t side              # m: output pixels per tile side
    Py_ssize_t patch             # a = m + 2: input pixels per tile side
    line_transform input_line    # B^T (a, a): V = B^T d B, a lines in each pass
    line_transform output_line   # A^T (m, a): Y = A^T M A
    line_transform gradient_line # A (a, m): the gradient transform Z = A dY A^T
    const float* kernel_t        # K = kron(G, G), (a^2, 9): U = K @ g


# K of winograd_tiles, read once: [0] is F(2x2), [1] F(4x4); the lines' matrices checked against winograd_tiles'.
cdef float KERNEL_T[2][MAX_PATCH * MAX_PATCH * 9]
cdef Tiling TILINGS[2]
TILINGS[0].input_line = fastconv_input_line_2
TILINGS[0].output_line = fastconv_output_line_2
TILINGS[0].gradient_line = fastconv_gradient_line_2
TILINGS[1].input_line = fastconv_input_line_4
TILINGS[1].output_line = fastconv_output_line_4
TILINGS[1].gradient_line = fastconv_gradient_line_4


cdef check_line(line_transform line, matrix, str name):
    """ImportError unless ``line`` applies ``matrix`` (float64, (writes, reads)) rounded to float32: read off unit
    vectors, so that these compiled lines and winograd_tiles' matrices, which the kernel transform reads, cannot
    drift apart."""
    cdef float unit[MAX_PATCH]
    cdef float out[MAX_PATCH]
    cdef Py_ssize_t k, i, writes = matrix.shape[0], reads = matrix.shape[1]
    applied = np.zeros((writes, reads), np.float32)
    for k in range(reads):
        for i in range(reads):
            unit[i] = 1.0 if i == k else 0.0
        line(unit, 1, out, 1, 1)
        for i in range(writes):
            applied[i, k] = out[i]
    if not np.array_equal(applied, matrix.astype(np.float32)):
        raise ImportError(f"fastconv winograd: the compiled {name} is not winograd_tiles' (src_ext/_winograd_lines.pxd "
                          f"and fastconv/backends/winograd_tiles.py disagree)")


for _index, _side in enumerate(winograd_tiles.TILE_SIDES):
    for _i, _value in enumerate(winograd_tiles.kernel_transform_matrix(_side).ravel()):
        KERNEL_T[_index][_i] = _value
    TILINGS[_index].side = _side
    TILINGS[_index].patch = _side + 2
    TILINGS[_index].kernel_t = &KERNEL_T[_index][0]
    check_line(TILINGS[_index].input_line, winograd_tiles.input_matrix(_side), f"F({_side}x{_side}) B^T")
    check_line(TILINGS[_index].output_line, winograd_tiles.output_matrix(_side), f"F({_side}x{_side}) A^T")
    check_line(TILINGS[_index].gradient_line, winograd_tiles.output_matrix(_side).T, f"F({_side}x{_side}) A")


cdef Tiling tiling_of(Py_ssize_t positions) except *:
    """The tiling whose transformed kernel has ``positions`` (a^2) rows; ValueError for any other count."""
    return TILINGS[winograd_tiles.TILE_SIDES.index(winograd_tiles.tile_side_of(positions))]


cdef struct transform_job:
    const Tiling* tiling
    const float* source    # the kernel (9, C*F), or grad_u (a^2, C*F) when backward
    float* target          # u (a^2, C*F), or grad_kernel (9, C*F) when backward
    Py_ssize_t width, parts  # C * F, cut into `parts` runs of columns
    bint backward


cdef void kernel_transform_part(void* job_ptr, Py_ssize_t part) noexcept nogil:
    """Columns [part * width // parts, ...) of u = K @ g, or of grad_kernel = K^T @ grad_u when backward."""
    cdef transform_job* job = <transform_job*>job_ptr
    cdef Py_ssize_t first = part * job.width // job.parts
    cdef Py_ssize_t count = (part + 1) * job.width // job.parts - first
    cdef int positions = <int>(job.tiling.patch * job.tiling.patch)
    if job.backward:
        gemm(1.0, view(job.tiling.kernel_t, positions, 9), TRANSPOSE,
             strided_view(job.source + first, positions, count, job.width), NO_TRANSPOSE,
             0.0, strided_view(job.target + first, 9, count, job.width))
    else:
        gemm(1.0, view(job.tiling.kernel_t, positions, 9), NO_TRANSPOSE,
             strided_view(job.source + first, 9, count, job.width), NO_TRANSPOSE,
             0.0, strided_view(job.target + first, positions, count, job.width))


def winograd_kernel_transform(const float[:, :, :, ::1] kernel, float[:, :, ::1] out_u):
    """out_u[a*i + j] = (G g G^T)[i, j] for every channel pair. kernel: (3, 3, C, F); out_u: (a^2, C, F), written;
    a^2 = 16 gives F(2x2)'s transform, 36 F(4x4)'s.

    One product out_u = K @ kernel, K = kron(G, G) (a^2, 9), its columns of C * F shared among the threads.
    Returns False if the kernel holds a NaN or +-inf (out_u is then not to be used), else True.
    """
    cdef Py_ssize_t channels = kernel.shape[2], filters = kernel.shape[3]
    if kernel.shape[0] != 3 or kernel.shape[1] != 3 or out_u.shape[1] != channels or out_u.shape[2] != filters:
        raise ValueError(f"winograd_kernel_transform: kernel ({kernel.shape[0]}, {kernel.shape[1]}, {channels}, "
                         f"{filters}) and out_u ({out_u.shape[0]}, {out_u.shape[1]}, {out_u.shape[2]}) must be "
                         f"(3, 3, C, F) and (a^2, C, F)")
    cdef Tiling tiling = tiling_of(out_u.shape[0])
    cdef Py_ssize_t width = channels * filters, positions = tiling.patch * tiling.patch
    if width >= 2**31:
        raise ValueError("winograd_kernel_transform: C * F is too large for 32-bit BLAS indices")
    if not all_finite(&kernel[0, 0, 0, 0], 9 * width):
        return False
    cdef transform_job job
    job.tiling = &tiling
    job.source = &kernel[0, 0, 0, 0]
    job.target = &out_u[0, 0, 0]
    job.width = width
    job.parts = 8 if width >= 8 * 4096 else 1
    job.backward = False
    with nogil:
        run_blocks(kernel_transform_part, &job, job.parts, default_threads())
    return True


def winograd_kernel_transform_backward(const float[:, :, ::1] grad_u, float[:, :, :, ::1] out_grad_kernel):
    """out_grad_kernel = K^T grad_u, the adjoint of winograd_kernel_transform: grad_u (a^2, C, F) the gradient with
    respect to the transformed kernel, a^2 = 16 or 36; out_grad_kernel (3, 3, C, F), written."""
    cdef Py_ssize_t channels = out_grad_kernel.shape[2], filters = out_grad_kernel.shape[3]
    if (out_grad_kernel.shape[0] != 3 or out_grad_kernel.shape[1] != 3 or grad_u.shape[1] != channels
            or grad_u.shape[2] != filters):
        raise ValueError(f"winograd_kernel_transform_backward: grad_u ({grad_u.shape[0]}, {grad_u.shape[1]}, "
                         f"{grad_u.shape[2]}) and out_grad_kernel ({out_grad_kernel.shape[0]}, "
                         f"{out_grad_kernel.shape[1]}, {channels}, {filters}) must be (a^2, C, F) and (3, 3, C, F)")
    cdef Tiling tiling = tiling_of(grad_u.shape[0])
    cdef Py_ssize_t width = channels * filters, positions = tiling.patch * tiling.patch
    if width >= 2**31:
        raise ValueError("winograd_kernel_transform_backward: C * F is too large for 32-bit BLAS indices")
    cdef transform_job job
    job.tiling = &tiling
    job.source = &grad_u[0, 0, 0]
    job.target = &out_grad_kernel[0, 0, 0, 0]
    job.width = width
    job.parts = 8 if width >= 8 * 4096 else 1
    job.backward = True
    with nogil:
        run_blocks(kernel_transform_part, &job, job.parts, default_threads())


cdef bint all_finite(const float* values, Py_ssize_t count) noexcept nogil:
    """No NaN or +-inf among values[0:count]: no exponent field all ones (an integer test, which vectorises)."""
    cdef const unsigned int* bits = <const unsigned int*>values
    cdef Py_ssize_t i
    cdef unsigned int special = 0
    for i in range(count):
        special += (bits[i] & 0x7f800000u) == 0x7f800000u
    return special == 0


cdef int check_plan(plan, str op) except -1:
    """A Winograd plan: 3x3 kernel, stride 1, positive block and thread counts."""
    if (plan.kernel_h, plan.kernel_w, plan.stride_h, plan.stride_w) != (3, 3, 1, 1):
        raise ValueError(f"{op}: Winograd F(m x m, 3x3) needs a 3x3 kernel and stride 1, got {plan}")
    if plan.block_tiles < 1 or plan.threads < 1:
        raise ValueError(f"{op}: block_tiles and threads must be positive in {plan}")
    return 0


cdef struct TileGrid:
    Py_ssize_t positions, tiles_h, tiles_w, tiles, blocks  # a^2; the (N, tiles_h, tiles_w) tiles, in blocks


cdef TileGrid tile_grid(const Tiling* tiling, Py_ssize_t batch, Py_ssize_t out_h, Py_ssize_t out_w,
                        Py_ssize_t block_tiles, Py_ssize_t widest, str op) except *:
    """The grid of m x m tiles over an (N, OH, OW) output and its blocks; ValueError if a block's (tiles, widest)
    matrix would overflow BLAS' 32-bit indices."""
    if max(block_tiles, 1) * widest >= 2**31:
        raise ValueError(f"{op}: a block of tiles is too large for 32-bit BLAS indices")
    cdef TileGrid grid
    grid.positions = tiling.patch * tiling.patch
    grid.tiles_h = (out_h + tiling.side - 1) // tiling.side
    grid.tiles_w = (out_w + tiling.side - 1) // tiling.side
    grid.tiles = batch * grid.tiles_h * grid.tiles_w
    grid.blocks = (grid.tiles + block_tiles - 1) // block_tiles
    return grid


cdef struct TileOrigin:
    Py_ssize_t n, top, left  # sample, and the output pixel at the tile's top left corner


cdef inline TileOrigin tile_origin(Py_ssize_t tile, Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t side) noexcept nogil:
    """Where tile number ``tile`` of the (N, tiles_h, tiles_w) grid of m x m tiles lies."""
    cdef TileOrigin origin
    origin.n = tile // (tiles_h * tiles_w)
    origin.top = side * ((tile // tiles_w) % tiles_h)
    origin.left = side * (tile % tiles_w)
    return origin


cdef void input_transform(const Tiling* tiling, const float* x_sample, float* v, Py_ssize_t tile_stride,
                          Py_ssize_t top, Py_ssize_t left, Py_ssize_t height, Py_ssize_t width,
                          Py_ssize_t channels, float* patch, float* rows) noexcept nogil:
    """v[k * tile_stride + c] = (B^T d B)[k] for the a x a patch d at (top, left), zeros outside the input.

    patch, rows: a^2 * CHUNK floats of scratch each; the channels go CHUNK at a time. A patch wholly inside the
    input is read in place, and where its channels fit in one chunk the first pass (B^T d) runs over whole rows of
    a pixels, a * C values at a time (VGG16 at batch 20, 2 threads: block3_conv2 104 -> 94 ms, block1_conv2 129 ->
    125 ms).
    """
    cdef Py_ssize_t a = tiling.patch
    cdef line_transform line = tiling.input_line
    cdef Py_ssize_t chunk, first, count, i, j, row, col
    cdef float* target
    cdef bint inside = top >= 0 and left >= 0 and top + a <= height and left + a <= width
    cdef const float* corner = x_sample + (top * width + left) * channels if inside else x_sample
    if inside and channels <= CHUNK:
        line(corner, width * channels, rows, a * channels, a * channels)  # rows: B^T d; pixel j of row i at (a i + j) C
        for i in range(a):  # columns: (B^T d) B
            line(rows + a * i * channels, channels, v + a * i * tile_stride, tile_stride, channels)
        return
    for chunk in range((channels + CHUNK - 1) // CHUNK):
        first = chunk * CHUNK
        count = min(<Py_ssize_t>CHUNK, channels - first)
        if inside:
            for j in range(a):  # rows: B^T d, read in place
                line(corner + j * channels + first, width * channels, rows + j * CHUNK, a * CHUNK, count)
        else:
            for i in range(a):
                row = top + i
                for j in range(a):
                    col = left + j
                    target = patch + (a * i + j) * CHUNK
                    if row < 0 or row >= height or col < 0 or col >= width:
                        memset(target, 0, count * sizeof(float))
                    else:
                        memcpy(target, x_sample + (row * width + col) * channels + first, count * sizeof(float))
            for j in range(a):  # rows: B^T d
                line(patch + j * CHUNK, a * CHUNK, rows + j * CHUNK, a * CHUNK, count)
        for i in range(a):  # columns: (B^T d) B
            line(rows + a * i * CHUNK, CHUNK, v + a * i * tile_stride + first, tile_stride, count)


cdef void output_transform(const Tiling* tiling, const float* m, Py_ssize_t tile_stride, float* y_sample,
                           Py_ssize_t top, Py_ssize_t left, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                           const float* bias, bint relu, float* patch, float* rows) noexcept nogil:
    """The m x m output pixels at (top, left) = A^T M A + bias (then max(., 0), NaN kept, if ``relu``), those inside
    the output only.

    m[k * tile_stride + f] holds position k of the tile; patch, rows: a^2 * CHUNK floats of scratch each (a tile
    that the output's edge clips is made whole in patch and copied from there).
    """
    cdef Py_ssize_t side = tiling.side, a = tiling.patch
    cdef line_transform line = tiling.output_line
    cdef Py_ssize_t kept_h = min(side, out_h - top), kept_w = min(side, out_w - left)
    cdef bint whole = kept_h == side and kept_w == side
    cdef Py_ssize_t chunk, first, count, i, j, f
    cdef float* target
    for chunk in range((filters + CHUNK - 1) // CHUNK):
        first = chunk * CHUNK
        count = min(<Py_ssize_t>CHUNK, filters - first)
        for j in range(a):  # rows: A^T M
            line(m + j * tile_stride + first, a * tile_stride, rows + j * CHUNK, a * CHUNK, count)
        for i in range(kept_h):  # columns: (A^T M) A
            target = y_sample + ((top + i) * out_w + left) * filters + first
            if whole:
                line(rows + a * i * CHUNK, CHUNK, target, filters, count)
            else:
                line(rows + a * i * CHUNK, CHUNK, patch, CHUNK, count)
                for j in range(kept_w):
                    memcpy(target + j * filters, patch + j * CHUNK, count * sizeof(float))
            for j in range(kept_w):  # + bias
                for f in range(count):
                    target[j * filters + f] += bias[first + f]
                if relu:
                    for f in range(count):
                        if target[j * filters + f] <= 0:
                            target[j * filters + f] = 0.0


cdef void gradient_transform(const Tiling* tiling, const float* grad_sample, float* z, Py_ssize_t tile_stride,
                             Py_ssize_t top, Py_ssize_t left, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                             float* patch, float* rows) noexcept nogil:
    """z[k * tile_stride + f] = (A dY A^T)[k] for the m x m output gradient dY at (top, left), zeros outside it.

    patch, rows: a^2 * CHUNK floats of scratch each; the filters go CHUNK at a time. A tile wholly inside is read
    in place, over whole rows of m pixels where its filters fit in one chunk (as input_transform).
    """
    cdef Py_ssize_t side = tiling.side, a = tiling.patch
    cdef line_transform line = tiling.gradient_line
    cdef Py_ssize_t chunk, first, count, i, j
    cdef float* target
    cdef bint inside = top + side <= out_h and left + side <= out_w
    cdef const float* corner = grad_sample + (top * out_w + left) * filters
    if inside and filters <= CHUNK:
        line(corner, out_w * filters, rows, side * filters, side * filters)  # rows: A dY; pixel j of row i at (m i + j) F
        for i in range(a):  # columns: (A dY) A^T
            line(rows + side * i * filters, filters, z + a * i * tile_stride, tile_stride, filters)
        return
    for chunk in range((filters + CHUNK - 1) // CHUNK):
        first = chunk * CHUNK
        count = min(<Py_ssize_t>CHUNK, filters - first)
        if inside:
            for j in range(side):  # rows: A dY, read in place
                line(corner + j * filters + first, out_w * filters, rows + j * CHUNK, side * CHUNK, count)
        else:
            for i in range(side):
                for j in range(side):
                    target = patch + (side * i + j) * CHUNK
                    if top + i >= out_h or left + j >= out_w:
                        memset(target, 0, count * sizeof(float))
                    else:
                        memcpy(target, grad_sample + ((top + i) * out_w + left + j) * filters + first, count * sizeof(float))
            for j in range(side):  # rows: A dY
                line(patch + j * CHUNK, side * CHUNK, rows + j * CHUNK, side * CHUNK, count)
        for i in range(a):  # columns: (A dY) A^T
            line(rows + side * i * CHUNK, CHUNK, z + a * i * tile_stride + first, tile_stride, count)


cdef struct tiles_job:
    # One call's arguments, read by every block (blocks run on the driver's threads, see _driver.pxd).
    Tiling tiling
    TileGrid grid
    Py_ssize_t batch, height, width, channels, out_h, out_w, filters, pad_top, pad_left
    Py_ssize_t block_tiles
    Py_ssize_t groups          # kernel gradient: the blocks summed in `groups` partials
    bint relu
    const float* x
    const float* u
    const float* bias
    const float* grad_out
    float* out                 # y, or the (groups, a^2 * C * F) partial gradients of u
    int failed                 # set by a block that could not get its scratch
    int nonfinite              # set by a forward block whose products are not all finite


cdef tiles_job make_job(plan, const float[:, :, :, ::1] x, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                        Py_ssize_t positions, str op) except *:
    cdef tiles_job job
    memset(&job, 0, sizeof(job))
    check_plan(plan, op)
    job.batch, job.height, job.width, job.channels = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    job.out_h, job.out_w, job.filters = out_h, out_w, filters
    job.pad_top, job.pad_left, job.block_tiles, job.relu = plan.pad_top, plan.pad_left, plan.block_tiles, plan.relu
    job.tiling = tiling_of(positions)
    job.grid = tile_grid(&job.tiling, job.batch, out_h, out_w, job.block_tiles, max(job.channels, filters), op)
    job.x = &x[0, 0, 0, 0]
    return job


cdef void transform_block_inputs(tiles_job* job, Py_ssize_t first, Py_ssize_t count, float* v, float* patch,
                                 float* rows) noexcept nogil:
    """v (a^2, count, C) = the input transforms of tiles [first, first + count)."""
    cdef Py_ssize_t t
    cdef TileOrigin at
    for t in range(count):
        at = tile_origin(first + t, job.grid.tiles_h, job.grid.tiles_w, job.tiling.side)
        input_transform(&job.tiling, job.x + at.n * job.height * job.width * job.channels, v + t * job.channels,
                        count * job.channels, at.top - job.pad_top, at.left - job.pad_left, job.height, job.width,
                        job.channels, patch, rows)


cdef struct tile_scratch:
    # A thread's scratch for a block of tiles: transformed inputs V, products M (or gradient transforms Z), and a
    # tile's patch and rows; NULL where memory ran out (the job is then marked failed).
    float* v
    float* products
    float* patch
    float* rows


cdef tile_scratch block_scratch(tiles_job* job) noexcept nogil:
    cdef Py_ssize_t positions = job.grid.positions
    cdef tile_scratch scratch
    scratch.v = <float*>thread_scratch(V_SLOT, positions * job.block_tiles * job.channels * sizeof(float))
    scratch.products = <float*>thread_scratch(M_SLOT, positions * job.block_tiles * job.filters * sizeof(float))
    scratch.patch = <float*>thread_scratch(TILE_SLOT, 2 * positions * CHUNK * sizeof(float))
    if scratch.v == NULL or scratch.products == NULL or scratch.patch == NULL:
        job.failed = 1
        scratch.v = NULL
        return scratch
    scratch.rows = scratch.patch + positions * CHUNK
    return scratch


cdef void backward_kernel_group(void* job_ptr, Py_ssize_t group) noexcept nogil:
    """The partial gradient of u of group `group`: sum over its tiles of V[k]^T @ Z[k], blocks in order."""
    cdef tiles_job* job = <tiles_job*>job_ptr
    cdef Py_ssize_t positions = job.grid.positions, channels = job.channels, filters = job.filters
    cdef Py_ssize_t matrix_len = positions * channels * filters
    cdef float* partial = job.out + group * matrix_len
    memset(partial, 0, matrix_len * sizeof(float))
    cdef tile_scratch scratch = block_scratch(job)
    if scratch.v == NULL:
        return
    cdef float* v = scratch.v
    cdef float* z = scratch.products
    cdef float* patch = scratch.patch
    cdef float* rows = scratch.rows
    cdef Py_ssize_t block, first, count, t, k
    cdef TileOrigin at
    for block in range(group * job.grid.blocks // job.groups, (group + 1) * job.grid.blocks // job.groups):
        first = block * job.block_tiles
        count = min(job.block_tiles, job.grid.tiles - first)
        transform_block_inputs(job, first, count, v, patch, rows)
        for t in range(count):
            at = tile_origin(first + t, job.grid.tiles_h, job.grid.tiles_w, job.tiling.side)
            gradient_transform(&job.tiling, job.grad_out + at.n * job.out_h * job.out_w * filters, z + t * filters,
                               count * filters, at.top, at.left, job.out_h, job.out_w, filters, patch, rows)
        for k in range(positions):
            gemm(1.0, view(v + k * count * channels, count, channels), TRANSPOSE,
                 view(z + k * count * filters, count, filters), NO_TRANSPOSE,
                 1.0, view(partial + k * channels * filters, channels, filters))


def winograd_conv2d_backward_kernel(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                                    float[:, :, ::1] out_grad_u, float[::1] out_grad_bias, plan):
    """out_grad_u[k] = sum over tiles of V[k]^T @ Z[k], the gradient with respect to the transformed kernel (its
    kernel gradient is winograd_kernel_transform_backward(out_grad_u)); out_grad_bias = grad_out summed over N, OH, OW.

    x: (N, H, W, C); grad_out: (N, OH, OW, F); out_grad_u: (a^2, C, F), written, its a^2 (16 or 36) picking m (2 or
    4); out_grad_bias: (F,) written, or (0,) to skip it; plan: as for winograd_conv2d_forward. The blocks are cut
    into a fixed number of groups (GROUPS_PER_THREAD per thread), each summed into its own partial by whichever
    thread takes it; the partials are added in group order, so results are repeatable. Returns False if the sum is
    not finite (x or grad_out held a NaN or +-inf), else True.
    """
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2], filters = grad_out.shape[3]
    if (out_grad_u.shape[1] != x.shape[3] or out_grad_u.shape[2] != filters or grad_out.shape[0] != x.shape[0]
            or out_grad_bias.shape[0] not in (0, filters)):
        raise ValueError(f"winograd_conv2d_backward_kernel: x ({x.shape[0]}, {x.shape[1]}, {x.shape[2]}, "
                         f"{x.shape[3]}), grad_out ({grad_out.shape[0]}, {out_h}, {out_w}, {filters}), out_grad_u "
                         f"({out_grad_u.shape[0]}, {out_grad_u.shape[1]}, {out_grad_u.shape[2]}) and out_grad_bias "
                         f"({out_grad_bias.shape[0]},) do not agree")
    cdef tiles_job job = make_job(plan, x, out_h, out_w, filters, out_grad_u.shape[0], "winograd_conv2d_backward_kernel")
    cdef int threads = plan.threads
    cdef Py_ssize_t matrix_len = job.grid.positions * job.channels * filters
    job.groups = min(job.grid.blocks, GROUPS_PER_THREAD * threads) if threads > 1 else 1
    job.grad_out = &grad_out[0, 0, 0, 0]
    cdef float* grad_u = &out_grad_u[0, 0, 0]
    with nogil:
        # one group writes the result itself; more write partials into the caller's scratch, added up after
        job.out = grad_u if job.groups == 1 else <float*>thread_scratch(GROUPS_SLOT, job.groups * matrix_len * sizeof(float))
        if job.out == NULL:
            job.failed = 1
        else:
            run_blocks(backward_kernel_group, &job, job.groups, threads)
            if job.groups > 1:
                sum_groups(job.out, job.groups, matrix_len, grad_u, threads)
        trim_scratch()
        if out_grad_bias.shape[0] > 0 and not job.failed:
            column_sums(job.grad_out, job.batch * out_h * out_w, filters, &out_grad_bias[0], threads)
    if job.failed:
        raise MemoryError(f"winograd_conv2d_backward_kernel: cannot allocate a block of {job.block_tiles} tiles "
                          f"or {job.groups} partial gradients")
    return all_finite(grad_u, matrix_len)


cdef void forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    """Tiles [block * block_tiles, ...): input transforms V, a^2 products M = V @ U, output transforms into y."""
    cdef tiles_job* job = <tiles_job*>job_ptr
    cdef Py_ssize_t positions = job.grid.positions, channels = job.channels, filters = job.filters
    cdef tile_scratch scratch = block_scratch(job)
    if scratch.v == NULL:
        return
    cdef float* v = scratch.v
    cdef float* m = scratch.products
    cdef float* patch = scratch.patch
    cdef float* rows = scratch.rows
    cdef Py_ssize_t first = block * job.block_tiles, t, k
    cdef Py_ssize_t count = min(job.block_tiles, job.grid.tiles - first)
    cdef TileOrigin at
    transform_block_inputs(job, first, count, v, patch, rows)
    for k in range(positions):
        gemm(1.0, view(v + k * count * channels, count, channels), NO_TRANSPOSE,
             view(job.u + k * channels * filters, channels, filters), NO_TRANSPOSE,
             0.0, view(m + k * count * filters, count, filters))
    if not all_finite(m, positions * count * filters):
        job.nonfinite = 1
    for t in range(count):
        at = tile_origin(first + t, job.grid.tiles_h, job.grid.tiles_w, job.tiling.side)
        output_transform(&job.tiling, m + t * filters, count * filters, job.out + at.n * job.out_h * job.out_w * filters,
                         at.top, at.left, job.out_h, job.out_w, filters, job.bias, job.relu, patch, rows)


def winograd_conv2d_forward(const float[:, :, :, ::1] x, const float[:, :, ::1] u, const float[::1] bias,
                            float[:, :, :, ::1] out_y, plan):
    """out_y = conv3x3(x, kernel) + bias (then max(., 0) if ``plan.relu``), stride 1, by F(m x m, 3x3) in blocks of
    ``plan.block_tiles`` tiles.

    x: (N, H, W, C); u: (a^2, C, F) from winograd_kernel_transform, whose a^2 (16 or 36) sets m (2 or 4);
    bias: (F,); out_y: (N, OH, OW, F), written; plan: a ConvPlan (3x3, stride 1; pad_top/pad_left as for the direct
    method). Returns False if a product is not finite (x held a NaN or +-inf; out_y is
    then not to be used), else True.
    """
    cdef Py_ssize_t out_h = out_y.shape[1], out_w = out_y.shape[2], filters = out_y.shape[3]
    if u.shape[1] != x.shape[3] or u.shape[2] != filters or bias.shape[0] != filters or out_y.shape[0] != x.shape[0]:
        raise ValueError(f"winograd_conv2d_forward: x ({x.shape[0]}, {x.shape[1]}, {x.shape[2]}, {x.shape[3]}), u "
                         f"({u.shape[0]}, {u.shape[1]}, {u.shape[2]}), bias ({bias.shape[0]},) and out_y "
                         f"({out_y.shape[0]}, {out_h}, {out_w}, {filters}) do not agree")
    cdef tiles_job job = make_job(plan, x, out_h, out_w, filters, u.shape[0], "winograd_conv2d_forward")
    cdef int threads = plan.threads
    job.u = &u[0, 0, 0]
    job.bias = &bias[0]
    job.out = &out_y[0, 0, 0, 0]
    with nogil:
        run_blocks(forward_block, &job, job.grid.blocks, threads)
        trim_scratch()
    if job.failed:
        raise MemoryError(f"winograd_conv2d_forward: cannot allocate a block of {job.block_tiles} tiles")
    return job.nonfinite == 0


def scratch(limit_bytes=None):
    """``(bytes, limit)``: the scratch this module's threads hold now, and what they may keep between calls (set to
    ``limit_bytes`` first, unless None)."""
    return scratch_state(limit_bytes)
