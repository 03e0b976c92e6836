# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""2-D convolution kernels, NHWC float32: im2col over a block of output pixels, then one BLAS product per block.

A block (``plan.block_pixels`` output pixels, about 1 MB of patches) keeps its patch matrix inside one core's L2
cache; the input gradient's blocks are whole samples (``plan.block_samples``). Patch rows are laid out (KH, KW, C),
so the Keras kernel (KH, KW, C, F) is the (KH*KW*C, F) matrix of the product without any copy. A 1x1 kernel with stride
1 and no padding needs no patch matrix at all: the input already is one.

These functions trust their caller (``fastconv.backends.compiled``) for the
geometry but check every extent they index with before releasing the GIL;
windows are clipped to the input, so no geometry reads out of range.
"""
from libc.string cimport memcpy, memset

from _driver cimport run_blocks, share_driver
from _linalg cimport NO_TRANSPOSE, TRANSPOSE, column_sums, gemm, sum_groups, view
from _scratch cimport scratch_state, thread_scratch, trim_scratch
from _small_patch cimport small_patch_fits, small_patch_forward, small_patch_kernel_gradient

share_driver()  # every module's kernels run on one driver (_driver.pxd)

# thread_scratch slots: a thread's block of patches; the caller's partial kernel gradients, one per group.
cdef enum:
    PATCHES_SLOT = 0
    GROUPS_SLOT = 1

# Groups of blocks per thread in a kernel gradient: enough that a descheduled thread holds back little, few enough
# that the partials (one kernel-sized matrix each) stay small.
cdef enum:
    GROUPS_PER_THREAD = 4


cdef inline void gather_patch(const float* x_sample, float* patch, Py_ssize_t top, Py_ssize_t left,
                              Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels,
                              Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """Copy the (kernel_h, kernel_w, channels) window at (top, left) into patch; zeros where it leaves the input."""
    cdef Py_ssize_t r, s, row, col
    cdef Py_ssize_t span = kernel_w * channels
    for r in range(kernel_h):
        row = top + r
        if row < 0 or row >= height:
            memset(patch, 0, span * sizeof(float))
        elif left >= 0 and left + kernel_w <= width:
            memcpy(patch, x_sample + (row * width + left) * channels, span * sizeof(float))
        else:
            for s in range(kernel_w):
                col = left + s
                if col < 0 or col >= width:
                    memset(patch + s * channels, 0, channels * sizeof(float))
                else:
                    memcpy(patch + s * channels, x_sample + (row * width + col) * channels, channels * sizeof(float))
        patch += span


cdef inline void scatter_patch(float* grad_sample, const float* patch, Py_ssize_t top, Py_ssize_t left,
                               Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels,
                               Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """Add a patch-shaped gradient back onto the input pixels it came from (the adjoint of gather_patch)."""
    cdef Py_ssize_t r, s, c, row, col
    cdef float* target
    cdef const float* source
    for r in range(kernel_h):
        row = top + r
        if row < 0 or row >= height:
            continue
        for s in range(kernel_w):
            col = left + s
            if col < 0 or col >= width:
                continue
            target = grad_sample + (row * width + col) * channels
            source = patch + (r * kernel_w + s) * channels
            for c in range(channels):
                target[c] += source[c]


cdef struct conv_plan:
    # fastconv.backends.plans.ConvPlan, read once per call so that the nogil helpers can take it.
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_pixels, block_samples
    int threads
    bint relu


cdef conv_plan read_plan(plan) except *:
    """The C struct of a ConvPlan, its fields checked positive where they must be."""
    cdef conv_plan c_plan
    c_plan.stride_h = plan.stride_h
    c_plan.stride_w = plan.stride_w
    c_plan.pad_top = plan.pad_top
    c_plan.pad_left = plan.pad_left
    c_plan.kernel_h = plan.kernel_h
    c_plan.kernel_w = plan.kernel_w
    c_plan.block_pixels = plan.block_pixels
    c_plan.block_samples = plan.block_samples
    c_plan.threads = plan.threads
    c_plan.relu = plan.relu
    if min(c_plan.stride_h, c_plan.stride_w, c_plan.kernel_h, c_plan.kernel_w, c_plan.block_pixels,
           c_plan.block_samples, c_plan.threads) < 1:
        raise ValueError(f"conv2d: strides, kernel size, block_pixels, block_samples and threads must be positive in {plan}")
    return c_plan


cdef void im2col_rows(const float* x, float* cols, Py_ssize_t first_row, Py_ssize_t rows, Py_ssize_t height,
                      Py_ssize_t width, Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w,
                      const conv_plan* plan) noexcept nogil:
    """cols (rows, KH*KW*C): the patches of output pixels [first_row, first_row + rows) of the flattened (N, OH, OW)."""
    cdef Py_ssize_t patch_len = plan.kernel_h * plan.kernel_w * channels
    cdef Py_ssize_t i, pixel, n, oh, ow
    for i in range(rows):
        pixel = first_row + i
        n = pixel // (out_h * out_w)
        oh = (pixel // out_w) % out_h
        ow = pixel % out_w
        gather_patch(x + n * height * width * channels, cols + i * patch_len,
                     oh * plan.stride_h - plan.pad_top, ow * plan.stride_w - plan.pad_left,
                     height, width, channels, plan.kernel_h, plan.kernel_w)


cdef inline void relu_in_place(float* values, Py_ssize_t count) noexcept nogil:
    """values = max(values, 0), NaN kept (as relu_forward): the forward's epilogue on a block still in cache."""
    cdef Py_ssize_t i
    for i in range(count):
        if values[i] <= 0:
            values[i] = 0.0


