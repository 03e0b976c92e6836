"""Max and average pooling over clipped windows (the real pixels under each output pixel), as src_ext/pool.pyx.

x, out_grad_x: (N, H, W, C); out_y, grad_out: (N, OH, OW, C); argmax: (N, OH, OW, C) int32 flat index into x;
plan: a ``fastconv.backends.plans.PoolPlan``.
"""

import numba
import numpy as np
from numba import cfunc, njit, prange

from fastconv.backends.numba._common import PARALLEL, SERIAL
from fastconv.backends.numba._driver import (BLOCK_OPTIONS, BLOCK_SIGNATURE, BLOCKS, DRIVER, blocks_for, float32_4d,
                                             int32_4d, int64_1d, job_of, new_job, pool_plan_at, put, put_pool_plan, run)

@njit(**SERIAL)
def _clip_window(oh, ow, plan, height, width):
    """(row_start, row_stop, col_start, col_stop) of the real input under output pixel (oh, ow)."""
    top = oh * plan.stride_h - plan.pad_top
    left = ow * plan.stride_w - plan.pad_left
    return max(top, 0), min(top + plan.pool_h, height), max(left, 0), min(left + plan.pool_w, width)


# Max pooling's blocks run on the Cython driver (``_driver``), as conv.py's: record layouts (fields of int64, an array
# as its address then its shape): forward x, out_y, out_argmax, PoolPlan; windowed backward grad_out, argmax,
# pooled, out_grad_x, the per-block counts of indices outside their window, whether to mask, PoolPlan.
_X, _Y, _ARGMAX, _PLAN = 0, 5, 10, 15


def max_pool2d_forward(x, out_y, out_argmax, plan):
    """out_y = window maxima; out_argmax = row * W + col of each winner. x: (N, H, W, C); out_y, out_argmax: (N, OH, OW, C).

    As NumPy's argmax (the reference): the first NaN of a window wins, else its first largest value. In blocks of
    output rows, on the calling thread's thread count (``numba.get_num_threads``, which the backend sets per call).
    """
    _max_pool2d_forward_launch(x, out_y, out_argmax, plan, numba.get_num_threads(), DRIVER, _MAX_POOL_FORWARD_BLOCK)


@njit(**SERIAL)
def _max_pool2d_forward_launch(x, out_y, out_argmax, plan, threads, driver, block_fn):
    job = new_job(driver)
    put(job, _X, x)
    put(job, _Y, out_y)
    put(job, _ARGMAX, out_argmax)
    put_pool_plan(job, _PLAN, plan)
    run(driver, block_fn, job, blocks_for(x.shape[0] * out_y.shape[1], threads), threads)


