"""Convolution: im2col in blocks of patches, one BLAS product per block (``np.dot``, which Numba routes to
SciPy's BLAS; the kernel gradient's products added into their partial sums by BLAS itself, ``_blas.gemm`` with
beta = 1), as src_ext/conv.pyx does. The contract: ``fastconv.backends.contract``.

x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); out_y, grad_out: (N, OH, OW, F); all float32, C-contiguous, outputs
(``out_*``) preallocated by the caller; plan: a ``fastconv.backends.plans.ConvPlan`` (a typed tuple to Numba).
"""

import numpy as np
from numba import cfunc, njit

from fastconv.backends import buffers
from fastconv.backends.numba._blas import NO_TRANSPOSE, TRANSPOSE, gemm
from fastconv.backends.numba._common import SERIAL, add_bias_relu, group_count
from fastconv.backends.numba._driver import (BLOCK_OPTIONS, BLOCK_SIGNATURE, DRIVER, GRADIENT_PARTIALS, GRADIENT_PLAN, GRADIENT_X,
                                             GRADIENT_Y, conv_plan_at, float32_1d, float32_2d, float32_3d, float32_4d, job_of,
                                             new_job, put, put_conv_plan, run, run_kernel_gradient, scratch)

# As in the Cython kernels, each thread takes blocks as it comes free, gathers a block of patches into its own scratch
# and multiplies it with a BLAS call that fastconv.backends.blas_threads keeps single-threaded for the whole kernel
# call, in its own core's cache.