cdef inline bint is_pointwise(const conv_plan* plan) noexcept nogil:
    return (plan.kernel_h == 1 and plan.kernel_w == 1 and plan.stride_h == 1 and plan.stride_w == 1
            and plan.pad_top == 0 and plan.pad_left == 0)


cdef const float* block_patches(const float* x, float* cols, Py_ssize_t first_row, Py_ssize_t rows,
                                Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels, Py_ssize_t out_h,
                                Py_ssize_t out_w, const conv_plan* plan) noexcept nogil:
    """The (rows, KH*KW*C) patch matrix of a block: x's own rows for a pointwise kernel, else gathered into cols."""
    if is_pointwise(plan):
        return x + first_row * channels
    im2col_rows(x, cols, first_row, rows, height, width, channels, out_h, out_w, plan)
    return cols


cdef void col2im_sample(const float* cols, float* grad_sample, Py_ssize_t height, Py_ssize_t width,
                        Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w, const conv_plan* plan) noexcept nogil:
    """grad_sample (H, W, C) = the sum of one sample's patch rows cols (OH*OW, KH*KW*C) scattered back."""
    cdef Py_ssize_t patch_len = plan.kernel_h * plan.kernel_w * channels
    cdef Py_ssize_t oh, ow
    memset(grad_sample, 0, height * width * channels * sizeof(float))
    for oh in range(out_h):
        for ow in range(out_w):
            scatter_patch(grad_sample, cols + (oh * out_w + ow) * patch_len, oh * plan.stride_h - plan.pad_top,
                          ow * plan.stride_w - plan.pad_left, height, width, channels, plan.kernel_h, plan.kernel_w)


cdef int check_extents(Py_ssize_t batch, Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                       Py_ssize_t matrix_rows, Py_ssize_t matrix_cols, Py_ssize_t grad_batch, Py_ssize_t grad_h,
                       Py_ssize_t grad_w, Py_ssize_t grad_filters, const conv_plan* plan) except -1:
    if matrix_rows != plan.kernel_h * plan.kernel_w * channels or matrix_cols != filters:
        raise ValueError(f"conv2d: kernel matrix ({matrix_rows}, {matrix_cols}) does not match kernel "
                         f"({plan.kernel_h}, {plan.kernel_w}, {channels}, {filters})")
    if (grad_batch, grad_h, grad_w, grad_filters) != (batch, out_h, out_w, filters):
        raise ValueError(f"conv2d: output ({grad_batch}, {grad_h}, {grad_w}, {grad_filters}) does not match ({batch}, {out_h}, {out_w}, {filters})")
    if max(plan.block_pixels, plan.block_samples * out_h * out_w) * matrix_rows >= 2**31:
        raise ValueError("conv2d: a block of patches is too large for 32-bit BLAS indices")
    return 0


