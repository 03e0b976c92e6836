"""Max and average pooling on the GPU over clipped windows, one thread per output (or input) element.

x, out_grad_x: (N, H, W, C); out_y, grad_out, pooled_relu: (N, OH, OW, C); argmax: (N, OH, OW, C) int32 flat
index into x; plan: a ``fastconv.backends.plans.PoolPlan``, passed whole to each launch (its fields read by name).
"""

import math

import numpy as np
from numba import cuda, float32

from fastconv.backends.cuda._common import THREADS, blocks, fill, nhwc_index

@cuda.jit(device=True)
def _clip_window(oh, ow, plan, height, width):
    """(row_start, row_stop, col_start, col_stop) of the real input under output pixel (oh, ow)."""
    top, left = oh * plan.stride_h - plan.pad_top, ow * plan.stride_w - plan.pad_left
    return max(top, 0), min(top + plan.pool_h, height), max(left, 0), min(left + plan.pool_w, width)


@cuda.jit
def _max_pool_kernel(x, y, argmax, plan):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = y.shape
    if index >= y.size:
        return
    n, oh, ow, c = nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _clip_window(oh, ow, plan, x.shape[1], x.shape[2])
    best, best_index = -math.inf, 0
    if r0 < r1 and c0 < c1:
        best, best_index = x[n, r0, c0, c], r0 * x.shape[2] + c0
    # As NumPy's argmax (the reference): the first NaN wins, else the first largest value.
    for row in range(r0, r1):
        for col in range(c0, c1):
            value = x[n, row, col, c]
            if value > best or (math.isnan(value) and not math.isnan(best)):
                best, best_index = value, row * x.shape[2] + col
    y[n, oh, ow, c] = best
    argmax[n, oh, ow, c] = best_index


@cuda.jit
def _max_unpool_kernel(grad_out, argmax, pooled, masked, grad_x, errors):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = grad_out.shape
    if index >= grad_out.size:
        return
    n, oh, ow, c = nhwc_index(index, out_h, out_w, channels)
    winner = argmax[n, oh, ow, c]
    if winner < 0 or winner >= grad_x.shape[1] * grad_x.shape[2]:
        cuda.atomic.add(errors, 0, 1)
        return
    if masked and not pooled[n, oh, ow, c] > 0:  # the ReLU before the pool: no gradient where it gave 0 (or NaN)
        return
    cuda.atomic.add(grad_x, (n, winner // grad_x.shape[2], winner % grad_x.shape[2], c), grad_out[n, oh, ow, c])


@cuda.jit
def _avg_pool_kernel(x, y, plan):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = y.shape
    if index >= y.size:
        return
    n, oh, ow, c = nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _clip_window(oh, ow, plan, x.shape[1], x.shape[2])
    # Each pixel scaled before it is added: the mean of finite values stays finite.
    scale = float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
    total = float32(0.0)
    for row in range(r0, r1):
        for col in range(c0, c1):
            total += x[n, row, col, c] * scale
    y[n, oh, ow, c] = total


@cuda.jit
def _avg_unpool_kernel(grad_out, grad_x, plan):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = grad_out.shape
    if index >= grad_out.size:
        return
    n, oh, ow, c = nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _clip_window(oh, ow, plan, grad_x.shape[1], grad_x.shape[2])
    share = grad_out[n, oh, ow, c] / max((r1 - r0) * (c1 - c0), 1)
    for row in range(r0, r1):
        for col in range(c0, c1):
            cuda.atomic.add(grad_x, (n, row, col, c), share)


def max_pool2d_forward(x, out_y, out_argmax, plan):
    _max_pool_kernel[blocks(out_y.size), THREADS](x, out_y, out_argmax, plan)


def max_pool2d_backward(grad_out, argmax, pooled_relu, out_grad_x, plan):
    """Atomic adds at each argmax, so overlapping windows need nothing special: ``plan`` is not used."""
    fill(out_grad_x, 0.0)
    errors = cuda.to_device(np.zeros(1, dtype=np.int32))
    masked = pooled_relu is not None
    pooled = pooled_relu if masked else grad_out
    _max_unpool_kernel[blocks(grad_out.size), THREADS](grad_out, argmax, pooled, masked, out_grad_x, errors)
    bad = int(errors.copy_to_host()[0])
    if bad:
        height, width = out_grad_x.shape[1], out_grad_x.shape[2]
        raise ValueError(f"max_pool2d_backward: argmax holds {bad} indices outside the {height}x{width} input plane")


def avg_pool2d_forward(x, out_y, plan):
    _avg_pool_kernel[blocks(out_y.size), THREADS](x, out_y, plan)


def avg_pool2d_backward(grad_out, out_grad_x, plan):
    fill(out_grad_x, 0.0)
    _avg_unpool_kernel[blocks(grad_out.size), THREADS](grad_out, out_grad_x, plan)