@njit(**SERIAL)
def _max_pool2d_forward_block(job, block):
    x, out_y, out_argmax, plan = float32_4d(job, _X), float32_4d(job, _Y), int32_4d(job, _ARGMAX), pool_plan_at(job, _PLAN)
    batch, height, width, channels = x.shape
    out_h, out_w = out_y.shape[1], out_y.shape[2]
    # flat views and unsigned offsets: a signed index costs Numba a negative-index test per element, which kept
    # the channel loop from vectorising (cats vs dogs' first pool, 2 threads: 15.1 -> 5.7-6.3 ms)
    x_flat, y_flat, index_flat = x.reshape(-1), out_y.reshape(-1), out_argmax.reshape(-1)
    unsigned_channels = np.uint64(channels)
    items, blocks = batch * out_h, job[BLOCKS]
    for item in range(block * items // blocks, (block + 1) * items // blocks):
        n = item // out_h
        oh = item % out_h
        for ow in range(out_w):
            r0, r1, c0, c1 = _clip_window(oh, ow, plan, height, width)
            out_at = np.uint64(((n * out_h + oh) * out_w + ow) * channels)
            if r0 >= r1 or c0 >= c1:  # no real pixel (impossible for Keras geometries)
                for c in range(unsigned_channels):
                    y_flat[out_at + c] = -np.inf
                    index_flat[out_at + c] = 0
                continue
            first_at = np.uint64(((n * height + r0) * width + c0) * channels)
            first_index = np.int32(r0 * width + c0)
            for c in range(unsigned_channels):
                y_flat[out_at + c] = x_flat[first_at + c]
                index_flat[out_at + c] = first_index
            for row in range(r0, r1):
                for col in range(c0, c1):
                    pixel_at, index = np.uint64(((n * height + row) * width + col) * channels), np.int32(row * width + col)
                    for c in range(unsigned_channels):  # selects, not branches: the channels vectorise
                        value, held = x_flat[pixel_at + c], y_flat[out_at + c]
                        take = (value > held) | ((value != value) & (held == held))
                        y_flat[out_at + c] = value if take else held
                        index_flat[out_at + c] = index if take else index_flat[out_at + c]


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _max_pool2d_forward_cfunc(job_address, block):
    _max_pool2d_forward_block(job_of(job_address), block)


_MAX_POOL_FORWARD_BLOCK = _max_pool2d_forward_cfunc.address


def max_pool2d_backward(grad_out, argmax, pooled_relu, out_grad_x, plan):
    """out_grad_x[n, argmax, c] += grad_out (0 where pooled_relu, if given, is not positive). grad_out, argmax,
    pooled_relu: (N, OH, OW, C); out_grad_x: (N, H, W, C). With a ``plan`` whose windows do not overlap, each pixel
    is written once from its window (as src_ext/pool.pyx). ValueError for an index outside the plane."""
    masked = pooled_relu is not None
    pooled = pooled_relu if masked else grad_out
    windowed = plan is not None and plan.stride_h >= plan.pool_h and plan.stride_w >= plan.pool_w
    if not windowed or _route_by_windows_launch(grad_out, argmax, pooled, masked, out_grad_x, plan, numba.get_num_threads(),
                                                DRIVER, _ROUTE_BY_WINDOWS_BLOCK):
        bad = _scatter(grad_out, argmax, pooled, masked, out_grad_x)
    else:
        bad = 0
    if bad:
        height, width = out_grad_x.shape[1], out_grad_x.shape[2]
        raise ValueError(f"max_pool2d_backward: argmax holds {bad} indices outside the {height}x{width} input plane")


@njit(**PARALLEL)
def _scatter(grad_out, argmax, pooled, masked, out_grad_x):
    """Adds each output gradient at its argmax; returns the count of indices outside the plane (not written)."""
    batch, height, width, channels = out_grad_x.shape
    plane, outputs = height * width, grad_out.shape[1] * grad_out.shape[2]
    # flat (pixels, channels) planes: argmax is already a pixel index, and a division per element cost a third
    grad_planes = out_grad_x.reshape(batch, plane, channels)
    grad_rows = grad_out.reshape(batch, outputs, channels)
    index_rows = argmax.reshape(batch, outputs, channels)
    pooled_rows = pooled.reshape(batch, outputs, channels)
    bad = 0
    for n in prange(batch):
        grad_planes[n] = 0.0
        for pixel in range(outputs):
            for c in range(channels):
                index = index_rows[n, pixel, c]
                if index < 0 or index >= plane:
                    bad += 1
                elif not masked or pooled_rows[n, pixel, c] > 0:
                    grad_planes[n, index, c] += grad_rows[n, pixel, c]
    return bad


_GRAD_Y, _WINNERS, _POOLED, _GRAD_X, _MISSED, _MASKED, _BACKWARD_PLAN = 0, 5, 10, 15, 20, 22, 23  # windowed backward


@njit(**SERIAL)
def _route_by_windows_launch(grad_out, argmax, pooled, masked, out_grad_x, plan, threads, driver, block_fn):
    """Windows that do not overlap: each window pixel gets its output's gradient where it won, else 0; pixels under
    no window are cleared, in blocks of samples. Returns the count of indices that are not a pixel of their own window."""
    blocks = blocks_for(grad_out.shape[0], threads)
    missed = np.zeros(blocks, dtype=np.int64)  # by block
    job = new_job(driver)
    put(job, _GRAD_Y, grad_out)
    put(job, _WINNERS, argmax)
    put(job, _POOLED, pooled)
    put(job, _GRAD_X, out_grad_x)
    put(job, _MISSED, missed)
    job[_MASKED] = 1 if masked else 0
    put_pool_plan(job, _BACKWARD_PLAN, plan)
    run(driver, block_fn, job, blocks, threads)
    return missed.sum()


@njit(**SERIAL)
def _route_by_windows_block(job, block):
    grad_out, argmax, pooled = float32_4d(job, _GRAD_Y), int32_4d(job, _WINNERS), float32_4d(job, _POOLED)
    out_grad_x, missed, masked = float32_4d(job, _GRAD_X), int64_1d(job, _MISSED), job[_MASKED] != 0
    plan = pool_plan_at(job, _BACKWARD_PLAN)
    batch, height, width, channels = out_grad_x.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    covered = (plan.stride_h == plan.pool_h and plan.stride_w == plan.pool_w
               and out_h * plan.stride_h - plan.pad_top >= height and out_w * plan.stride_w - plan.pad_left >= width)
    grad_flat = out_grad_x.reshape(-1)
    # the gradient's bits, and'ed with all ones where a pixel won and zeros elsewhere, as src_ext/pool.pyx: a float
    # select per element kept this loop 1.5x as long as Cython's (cats vs dogs' first pool, one thread: 10.4 -> 9.3 ms; Cython 7.2)
    grad_bits, grad_out_bits = grad_flat.view(np.uint32), grad_out.reshape(-1).view(np.uint32)
    index_flat, pooled_flat = argmax.reshape(-1), pooled.reshape(-1)
    unsigned_channels = np.uint64(channels)  # unsigned offsets vectorise (max_pool2d_forward)
    # 32-bit flags and a 32-bit count of winners, as the int32 indices they come from (Numba widens int32 + int32 to
    # int64, so the count is cast back each time): MNIST's first pool, one thread, 0.55 -> 0.47 ms (Cython 0.40)
    unmasked = np.uint32(not masked)
    missed_here, blocks = 0, job[BLOCKS]
    for n in range(block * batch // blocks, (block + 1) * batch // blocks):
        if not covered:
            grad_flat[n * height * width * channels : (n + 1) * height * width * channels] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                r0, r1, c0, c1 = _clip_window(oh, ow, plan, height, width)
                out_at = np.uint64(((n * out_h + oh) * out_w + ow) * channels)
                hits = np.uint32(0)
                for row in range(r0, r1):
                    for col in range(c0, c1):
                        position = np.int32(row * width + col)
                        target_at = np.uint64((n * height * width + position) * channels)
                        for c in range(unsigned_channels):  # & and |, not and/or: no branch per element
                            won = np.uint32(index_flat[out_at + c] == position)
                            hits = np.uint32(hits + won)
                            keep = won & (unmasked | np.uint32(pooled_flat[out_at + c] > 0))  # pooled NaN: not > 0, masked
                            grad_bits[target_at + c] = grad_out_bits[out_at + c] & (np.uint32(0) - keep)
                missed_here += channels - np.int64(hits)
    missed[block] = missed_here


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _route_by_windows_cfunc(job_address, block):
    _route_by_windows_block(job_of(job_address), block)


_ROUTE_BY_WINDOWS_BLOCK = _route_by_windows_cfunc.address


@njit(**PARALLEL)
def avg_pool2d_forward(x, out_y, plan):
    """out_y = mean of each window's real pixels. x: (N, H, W, C); out_y: (N, OH, OW, C).

    Each pixel is scaled before it is added, so the mean of finite values is finite.
    """
    batch, height, width, channels = x.shape
    out_h, out_w = out_y.shape[1], out_y.shape[2]
    for item in prange(batch * out_h):
        n = item // out_h
        oh = item % out_h
        for ow in range(out_w):
            r0, r1, c0, c1 = _clip_window(oh, ow, plan, height, width)
            scale = np.float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
            for c in range(channels):
                out_y[n, oh, ow, c] = 0.0
            for row in range(r0, r1):
                for col in range(c0, c1):
                    for c in range(channels):
                        out_y[n, oh, ow, c] += x[n, row, col, c] * scale


@njit(**PARALLEL)
def avg_pool2d_backward(grad_out, out_grad_x, plan):
    """Spread each output gradient evenly over its window's real pixels. grad_out: (N, OH, OW, C); out_grad_x: (N, H, W, C)."""
    batch, height, width, channels = out_grad_x.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for n in prange(batch):
        out_grad_x[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                r0, r1, c0, c1 = _clip_window(oh, ow, plan, height, width)
                scale = np.float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
                for row in range(r0, r1):
                    for col in range(c0, c1):
                        for c in range(channels):
                            out_grad_x[n, row, col, c] += grad_out[n, oh, ow, c] * scale
