# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Max and average pooling, NHWC float32, forward and backward.

Windows are clipped to the real input: padding never wins a max and never
counts in a mean (Keras' rule). The innermost loop runs over channels, which
are contiguous in NHWC. Samples are processed in parallel; the backward
passes write only their own sample's gradient, so they need no atomics.
"""
from libc.math cimport INFINITY
from libc.string cimport memset

from _driver cimport add_count, blocks_for, default_threads, fastconv_block_fn, run_blocks, share_driver

share_driver()  # every module's kernels run on one driver (_driver.pxd)


cdef struct pool_plan:
    # fastconv.backends.plans.PoolPlan, read once per call so that the nogil loops can take it.
    Py_ssize_t pool_h, pool_w, stride_h, stride_w, pad_top, pad_left


cdef pool_plan read_plan(plan) except *:
    """The C struct of a PoolPlan, its window and strides checked positive."""
    cdef pool_plan c_plan
    c_plan.pool_h = plan.pool_h
    c_plan.pool_w = plan.pool_w
    c_plan.stride_h = plan.stride_h
    c_plan.stride_w = plan.stride_w
    c_plan.pad_top = plan.pad_top
    c_plan.pad_left = plan.pad_left
    if min(c_plan.pool_h, c_plan.pool_w, c_plan.stride_h, c_plan.stride_w) < 1:
        raise ValueError(f"pool2d: the window and strides must be positive in {plan}")
    return c_plan


cdef int check_pool(Py_ssize_t x_batch, Py_ssize_t x_channels, Py_ssize_t y_batch, Py_ssize_t y_channels) except -1:
    if x_batch != y_batch or x_channels != y_channels:
        raise ValueError(f"pool2d: input batch/channels ({x_batch}, {x_channels}) differ from the output's ({y_batch}, {y_channels})")
    return 0


cdef bint same_shape(Py_ssize_t* a, Py_ssize_t* b) noexcept:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]


cdef inline void _clip_window(Py_ssize_t oh, Py_ssize_t ow, const pool_plan* plan, Py_ssize_t height,
                             Py_ssize_t width, Py_ssize_t* bounds) noexcept nogil:
    """bounds = [row_start, row_stop, col_start, col_stop) of the real input under output pixel (oh, ow)."""
    cdef Py_ssize_t top = oh * plan.stride_h - plan.pad_top, left = ow * plan.stride_w - plan.pad_left
    bounds[0] = max(top, 0)
    bounds[1] = min(top + plan.pool_h, height)
    bounds[2] = max(left, 0)
    bounds[3] = min(left + plan.pool_w, width)


cdef struct pool_job:
    # One call's arguments, read by every block (blocks run on the driver's threads, see _driver.pxd).
    pool_plan plan
    Py_ssize_t batch, height, width, channels, out_h, out_w
    Py_ssize_t items, blocks   # rows (n, oh) of the output forward, samples backward; cut into `blocks`
    const float* x             # forward: x; backward: grad_out
    const int* argmax
    const float* pooled        # max_pool2d_backward: the pool's ReLU output whose mask applies, or NULL
    float* out                 # forward: y; backward: grad_x
    int* out_argmax
    bint windowed              # max_pool2d_backward: windows do not overlap; write each pixel from its window
    bint covered               # ... and cover the whole input
    Py_ssize_t bad             # max_pool2d_backward: argmax indices outside the plane (outside their window)


cdef pool_job make_job(const pool_plan* plan, Py_ssize_t batch, Py_ssize_t height, Py_ssize_t width,
                       Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t items, int threads) noexcept:
    cdef pool_job job
    memset(&job, 0, sizeof(job))
    if plan != NULL:
        job.plan = plan[0]
    job.batch, job.height, job.width, job.channels, job.out_h, job.out_w = batch, height, width, channels, out_h, out_w
    job.items = items
    job.blocks = blocks_for(items, threads)
    return job


cdef void run_forward(fastconv_block_fn fn, const pool_plan* plan, const float[:, :, :, ::1] x,
                      float[:, :, :, ::1] out_y, int* out_argmax):
    """fn over the output rows (n, oh) in blocks on the calling thread's default thread count (a forward pass)."""
    cdef int threads = default_threads()
    cdef pool_job job = make_job(plan, x.shape[0], x.shape[1], x.shape[2], x.shape[3], out_y.shape[1],
                                 out_y.shape[2], x.shape[0] * out_y.shape[1], threads)
    job.x = &x[0, 0, 0, 0]
    job.out = &out_y[0, 0, 0, 0]
    job.out_argmax = out_argmax
    with nogil:
        run_blocks(fn, &job, job.blocks, threads)


cdef void max_forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef pool_job* job = <pool_job*>job_ptr
    cdef Py_ssize_t channels = job.channels, width = job.width
    cdef Py_ssize_t item, n, oh, ow, row, col, c
    cdef Py_ssize_t bounds[4]
    cdef float value, held
    cdef int index
    cdef bint take
    cdef float* best
    cdef int* best_index
    cdef const float* pixel
    for item in range(block * job.items // job.blocks, (block + 1) * job.items // job.blocks):
        n = item // job.out_h
        oh = item % job.out_h
        for ow in range(job.out_w):
            _clip_window(oh, ow, &job.plan, job.height, width, bounds)
            best = job.out + (item * job.out_w + ow) * channels
            best_index = job.out_argmax + (item * job.out_w + ow) * channels
            if bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
                for c in range(channels):
                    best[c] = -INFINITY
                    best_index[c] = 0
                continue
            pixel = job.x + ((n * job.height + bounds[0]) * width + bounds[2]) * channels
            index = <int>(bounds[0] * width + bounds[2])
            for c in range(channels):
                best[c] = pixel[c]
                best_index[c] = index
            for row in range(bounds[0], bounds[1]):
                for col in range(bounds[2], bounds[3]):
                    pixel = job.x + ((n * job.height + row) * width + col) * channels
                    index = <int>(row * width + col)
                    # selects, not branches, so that the compiler vectorises the channels; value != value: NaN,
                    # which wins unless a NaN won already
                    for c in range(channels):
                        value = pixel[c]
                        held = best[c]
                        take = (value > held) | ((value != value) & (held == held))
                        best[c] = value if take else held
                        best_index[c] = index if take else best_index[c]


def max_pool2d_forward(const float[:, :, :, ::1] x, float[:, :, :, ::1] out_y, int[:, :, :, ::1] out_argmax, plan):
    """out_y = window maxima of x; out_argmax = flat index row * W + col of each winner.

    x: (N, H, W, C); out_y, out_argmax: (N, OH, OW, C), written; plan: a PoolPlan. As NumPy's argmax (the
    reference): the first NaN of a window wins, else its first largest value.
    A window that holds no real pixel (impossible for Keras geometries) yields
    -inf and index 0.
    """
    cdef pool_plan c_plan = read_plan(plan)
    check_pool(x.shape[0], x.shape[3], out_y.shape[0], out_y.shape[3])
    if not same_shape(out_argmax.shape, out_y.shape):
        raise ValueError("max_pool2d_forward: argmax and y must have the same shape")
    run_forward(max_forward_block, &c_plan, x, out_y, &out_argmax[0, 0, 0, 0])


cdef void max_backward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef pool_job* job = <pool_job*>job_ptr
    cdef Py_ssize_t n
    for n in range(block * job.items // job.blocks, (block + 1) * job.items // job.blocks):
        if job.windowed:
            route_by_windows(job, n)
        else:
            scatter_sample(job, n)


cdef void scatter_sample(pool_job* job, Py_ssize_t n) noexcept nogil:
    """Sample n's input gradient by adding each output gradient at its argmax (none where the pooled ReLU output
    is not positive); an index outside the plane is counted (job.bad) and never written through."""
    cdef Py_ssize_t plane = job.height * job.width, channels = job.channels, outputs = job.out_h * job.out_w
    cdef Py_ssize_t out_pixel, element, c, bad = 0
    cdef int index
    cdef float* grad_sample = job.out + n * plane * channels
    memset(grad_sample, 0, plane * channels * sizeof(float))
    for out_pixel in range(n * outputs, (n + 1) * outputs):
        for c in range(channels):
            element = out_pixel * channels + c
            index = job.argmax[element]
            if index < 0 or index >= plane:
                bad += 1
            elif job.pooled == NULL or job.pooled[element] > 0:
                grad_sample[index * channels + c] += job.x[element]
    if bad:
        add_count(&job.bad, bad)


cdef void route_by_windows(pool_job* job, Py_ssize_t n) noexcept nogil:
    """Sample n's input gradient when windows do not overlap: each pixel of a window gets its output's gradient
    where it won, else 0, written once (no clearing, no scattered adds), pixels under no window cleared. An index
    that is not a pixel of its own window is counted in job.bad; the caller then scatters the whole call instead."""
    cdef Py_ssize_t channels = job.channels, width = job.width, outputs = job.out_h * job.out_w
    cdef Py_ssize_t oh, ow, row, col, c, at
    cdef int hits, won, keep  # 32-bit, as the indices they are compared with: the loop vectorises at every level
    cdef int unmasked = job.pooled == NULL
    cdef Py_ssize_t bounds[4]
    cdef int position
    cdef float* grad_sample = job.out + n * job.height * width * channels
    cdef float* target
    cdef const unsigned int* grad_bits
    cdef const float* pooled_pixel
    cdef const int* index_pixel
    if not job.covered:
        memset(grad_sample, 0, job.height * width * channels * sizeof(float))
    for oh in range(job.out_h):
        for ow in range(job.out_w):
            at = (n * outputs + oh * job.out_w + ow) * channels
            _clip_window(oh, ow, &job.plan, job.height, width, bounds)
            grad_bits = <const unsigned int*>(job.x + at)
            # without a mask any readable pixel will do: `unmasked` keeps every winner
            pooled_pixel = job.x + at if unmasked else job.pooled + at
            index_pixel = job.argmax + at
            hits = 0
            for row in range(bounds[0], bounds[1]):
                for col in range(bounds[2], bounds[3]):
                    position = <int>(row * width + col)
                    target = grad_sample + position * channels
                    for c in range(channels):
                        won = index_pixel[c] == position
                        hits += won
                        keep = won & (unmasked | (pooled_pixel[c] > 0))  # pooled NaN: not > 0, masked
                        # the gradient's bits where kept, else +0.0's: no branch at any SIMD level (the x86-64
                        # baseline has no blend, and a branch here mispredicts one time in four)
                        (<unsigned int*>target)[c] = grad_bits[c] & (0u - <unsigned int>keep)
            if hits != channels:
                add_count(&job.bad, channels - hits)


def max_pool2d_backward(const float[:, :, :, ::1] grad_out, const int[:, :, :, ::1] argmax,
                        const float[:, :, :, ::1] pooled_relu, float[:, :, :, ::1] out_grad_x, plan):
    """out_grad_x[n, argmax[n, i, j, c], c] += grad_out[n, i, j, c] (masked: 0 where pooled_relu <= 0 or NaN).

    grad_out, argmax: (N, OH, OW, C); pooled_relu: (N, OH, OW, C), the pool's output when its input was a ReLU's
    output (the result is then the gradient of that ReLU's input, see the reference), or None; out_grad_x:
    (N, H, W, C), written; plan: the forward pass's PoolPlan, or None. With a plan whose windows do not overlap
    (strides >= window), every input pixel is written once from its window's output (no scatter); were an index
    not in its own window, the call scatters instead, as without a plan.
    """
    check_pool(out_grad_x.shape[0], out_grad_x.shape[3], grad_out.shape[0], grad_out.shape[3])
    if not same_shape(argmax.shape, grad_out.shape):
        raise ValueError("max_pool2d_backward: argmax and grad_out must have the same shape")
    if pooled_relu is not None and not same_shape(pooled_relu.shape, grad_out.shape):
        raise ValueError("max_pool2d_backward: pooled_relu and grad_out must have the same shape")
    cdef pool_plan c_plan
    cdef int threads = default_threads()
    cdef pool_job job = make_job(NULL, out_grad_x.shape[0], out_grad_x.shape[1], out_grad_x.shape[2],
                                 out_grad_x.shape[3], grad_out.shape[1], grad_out.shape[2], out_grad_x.shape[0], threads)
    job.x = &grad_out[0, 0, 0, 0]
    job.argmax = &argmax[0, 0, 0, 0]
    job.pooled = NULL if pooled_relu is None else &pooled_relu[0, 0, 0, 0]
    job.out = &out_grad_x[0, 0, 0, 0]
    if plan is not None:
        c_plan = read_plan(plan)
        job.plan = c_plan
        job.windowed = c_plan.stride_h >= c_plan.pool_h and c_plan.stride_w >= c_plan.pool_w
        job.covered = (c_plan.stride_h == c_plan.pool_h and c_plan.stride_w == c_plan.pool_w
                       and job.out_h * c_plan.stride_h - c_plan.pad_top >= job.height
                       and job.out_w * c_plan.stride_w - c_plan.pad_left >= job.width)
    with nogil:
        run_blocks(max_backward_block, &job, job.blocks, threads)
        if job.windowed and job.bad:
            job.windowed = False
            job.bad = 0
            run_blocks(max_backward_block, &job, job.blocks, threads)
    if job.bad:
        raise ValueError(f"max_pool2d_backward: argmax holds {job.bad} indices outside the {job.height}x{job.width} "
                         f"input plane")


cdef void avg_forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef pool_job* job = <pool_job*>job_ptr
    cdef Py_ssize_t channels = job.channels
    cdef Py_ssize_t item, n, oh, ow, row, col, c
    cdef Py_ssize_t bounds[4]
    cdef float scale
    cdef float* mean
    cdef const float* pixel
    for item in range(block * job.items // job.blocks, (block + 1) * job.items // job.blocks):
        n = item // job.out_h
        oh = item % job.out_h
        for ow in range(job.out_w):
            _clip_window(oh, ow, &job.plan, job.height, job.width, bounds)
            mean = job.out + (item * job.out_w + ow) * channels
            scale = 1.0 / max((bounds[1] - bounds[0]) * (bounds[3] - bounds[2]), 1)
            for c in range(channels):
                mean[c] = 0.0
            for row in range(bounds[0], bounds[1]):
                for col in range(bounds[2], bounds[3]):
                    pixel = job.x + ((n * job.height + row) * job.width + col) * channels
                    for c in range(channels):
                        mean[c] += pixel[c] * scale


def avg_pool2d_forward(const float[:, :, :, ::1] x, float[:, :, :, ::1] out_y, plan):
    """out_y = mean of the real pixels of each window. x: (N, H, W, C); out_y: (N, OH, OW, C), written; plan: a PoolPlan.

    Each pixel is scaled before it is added, so the mean of finite values is
    finite (a float32 sum of four values near 3e38 would overflow).
    """
    cdef pool_plan c_plan = read_plan(plan)
    check_pool(x.shape[0], x.shape[3], out_y.shape[0], out_y.shape[3])
    run_forward(avg_forward_block, &c_plan, x, out_y, NULL)


cdef void avg_backward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef pool_job* job = <pool_job*>job_ptr
    cdef Py_ssize_t channels = job.channels
    cdef Py_ssize_t n, oh, ow, row, col, c
    cdef Py_ssize_t bounds[4]
    cdef float scale
    cdef float* grad_sample
    cdef float* target
    cdef const float* grad_pixel
    for n in range(block * job.items // job.blocks, (block + 1) * job.items // job.blocks):
        grad_sample = job.out + n * job.height * job.width * channels
        memset(grad_sample, 0, job.height * job.width * channels * sizeof(float))
        for oh in range(job.out_h):
            for ow in range(job.out_w):
                _clip_window(oh, ow, &job.plan, job.height, job.width, bounds)
                scale = 1.0 / max((bounds[1] - bounds[0]) * (bounds[3] - bounds[2]), 1)
                grad_pixel = job.x + ((n * job.out_h + oh) * job.out_w + ow) * channels
                for row in range(bounds[0], bounds[1]):
                    for col in range(bounds[2], bounds[3]):
                        target = grad_sample + (row * job.width + col) * channels
                        for c in range(channels):
                            target[c] += grad_pixel[c] * scale


def avg_pool2d_backward(const float[:, :, :, ::1] grad_out, float[:, :, :, ::1] out_grad_x, plan):
    """Spread each output gradient evenly over its window's real pixels.

    grad_out: (N, OH, OW, C); out_grad_x: (N, H, W, C), written; plan: a PoolPlan.
    """
    cdef pool_plan c_plan = read_plan(plan)
    check_pool(out_grad_x.shape[0], out_grad_x.shape[3], grad_out.shape[0], grad_out.shape[3])
    cdef int threads = default_threads()
    cdef pool_job job = make_job(&c_plan, out_grad_x.shape[0], out_grad_x.shape[1], out_grad_x.shape[2],
                                 out_grad_x.shape[3], grad_out.shape[1], grad_out.shape[2], out_grad_x.shape[0], threads)
    job.x = &grad_out[0, 0, 0, 0]
    job.out = &out_grad_x[0, 0, 0, 0]
    with nogil:
        run_blocks(avg_backward_block, &job, job.blocks, threads)