cdef struct conv_job:
    # One call's arguments, read by every block (blocks run on the driver's threads, see _driver.pxd).
    conv_plan plan
    Py_ssize_t batch, height, width, channels, out_h, out_w, filters, patch_len
    Py_ssize_t block_pixels    # output pixels per block (forward, kernel gradient)
    Py_ssize_t block_samples   # samples per block (input gradient)
    Py_ssize_t total_rows      # batch * out_h * out_w
    Py_ssize_t blocks, groups  # kernel gradient: blocks of rows, summed in `groups` partials
    const float* x
    const float* kernel_matrix
    const float* bias
    const float* grad_out
    float* out                 # y, grad_x, or the (groups, patch_len * filters) partial kernel gradients
    int failed                 # set by a block that could not get its scratch


cdef conv_job make_job(const conv_plan* plan, Py_ssize_t batch, Py_ssize_t height, Py_ssize_t width,
                       Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                       Py_ssize_t patch_len):
    cdef conv_job job
    memset(&job, 0, sizeof(job))
    job.plan = plan[0]
    job.batch, job.height, job.width, job.channels = batch, height, width, channels
    job.out_h, job.out_w, job.filters, job.patch_len = out_h, out_w, filters, patch_len
    job.block_pixels = plan.block_pixels
    job.block_samples = plan.block_samples
    job.total_rows = batch * out_h * out_w
    return job


cdef void forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    """Output pixels [block * block_pixels, ...) of the flattened (N, OH, OW): bias, then patches @ kernel_matrix."""
    cdef conv_job* job = <conv_job*>job_ptr
    cdef bint pointwise = is_pointwise(&job.plan)
    cdef float* cols = NULL
    if not pointwise:
        cols = <float*>thread_scratch(PATCHES_SLOT, job.block_pixels * job.patch_len * sizeof(float))
        if cols == NULL:
            job.failed = 1
            return
    cdef Py_ssize_t first_row = block * job.block_pixels, row
    cdef Py_ssize_t rows = min(job.block_pixels, job.total_rows - first_row)
    cdef float* y_block = job.out + first_row * job.filters
    cdef const float* patches = block_patches(job.x, cols, first_row, rows, job.height, job.width, job.channels,
                                              job.out_h, job.out_w, &job.plan)
    if small_patch_fits(job.patch_len, job.filters):
        small_patch_forward(patches, rows, job.patch_len, job.kernel_matrix, job.filters, job.bias, job.plan.relu, y_block)
        return
    for row in range(rows):
        memcpy(y_block + row * job.filters, job.bias, job.filters * sizeof(float))
    gemm(1.0, view(patches, rows, job.patch_len), NO_TRANSPOSE, view(job.kernel_matrix, job.patch_len, job.filters),
         NO_TRANSPOSE, 1.0, view(y_block, rows, job.filters))
    if job.plan.relu:
        relu_in_place(y_block, rows * job.filters)


