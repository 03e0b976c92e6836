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
    for item in prange(batch * out_h):
        n = item // out_h
        oh = item % out_h
        for ow in range(out_w):
            r0, r1, c0, c1 = _clip_window(oh, ow, plan, height, width)
            if r0 >= r1 or c0 >= c1:  # no real pixel (impossible for Keras geometries)
                out_y[n, oh, ow, :] = -np.inf
                out_argmax[n, oh, ow, :] = 0
                continue
            for c in range(channels):
                out_y[n, oh, ow, c] = x[n, r0, c0, c]
                out_argmax[n, oh, ow, c] = r0 * width + c0
            for row in range(r0, r1):
                for col in range(c0, c1):
                    for c in range(channels):
                        value, best = x[n, row, col, c], out_y[n, oh, ow, c]
                        if value > best or (np.isnan(value) and not np.isnan(best)):
                            out_y[n, oh, ow, c] = value
                            out_argmax[n, oh, ow, c] = row * width + col


@njit(**PARALLEL)
def max_pool2d_backward(grad_out, argmax, out_grad_x):
    """out_grad_x[n, argmax, c] += grad_out. grad_out, argmax: (N, OH, OW, C); out_grad_x: (N, H, W, C)."""
    batch, height, width, channels = out_grad_x.shape
    outputs = grad_out.shape[1] * grad_out.shape[2]
    # flat (pixels, channels) planes: argmax is already a pixel index, and a division per element cost a third
    grad_planes = out_grad_x.reshape(batch, height * width, channels)
    grad_rows = grad_out.reshape(batch, outputs, channels)
    index_rows = argmax.reshape(batch, outputs, channels)
    for n in prange(batch):
        grad_planes[n] = 0.0
        for pixel in range(outputs):
            for c in range(channels):
                grad_planes[n, index_rows[n, pixel, c], c] += grad_rows[n, pixel, c]


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
