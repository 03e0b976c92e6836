"""Dense: y = x @ kernel + bias and its gradients, with BLAS (``np.dot``), as src_ext/dense.pyx.

The work is split over the input features among ``threads`` threads, each making single-threaded BLAS calls on
its slice of the kernel (rows ``first:last``, contiguous): the forward sums the slices' partial products in a
fixed order, so results are repeatable; the gradients write disjoint slices. The slices of x and of grad_x that go
with them are small (batch rows), so they are copied to and from contiguous scratch.
"""

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._common import PARALLEL, column_sums


@njit(**PARALLEL)
def dense_forward(x, kernel, bias, out_y, threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out)."""
    features = x.shape[1]
    partials = np.empty((threads, out_y.shape[0], out_y.shape[1]), dtype=np.float32)
    for part in prange(threads):
        first, last = part * features // threads, (part + 1) * features // threads
        np.dot(np.ascontiguousarray(x[:, first:last]), kernel[first:last], partials[part])
    out_y[:] = bias
    for part in range(threads):
        out_y += partials[part]


@njit(**PARALLEL)
def dense_backward(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums ((0,) to skip)."""
    features = x.shape[1]
    for part in prange(threads):
        first, last = part * features // threads, (part + 1) * features // threads
        # the transposes are views (F-contiguous, which BLAS takes as they are)
        out_grad_x[:, first:last] = np.dot(grad_out, kernel[first:last].T)
        np.dot(np.ascontiguousarray(x[:, first:last]).T, grad_out, out_grad_kernel[first:last])
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out, out_grad_bias)
