"""Max and average pooling over clipped windows (the real pixels under each output pixel), as src_ext/pool.pyx.

x, out_grad_x: (N, H, W, C); out_y, grad_out: (N, OH, OW, C); argmax: (N, OH, OW, C) int32 flat index into x;
plan: a ``fastconv.backends.plans.PoolPlan``.
"""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL, SERIAL

@njit(**SERIAL)
def _clip_window(oh, ow, plan, height, width):
    """(row_start, row_stop, col_start, col_stop) of the real input under output pixel (oh, ow)."""
    top = oh * plan.stride_h - plan.pad_top
    left = ow * plan.stride_w - plan.pad_left
    return max(top, 0), min(top + plan.pool_h, height), max(left, 0), min(left + plan.pool_w, width)


@njit(**PARALLEL)
def max_pool2d_forward(x, out_y, out_argmax, plan):
    """out_y = window maxima; out_argmax = row * W + col of each winner. x: (N, H, W, C); out_y, out_argmax: (N, OH, OW, C).

    As NumPy's argmax (the reference): the first NaN of a window wins, else its first largest value.
    """
    batch, height, width, channels = x.shape
    out_h, out_w = out_y.shape[1], out_y.shape[2]
    # flat views and unsigned offsets: a signed index costs Numba a negative-index test per element, which kept
    # the channel loop from vectorising (cats vs dogs' first pool, 2 threads: 15.1 -> 5.7-6.3 ms)
    x_flat, y_flat, index_flat = x.reshape(-1), out_y.reshape(-1), out_argmax.reshape(-1)
    unsigned_channels = np.uint64(channels)
    for item in prange(batch * out_h):
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


def max_pool2d_backward(grad_out, argmax, pooled_relu, out_grad_x, plan):
    """out_grad_x[n, argmax, c] += grad_out (0 where pooled_relu, if given, is not positive). grad_out, argmax,
    pooled_relu: (N, OH, OW, C); out_grad_x: (N, H, W, C). With a ``plan`` whose windows do not overlap, each pixel
    is written once from its window (as src_ext/pool.pyx). ValueError for an index outside the plane."""
    masked = pooled_relu is not None
    pooled = pooled_relu if masked else grad_out
    windowed = plan is not None and plan.stride_h >= plan.pool_h and plan.stride_w >= plan.pool_w
    if not windowed or _route_by_windows(grad_out, argmax, pooled, masked, out_grad_x, plan):
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


@njit(**PARALLEL)
def _route_by_windows(grad_out, argmax, pooled, masked, out_grad_x, plan):
    """Windows that do not overlap: each window pixel gets its output's gradient where it won, else 0; pixels under
    no window are cleared. Returns the count of indices that are not a pixel of their own window."""
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
    missed = 0
    for n in prange(batch):
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
                missed += channels - np.int64(hits)
    return missed


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
