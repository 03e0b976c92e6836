"""Dense: y = x @ kernel + bias and its gradients, with BLAS (``np.dot``), as src_ext/dense.pyx.

The work is cut over the input features into parts (``group_count``: a few per thread), which the ``threads``
shares take one at a time (``next_block``), each making a single-threaded BLAS call on its slice of the kernel
(rows ``first:last``, contiguous): the forward sums the parts' partial products in part order, so results are
repeatable; the gradients write disjoint slices. The slices of x and of grad_x that go with them are small (batch
rows), so they are copied to and from contiguous scratch.
"""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL, add_bias_relu, add_up, block_counter, column_sums, group_count, next_block


@njit(**PARALLEL)
def dense_forward(x, kernel, bias, out_y, threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out)."""
    features = x.shape[1]
    parts = group_count(features, threads)
    partials = np.empty((parts, out_y.shape[0], out_y.shape[1]), dtype=np.float32)
    counter = block_counter()
    for share in prange(threads):
        part = next_block(counter)
        while part < parts:
            first, last = part * features // parts, (part + 1) * features // parts
            np.dot(np.ascontiguousarray(x[:, first:last]), kernel[first:last], partials[part])
            part = next_block(counter)
    add_up(partials, out_y)
    add_bias_relu(out_y, bias, False)


@njit(**PARALLEL)
def dense_backward(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums ((0,) to skip).
    grad_out: (N, D_out); x, out_grad_x: (N, D_in); kernel, out_grad_kernel: (D_in, D_out); out_grad_bias: (D_out,)."""
    features = x.shape[1]
    parts = group_count(features, threads)
    counter = block_counter()
    for share in prange(threads):
        part = next_block(counter)
        while part < parts:
            first, last = part * features // parts, (part + 1) * features // parts
            # the transposes are views (F-contiguous, which BLAS takes as they are)
            out_grad_x[:, first:last] = np.dot(grad_out, kernel[first:last].T)
            np.dot(np.ascontiguousarray(x[:, first:last]).T, grad_out, out_grad_kernel[first:last])
            part = next_block(counter)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out, out_grad_bias)
