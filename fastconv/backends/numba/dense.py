"""Dense: y = x @ kernel + bias and its gradients, with BLAS (``np.dot``), as src_ext/dense.pyx."""

import numpy as np
from numba import njit

from fastconv.backends.numba._common import SERIAL, column_sums

@njit(**SERIAL)
def dense_forward(x, kernel, bias, out_y, threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out).

    BLAS runs single-threaded here too (the caller sees to it): its threads would
    otherwise spin against the Numba threads of the layers around it.
    """
    np.dot(x, kernel, out_y)
    out_y += bias


@njit(**SERIAL)
def dense_backward(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums ((0,) to skip)."""
    np.dot(grad_out, np.ascontiguousarray(kernel.T), out_grad_x)
    np.dot(np.ascontiguousarray(x.T), grad_out, out_grad_kernel)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out, out_grad_bias)