@njit(**SERIAL)
def _im2col_rows(x, cols, first_row, out_h, out_w, plan):
    """cols (rows, KH*KW*C): the patches of output pixels [first_row, first_row + rows) of the flattened (N, OH, OW).

    The block is walked in runs of pixels of one output row. Where a run's windows lie wholly inside the input's
    columns, each kernel row is one pass along one input row: per pixel a contiguous run of KW*C values copied
    without a test per element (a row of zeros above or below the input). Flat views and unsigned offsets: a signed
    index costs Numba a negative-index test per element. Cats vs dogs' conv1 (C = 3, runs of 9 values): 10.5 ->
    5.0 ms for all its patches, pixel by pixel against whole rows.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kernel_h, kernel_w = plan.kernel_h, plan.kernel_w
    x_flat, cols_flat = x.reshape(-1), cols.reshape(-1)
    span, row_len = np.uint64(kernel_w * channels), width * channels
    patch_len, step = np.uint64(cols.shape[1]), np.uint64(plan.stride_w * channels)
    n, oh, ow = first_row // (out_h * out_w), (first_row // out_w) % out_h, first_row % out_w
    i, rows = 0, cols.shape[0]
    while i < rows:
        run = min(rows - i, out_w - ow)
        left = ow * plan.stride_w - plan.pad_left
        top = oh * plan.stride_h - plan.pad_top
        if left >= 0 and (ow + run - 1) * plan.stride_w - plan.pad_left + kernel_w <= width:
            for r in range(kernel_h):
                in_row = top + r
                first_target = np.uint64(i) * patch_len + np.uint64(r) * span
                if 0 <= in_row < height:
                    source = np.uint64((n * height + in_row) * row_len + left * channels)
                    for pixel in range(np.uint64(run)):
                        to, start = first_target + pixel * patch_len, source + pixel * step
                        for j in range(span):
                            cols_flat[to + j] = x_flat[start + j]
                else:
                    for pixel in range(np.uint64(run)):
                        to = first_target + pixel * patch_len
                        for j in range(span):
                            cols_flat[to + j] = 0.0
        else:
            _im2col_pixels(x, cols[i : i + run], (n * out_h + oh) * out_w + ow, out_h, out_w, plan)
        i, ow = i + run, ow + run
        if ow == out_w:
            ow, oh = 0, oh + 1
            if oh == out_h:
                oh, n = 0, n + 1


@njit(**SERIAL)
def _im2col_pixels(x, cols, first_row, out_h, out_w, plan):
    """cols (rows, KH*KW*C): the patches of output pixels [first_row, first_row + rows) of the flattened (N, OH, OW),
    pixel by pixel, each tested against the input's edges (_im2col_rows' way for runs that cross one).

    A kernel row that lies wholly inside the input is one contiguous run of KW*C values in NHWC, copied without a
    test per element. The walk steps (n, oh, ow) instead of dividing per row, and indexes flat views with unsigned
    offsets: a signed index costs Numba a negative-index test per element, which kept these copies scalar (cats vs
    dogs' conv2 patches: 66 ms -> 17 ms on one thread).
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kernel_h, kernel_w = plan.kernel_h, plan.kernel_w
    x_flat, cols_flat = x.reshape(-1), cols.reshape(-1)
    span, row_len = kernel_w * channels, width * channels
    unsigned_span, patch_len = np.uint64(span), np.uint64(cols.shape[1])
    n, oh, ow = first_row // (out_h * out_w), (first_row // out_w) % out_h, first_row % out_w
    for i in range(cols.shape[0]):
        top, left = oh * plan.stride_h - plan.pad_top, ow * plan.stride_w - plan.pad_left
        to = np.uint64(i) * patch_len
        for r in range(kernel_h):
            in_row = top + r
            if in_row < 0 or in_row >= height:
                for j in range(unsigned_span):
                    cols_flat[to + j] = 0.0
            elif left >= 0 and left + kernel_w <= width:
                source = np.uint64((n * height + in_row) * row_len + left * channels)
                for j in range(unsigned_span):
                    cols_flat[to + j] = x_flat[source + j]
            else:
                row_start = (n * height + in_row) * row_len
                for s in range(kernel_w):
                    in_col = left + s
                    inside = 0 <= in_col < width
                    for c in range(channels):
                        cols_flat[to + np.uint64(s * channels + c)] = x_flat[row_start + in_col * channels + c] if inside else 0.0
            to += unsigned_span
        ow += 1
        if ow == out_w:
            ow, oh = 0, oh + 1
            if oh == out_h:
                oh, n = 0, n + 1


@njit(**SERIAL)
def _col2im_sample(cols, grad_sample, out_h, out_w, plan):
    """grad_sample (H, W, C) = one sample's patch rows cols (OH*OW, KH*KW*C) added back where they were gathered
    (flat views, unsigned offsets, as _im2col_rows)."""
    height, width, channels = grad_sample.shape
    stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w = plan.stride_h, plan.stride_w, plan.pad_top, plan.pad_left, plan.kernel_h, plan.kernel_w
    grad_flat, cols_flat = grad_sample.reshape(-1), cols.reshape(-1)
    unsigned_channels, patch_len = np.uint64(channels), np.uint64(cols.shape[1])
    grad_flat[:] = 0.0
    for oh in range(out_h):
        for ow in range(out_w):
            source = np.uint64(oh * out_w + ow) * patch_len
            for r in range(kernel_h):
                in_row = oh * stride_h - pad_top + r
                for s in range(kernel_w):
                    in_col = ow * stride_w - pad_left + s
                    if 0 <= in_row < height and 0 <= in_col < width:
                        target = np.uint64((in_row * width + in_col) * channels)
                        for c in range(unsigned_channels):
                            grad_flat[target + c] += cols_flat[source + c]
                    source += unsigned_channels


@njit(**SERIAL)
def _is_pointwise(plan):
    return plan.kernel_h == 1 and plan.kernel_w == 1 and plan.stride_h == 1 and plan.stride_w == 1 and plan.pad_top == 0 and plan.pad_left == 0


@njit(**SERIAL)
def _block_patches(x, cols, first_row, rows, out_h, out_w, plan):
    """The (rows, KH*KW*C) patch matrix of a block of output pixels: x's own rows for a pointwise kernel, else
    gathered into the thread's scratch ``cols`` (>= rows, KH*KW*C)."""
    if _is_pointwise(plan):
        return x.reshape(-1, x.shape[3])[first_row : first_row + rows]
    patches = cols[:rows]
    _im2col_rows(x, patches, first_row, out_h, out_w, plan)
    return patches


# Patches of at most this many values (a first layer: 9 for MNIST's conv1, 27 for cats vs dogs') have their kernel
# gradient summed by a loop of ours instead of BLAS, which spends more on packing a (rows, K) block than on the
# product (src_ext/_small_patch.pxd makes the same choice). The forward products stay with BLAS: the same loops ran
# them 1.3-1.5x slower.
SHORT_PATCH = 32


@njit(**SERIAL)
def _add_short_patch_products(patches, grad_block, partial):
    """partial (K, F) += patches (rows, K)^T @ grad_block (rows, F), eight rows at a time, so that each load and
    store of a row of ``partial`` carries eight products (LLVM vectorises the loop over F). cats vs dogs' conv1
    (K = 27, 9,709 rows): 0.41 ms against BLAS's 0.51 plus the addition; MNIST's (K = 9): 0.17 against 0.35."""
    rows, patch_len = patches.shape
    filters = grad_block.shape[1]
    row = 0
    while row + 8 <= rows:
        g = grad_block[row : row + 8]
        for k in range(patch_len):
            a0, a1, a2, a3 = patches[row, k], patches[row + 1, k], patches[row + 2, k], patches[row + 3, k]
            a4, a5, a6, a7 = patches[row + 4, k], patches[row + 5, k], patches[row + 6, k], patches[row + 7, k]
            target = partial[k]
            for f in range(filters):
                target[f] += (a0 * g[0, f] + a1 * g[1, f] + a2 * g[2, f] + a3 * g[3, f]) + (
                    a4 * g[4, f] + a5 * g[5, f] + a6 * g[6, f] + a7 * g[7, f])
        row += 8
    for rest in range(row, rows):
        for k in range(patch_len):
            value = patches[rest, k]
            target = partial[k]
            for f in range(filters):
                target[f] += value * grad_block[rest, f]


# The blocks run on the Cython driver (``_driver``): a launcher writes the call into a job record, each block
# function rebuilds its arrays from it and takes its scratch from the running thread's own, kept between calls.
# Record layouts (fields of int64): an array is its address then its shape, a plan its fields.
_X, _KERNEL, _BIAS, _Y, _PLAN = 0, 5, 8, 10, 15  # forward: x (4-D), kernel_matrix (2-D), bias, out_y, ConvPlan


def conv2d_forward(x, kernel_matrix, bias, out_y, plan):
    """out_y = conv(x, kernel) + bias, then max(., 0) if ``plan.relu``. x: (N, H, W, C); kernel_matrix: (KH*KW*C, F);
    bias: (F,); out_y: (N, OH, OW, F)."""
    _conv2d_forward_launch(x, kernel_matrix, bias, out_y, plan, DRIVER, _CONV2D_FORWARD_BLOCK)


@njit(**SERIAL)
def _conv2d_forward_launch(x, kernel_matrix, bias, out_y, plan, driver, block_fn):
    job = new_job(driver)
    put(job, _X, x)
    put(job, _KERNEL, kernel_matrix)
    put(job, _BIAS, bias)
    put(job, _Y, out_y)
    put_conv_plan(job, _PLAN, plan)
    total_rows = out_y.shape[0] * out_y.shape[1] * out_y.shape[2]
    run(driver, block_fn, job, (total_rows + plan.block_pixels - 1) // plan.block_pixels, plan.threads)


@njit(**SERIAL)
def _conv2d_forward_block(job, block):
    x, kernel_matrix, bias, out_y = float32_4d(job, _X), float32_2d(job, _KERNEL), float32_1d(job, _BIAS), float32_4d(job, _Y)
    plan = conv_plan_at(job, _PLAN)
    batch, out_h, out_w, filters = out_y.shape
    y_rows = out_y.reshape(batch * out_h * out_w, filters)
    patch_len, block_pixels = kernel_matrix.shape[0], plan.block_pixels
    cols = scratch(job, 0, block_pixels * patch_len)
    if cols.size < block_pixels * patch_len:
        return
    first_row = block * block_pixels
    rows = min(block_pixels, y_rows.shape[0] - first_row)
    patches = _block_patches(x, cols.reshape(block_pixels, patch_len), first_row, rows, out_h, out_w, plan)
    y_block = y_rows[first_row : first_row + rows]
    np.dot(patches, kernel_matrix, y_block)
    add_bias_relu(y_block, bias, plan.relu)


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _conv2d_forward_cfunc(job_address, block):
    _conv2d_forward_block(job_of(job_address), block)


_CONV2D_FORWARD_BLOCK = _conv2d_forward_cfunc.address
_GRAD_Y, _GRAD_X = 0, 10  # input gradient: grad_out (4-D), kernel_matrix at _KERNEL, out_grad_x, ConvPlan at _PLAN


def conv2d_backward_input(grad_out, kernel_matrix, out_grad_x, plan):
    """out_grad_x = d conv / d x, in blocks of ``plan.block_samples`` whole samples, one BLAS product per block. grad_out: (N, OH, OW, F); kernel_matrix: (KH*KW*C, F); out_grad_x: (N, H, W, C)."""
    _conv2d_backward_input_launch(grad_out, kernel_matrix, out_grad_x, plan, DRIVER, _CONV2D_BACKWARD_INPUT_BLOCK)


@njit(**SERIAL)
def _conv2d_backward_input_launch(grad_out, kernel_matrix, out_grad_x, plan, driver, block_fn):
    job = new_job(driver)
    put(job, _GRAD_Y, grad_out)
    put(job, _KERNEL, kernel_matrix)
    put(job, _GRAD_X, out_grad_x)
    put_conv_plan(job, _PLAN, plan)
    samples_per_block = plan.block_samples
    run(driver, block_fn, job, (grad_out.shape[0] + samples_per_block - 1) // samples_per_block, plan.threads)


@njit(**SERIAL)
def _conv2d_backward_input_block(job, block):
    grad_out, kernel_matrix, out_grad_x = float32_4d(job, _GRAD_Y), float32_2d(job, _KERNEL), float32_4d(job, _GRAD_X)
    plan = conv_plan_at(job, _PLAN)
    batch, out_h, out_w, filters = grad_out.shape
    pixels, channels, samples_per_block = out_h * out_w, out_grad_x.shape[3], plan.block_samples
    grad_rows = grad_out.reshape(batch * pixels, filters)
    first = block * samples_per_block
    count = min(samples_per_block, batch - first)
    grad_block = grad_rows[first * pixels : (first + count) * pixels]
    if _is_pointwise(plan):  # a pointwise kernel keeps the spatial size: its input gradient has the rows of grad_out
        grad_x_rows = out_grad_x.reshape(batch * pixels, channels)
        np.dot(grad_block, kernel_matrix.T, grad_x_rows[first * pixels : (first + count) * pixels])
        return
    patch_len = kernel_matrix.shape[0]
    flat = scratch(job, 0, samples_per_block * pixels * patch_len)
    if flat.size < samples_per_block * pixels * patch_len:
        return
    patches = flat[: count * pixels * patch_len].reshape(count * pixels, patch_len)
    np.dot(grad_block, kernel_matrix.T, patches)
    for n in range(count):
        _col2im_sample(patches[n * pixels : (n + 1) * pixels], out_grad_x[first + n], out_h, out_w, plan)


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _conv2d_backward_input_cfunc(job_address, block):
    _conv2d_backward_input_block(job_of(job_address), block)


_CONV2D_BACKWARD_INPUT_BLOCK = _conv2d_backward_input_cfunc.address


def conv2d_backward_kernel(x, grad_out, out_grad_kernel_matrix, out_grad_bias, plan):
    """out_grad_kernel_matrix = patches^T @ grad_out, out_grad_bias = sums of grad_out over N, OH, OW ((0,) to skip).
    x: (N, H, W, C); grad_out: (N, OH, OW, F); out_grad_kernel_matrix: (KH*KW*C, F); out_grad_bias: (F,) or (0,).

    The blocks of ``plan.block_pixels`` output pixels are cut into a fixed number of groups (``group_count``), each
    summed into its own partial gradient by whichever thread takes it; the partials are added in group order, so
    results are repeatable.
    """
    patch_len, filters = out_grad_kernel_matrix.shape
    total_rows = grad_out.shape[0] * grad_out.shape[1] * grad_out.shape[2]
    groups = group_count((total_rows + plan.block_pixels - 1) // plan.block_pixels, plan.threads)
    partials = buffers.pool.empty((groups, patch_len, filters))
    run_kernel_gradient(x, grad_out, partials, out_grad_kernel_matrix, out_grad_bias, plan, DRIVER, _CONV2D_BACKWARD_KERNEL_BLOCK)


@njit(**SERIAL)
def _conv2d_backward_kernel_block(job, group):
    """Group ``group`` of the pixel blocks, summed into its partial."""
    x, grad_out, partials = float32_4d(job, GRADIENT_X), float32_4d(job, GRADIENT_Y), float32_3d(job, GRADIENT_PARTIALS)
    plan = conv_plan_at(job, GRADIENT_PLAN)
    batch, out_h, out_w, filters = grad_out.shape
    grad_rows = grad_out.reshape(batch * out_h * out_w, filters)
    total_rows, block_pixels, groups, patch_len = grad_rows.shape[0], plan.block_pixels, partials.shape[0], partials.shape[1]
    blocks = (total_rows + block_pixels - 1) // block_pixels
    cols = scratch(job, 0, block_pixels * patch_len)
    if cols.size < block_pixels * patch_len:
        return
    partial = partials[group]
    partial[:] = 0.0
    for block in range(group * blocks // groups, (group + 1) * blocks // groups):
        first_row = block * block_pixels
        rows = min(block_pixels, total_rows - first_row)
        patches = _block_patches(x, cols.reshape(block_pixels, patch_len), first_row, rows, out_h, out_w, plan)
        if patches.shape[1] <= SHORT_PATCH:
            _add_short_patch_products(patches, grad_rows[first_row : first_row + rows], partial)
        else:
            gemm(1.0, patches, TRANSPOSE, grad_rows[first_row : first_row + rows], NO_TRANSPOSE, 1.0, partial)


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _conv2d_backward_kernel_cfunc(job_address, group):
    _conv2d_backward_kernel_block(job_of(job_address), group)


_CONV2D_BACKWARD_KERNEL_BLOCK = _conv2d_backward_kernel_cfunc.address