def conv2d_forward(const float[:, :, :, ::1] x, const float[:, ::1] kernel_matrix, const float[::1] bias,
                   float[:, :, :, ::1] out_y, plan):
    """out_y = conv(x, kernel) + bias (then max(., 0) if ``plan.relu``), in blocks of ``plan.block_pixels`` output pixels
    shared among ``plan.threads``.

    x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); bias: (F,); out_y: (N, OH, OW, F), written; plan: a ConvPlan.
    """
    cdef conv_plan c_plan = read_plan(plan)
    cdef Py_ssize_t out_h = out_y.shape[1], out_w = out_y.shape[2], filters = out_y.shape[3]
    check_extents(x.shape[0], x.shape[3], out_h, out_w, filters, kernel_matrix.shape[0], kernel_matrix.shape[1],
                  out_y.shape[0], out_h, out_w, filters, &c_plan)
    if bias.shape[0] != filters:
        raise ValueError(f"conv2d_forward: bias ({bias.shape[0]},) does not match {filters} filters")
    cdef conv_job job = make_job(&c_plan, x.shape[0], x.shape[1], x.shape[2], x.shape[3], out_h, out_w, filters,
                                 kernel_matrix.shape[0])
    job.x = &x[0, 0, 0, 0]
    job.kernel_matrix = &kernel_matrix[0, 0]
    job.bias = &bias[0]
    job.out = &out_y[0, 0, 0, 0]
    with nogil:
        run_blocks(forward_block, &job, (job.total_rows + job.block_pixels - 1) // job.block_pixels, c_plan.threads)
        trim_scratch()
    if job.failed:
        raise MemoryError(f"conv2d_forward: cannot allocate a ({job.block_pixels}, {job.patch_len}) patch block")


cdef void backward_input_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    """Samples [block * block_samples, ...): one product gives their patch gradients, scattered back per sample."""
    cdef conv_job* job = <conv_job*>job_ptr
    cdef bint pointwise = is_pointwise(&job.plan)
    cdef Py_ssize_t pixels = job.out_h * job.out_w, sample_len = job.height * job.width * job.channels
    cdef float* cols = NULL
    if not pointwise:
        cols = <float*>thread_scratch(PATCHES_SLOT, job.block_samples * pixels * job.patch_len * sizeof(float))
        if cols == NULL:
            job.failed = 1
            return
    cdef Py_ssize_t first = block * job.block_samples, n
    cdef Py_ssize_t count = min(job.block_samples, job.batch - first)
    cdef float* grad_x = job.out + first * sample_len
    gemm(1.0, view(job.grad_out + first * pixels * job.filters, count * pixels, job.filters), NO_TRANSPOSE,
         view(job.kernel_matrix, job.patch_len, job.filters), TRANSPOSE,
         0.0, view(grad_x if pointwise else cols, count * pixels, job.patch_len))
    if not pointwise:
        for n in range(count):
            col2im_sample(cols + n * pixels * job.patch_len, grad_x + n * sample_len, job.height, job.width,
                          job.channels, job.out_h, job.out_w, &job.plan)


def conv2d_backward_input(const float[:, :, :, ::1] grad_out, const float[:, ::1] kernel_matrix,
                          float[:, :, :, ::1] out_grad_x, plan):
    """out_grad_x = the gradient of conv with respect to its input, in blocks of whole samples.

    grad_out: (N, OH, OW, F); kernel_matrix: (KH*KW*C, F); out_grad_x: (N, H, W, C), written; plan: a ConvPlan. A
    block holds ``plan.block_samples`` samples: one BLAS product gives
    their patch gradients, which are then scattered back sample by sample, so no two threads write one sample.
    """
    cdef conv_plan c_plan = read_plan(plan)
    cdef Py_ssize_t batch = out_grad_x.shape[0], height = out_grad_x.shape[1], width = out_grad_x.shape[2]
    cdef Py_ssize_t channels = out_grad_x.shape[3]
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2], filters = grad_out.shape[3]
    check_extents(batch, channels, out_h, out_w, filters, kernel_matrix.shape[0], kernel_matrix.shape[1],
                  grad_out.shape[0], out_h, out_w, filters, &c_plan)
    if is_pointwise(&c_plan) and (out_h, out_w) != (height, width):
        raise ValueError("conv2d_backward_input: a 1x1 stride-1 convolution keeps the spatial size")
    cdef conv_job job = make_job(&c_plan, batch, height, width, channels, out_h, out_w, filters, kernel_matrix.shape[0])
    job.grad_out = &grad_out[0, 0, 0, 0]
    job.kernel_matrix = &kernel_matrix[0, 0]
    job.out = &out_grad_x[0, 0, 0, 0]
    with nogil:
        run_blocks(backward_input_block, &job, (batch + job.block_samples - 1) // job.block_samples, c_plan.threads)
        trim_scratch()
    if job.failed:
        raise MemoryError(f"conv2d_backward_input: cannot allocate a ({job.block_samples * out_h * out_w}, "
                          f"{job.patch_len}) patch block")


cdef void backward_kernel_group(void* job_ptr, Py_ssize_t group) noexcept nogil:
    """The partial kernel gradient of group `group`: patches^T @ grad_out over its run of blocks, in block order."""
    cdef conv_job* job = <conv_job*>job_ptr
    cdef bint pointwise = is_pointwise(&job.plan)
    cdef Py_ssize_t matrix_len = job.patch_len * job.filters
    cdef float* partial = job.out + group * matrix_len
    cdef float* cols = NULL
    memset(partial, 0, matrix_len * sizeof(float))
    if not pointwise:
        cols = <float*>thread_scratch(PATCHES_SLOT, job.block_pixels * job.patch_len * sizeof(float))
        if cols == NULL:
            job.failed = 1
            return
    cdef Py_ssize_t block, first_row, rows
    cdef const float* patches
    for block in range(group * job.blocks // job.groups, (group + 1) * job.blocks // job.groups):
        first_row = block * job.block_pixels
        rows = min(job.block_pixels, job.total_rows - first_row)
        patches = block_patches(job.x, cols, first_row, rows, job.height, job.width, job.channels, job.out_h,
                                job.out_w, &job.plan)
        if small_patch_fits(job.patch_len, job.filters):
            small_patch_kernel_gradient(patches, rows, job.patch_len, job.grad_out + first_row * job.filters,
                                        job.filters, partial)
        else:
            gemm(1.0, view(patches, rows, job.patch_len), TRANSPOSE, view(job.grad_out + first_row * job.filters,
                 rows, job.filters), NO_TRANSPOSE, 1.0, view(partial, job.patch_len, job.filters))


def conv2d_backward_kernel(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                           float[:, ::1] out_grad_kernel_matrix, float[::1] out_grad_bias, plan):
    """out_grad_kernel_matrix = patches^T @ grad_out; out_grad_bias = grad_out summed over N, OH, OW.

    x: (N, H, W, C); grad_out: (N, OH, OW, F); out_grad_kernel_matrix: (KH*KW*C, F), written;
    out_grad_bias: (F,) written, or (0,) to skip it; plan: a ConvPlan. The blocks of ``plan.block_pixels`` output
    pixels are cut into a fixed number of groups (GROUPS_PER_THREAD per thread), each summed into its own partial
    gradient by whichever thread takes it; the partials are added in group order, so results are repeatable.
    """
    cdef conv_plan c_plan = read_plan(plan)
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2], filters = grad_out.shape[3]
    check_extents(x.shape[0], x.shape[3], out_h, out_w, filters, out_grad_kernel_matrix.shape[0],
                  out_grad_kernel_matrix.shape[1], grad_out.shape[0], out_h, out_w, filters, &c_plan)
    if out_grad_bias.shape[0] not in (0, filters):
        raise ValueError(f"conv2d_backward_kernel: grad_bias ({out_grad_bias.shape[0]},) does not match {filters} filters")
    cdef conv_job job = make_job(&c_plan, x.shape[0], x.shape[1], x.shape[2], x.shape[3], out_h, out_w, filters,
                                 out_grad_kernel_matrix.shape[0])
    cdef Py_ssize_t matrix_len = job.patch_len * filters
    job.blocks = (job.total_rows + job.block_pixels - 1) // job.block_pixels
    job.groups = min(job.blocks, GROUPS_PER_THREAD * c_plan.threads) if c_plan.threads > 1 else 1
    job.x = &x[0, 0, 0, 0]
    job.grad_out = &grad_out[0, 0, 0, 0]
    cdef float* grad_kernel = &out_grad_kernel_matrix[0, 0]
    with nogil:
        # one group writes the result itself; more write partials into the caller's scratch, added up after
        job.out = grad_kernel if job.groups == 1 else <float*>thread_scratch(GROUPS_SLOT, job.groups * matrix_len * sizeof(float))
        if job.out == NULL:
            job.failed = 1
        else:
            run_blocks(backward_kernel_group, &job, job.groups, c_plan.threads)
            if job.groups > 1:
                sum_groups(job.out, job.groups, matrix_len, grad_kernel, c_plan.threads)
        trim_scratch()
        if out_grad_bias.shape[0] > 0 and not job.failed:
            column_sums(job.grad_out, job.total_rows, filters, &out_grad_bias[0], c_plan.threads)
    if job.failed:
        raise MemoryError(f"conv2d_backward_kernel: cannot allocate a ({job.block_pixels}, {job.patch_len}) patch block "
                          f"or {job.groups} partial gradients")


def scratch(limit_bytes=None):
    """``(bytes, limit)``: the scratch this module's threads hold now, and what they may keep between calls (set to
    ``limit_bytes`` first, unless None)."""
    return scratch_state(limit_bytes)
