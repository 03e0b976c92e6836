"""Convolution on the GPU: im2col into a device matrix, then :func:`~fastconv.backends.cuda.gemm.gemm`; the input
gradient by GEMM then a gathering col2im. The plan's block sizes and ``threads`` are CPU blocking and not read
here: the GPU takes the whole batch at once.

x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); out_y, grad_out: (N, OH, OW, F); device float32, outputs (``out_*``)
preallocated; plan: a ``fastconv.backends.plans.ConvPlan``.
"""

import numpy as np
from numba import cuda, float32

from fastconv.backends.cuda._common import THREADS, blocks, column_sums, nhwc_index
from fastconv.backends.cuda.activations import relu_forward
from fastconv.backends.cuda.gemm import gemm

@cuda.jit
def _im2col_kernel(x, cols, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_w):
    """cols[row, (r*KW + s)*C + c] = x at the kernel offset (r, s) of output pixel ``row``, 0 outside."""
    i = cuda.grid(1)
    rows, patch_len = cols.shape
    if i >= rows * patch_len:
        return
    row, k = i // patch_len, i % patch_len
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    c, s, r = k % channels, (k // channels) % kernel_w, k // (channels * kernel_w)
    n, oh, ow = row // (out_h * out_w), (row // out_w) % out_h, row % out_w
    in_row, in_col = oh * stride_h - pad_top + r, ow * stride_w - pad_left + s
    inside = 0 <= in_row < height and 0 <= in_col < width
    cols[row, k] = x[n, in_row, in_col, c] if inside else 0.0


@cuda.jit
def _col2im_kernel(grad_cols, grad_x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    """grad_x[n, i, j, c] = the sum of the patch gradients that gathered it (one thread per input value, no atomics)."""
    index = cuda.grid(1)
    batch, height, width, channels = grad_x.shape
    if index >= batch * height * width * channels:
        return
    n, i, j, c = nhwc_index(index, height, width, channels)
    total = float32(0.0)
    for r in range(kernel_h):
        top = i + pad_top - r
        if top < 0 or top % stride_h != 0 or top // stride_h >= out_h:
            continue
        for s in range(kernel_w):
            left = j + pad_left - s
            if left < 0 or left % stride_w != 0 or left // stride_w >= out_w:
                continue
            row = (n * out_h + top // stride_h) * out_w + left // stride_w
            total += grad_cols[row, (r * kernel_w + s) * channels + c]
    grad_x[n, i, j, c] = total


def _patches(x, out_h, out_w, plan):
    rows = x.shape[0] * out_h * out_w
    cols = cuda.device_array((rows, plan.kernel_h * plan.kernel_w * x.shape[3]), dtype=np.float32)
    _im2col_kernel[blocks(cols.size), THREADS](
        x, cols, out_h, out_w, plan.stride_h, plan.stride_w, plan.pad_top, plan.pad_left, plan.kernel_w
    )
    return cols


def conv2d_forward(x, kernel_matrix, bias, out_y, plan):
    """out_y = conv(x, kernel) + bias, then max(., 0) if ``plan.relu``. x: (N, H, W, C); kernel_matrix: (KH*KW*C, F);
    out_y: (N, OH, OW, F)."""
    batch, out_h, out_w, filters = out_y.shape
    cols = _patches(x, out_h, out_w, plan)
    gemm(cols, kernel_matrix, out_y.reshape(batch * out_h * out_w, filters), bias=bias)
    if plan.relu:  # a second launch, in place (not yet fused into the GEMM's epilogue on the GPU)
        flat = out_y.reshape(out_y.size)
        relu_forward(flat, flat)


def conv2d_backward_input(grad_out, kernel_matrix, out_grad_x, plan):
    """out_grad_x = d conv / d x: grad_cols = grad_out @ kernel_matrix^T, then gathered back."""
    batch, out_h, out_w, filters = grad_out.shape
    grad_cols = cuda.device_array((batch * out_h * out_w, kernel_matrix.shape[0]), dtype=np.float32)
    gemm(grad_out.reshape(batch * out_h * out_w, filters), kernel_matrix, grad_cols, transpose_b=True)
    _col2im_kernel[blocks(out_grad_x.size), THREADS](
        grad_cols, out_grad_x, out_h, out_w, plan.stride_h, plan.stride_w, plan.pad_top, plan.pad_left, plan.kernel_h, plan.kernel_w
    )


def conv2d_backward_kernel(x, grad_out, out_grad_kernel_matrix, out_grad_bias, plan):
    """out_grad_kernel_matrix = patches^T @ grad_out; out_grad_bias = column sums of grad_out ((0,) to skip)."""
    batch, out_h, out_w, filters = grad_out.shape
    cols = _patches(x, out_h, out_w, plan)
    grad_rows = grad_out.reshape(batch * out_h * out_w, filters)
    gemm(cols, grad_rows, out_grad_kernel_matrix, transpose_a=True)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_rows, out_grad_bias)
