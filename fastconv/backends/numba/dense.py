"""Dense: y = x @ kernel + bias and its gradients, with BLAS (``np.dot``), as src_ext/dense.pyx.

The work is cut over the input features into parts (``group_count``: a few per thread), which the ``threads``
threads take one at a time (``_driver``), each making a single-threaded BLAS call on its slice of the kernel
(rows ``first:last``, contiguous): the forward sums the parts' partial products in part order, so results are
repeatable; the gradients write disjoint slices. The slices of x and of grad_x that go with them are small (batch
rows), so they are copied to and from contiguous scratch.
"""

import numpy as np
from numba import cfunc, njit

from fastconv.backends.numba._common import SERIAL, add_bias_relu, add_up, column_sums, group_count
from fastconv.backends.numba._driver import (BLOCK_OPTIONS, BLOCK_SIGNATURE, BLOCKS, DRIVER, float32_2d, float32_3d, job_of,
                                             new_job, put, run)


# The parts run on the Cython driver (``_driver``), as conv.py's blocks: record layouts (fields of int64, an array as its
# address then its shape): forward x, kernel, the parts' partial products (3-D); backward grad_out, x, kernel,
# out_grad_x, out_grad_kernel.
_X, _KERNEL, _PARTIALS = 0, 3, 6
_GRAD_Y, _GRAD_X, _GRAD_KERNEL = 9, 12, 15


def dense_forward(x, kernel, bias, out_y, threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out)."""
    _dense_forward_launch(x, kernel, bias, out_y, threads, DRIVER, _DENSE_FORWARD_BLOCK)


@njit(**SERIAL)
def _dense_forward_launch(x, kernel, bias, out_y, threads, driver, block_fn):
    parts = group_count(x.shape[1], threads)
    partials = np.empty((parts, out_y.shape[0], out_y.shape[1]), dtype=np.float32)
    job = new_job(driver)
    put(job, _X, x)
    put(job, _KERNEL, kernel)
    put(job, _PARTIALS, partials)
    run(driver, block_fn, job, parts, threads)
    add_up(partials, out_y)
    add_bias_relu(out_y, bias, False)


@njit(**SERIAL)
def _dense_forward_block(job, part):
    x, kernel, partials = float32_2d(job, _X), float32_2d(job, _KERNEL), float32_3d(job, _PARTIALS)
    features, parts = x.shape[1], partials.shape[0]
    first, last = part * features // parts, (part + 1) * features // parts
    np.dot(np.ascontiguousarray(x[:, first:last]), kernel[first:last], partials[part])


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _dense_forward_cfunc(job_address, part):
    _dense_forward_block(job_of(job_address), part)


_DENSE_FORWARD_BLOCK = _dense_forward_cfunc.address


def dense_backward(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums ((0,) to skip).
    grad_out: (N, D_out); x, out_grad_x: (N, D_in); kernel, out_grad_kernel: (D_in, D_out); out_grad_bias: (D_out,)."""
    _dense_backward_launch(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads, DRIVER, _DENSE_BACKWARD_BLOCK)


@njit(**SERIAL)
def _dense_backward_launch(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads, driver, block_fn):
    job = new_job(driver)
    put(job, _X, x)
    put(job, _KERNEL, kernel)
    put(job, _GRAD_Y, grad_out)
    put(job, _GRAD_X, out_grad_x)
    put(job, _GRAD_KERNEL, out_grad_kernel)
    run(driver, block_fn, job, group_count(x.shape[1], threads), threads)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out, out_grad_bias)


@njit(**SERIAL)
def _dense_backward_block(job, part):
    x, kernel, grad_out = float32_2d(job, _X), float32_2d(job, _KERNEL), float32_2d(job, _GRAD_Y)
    out_grad_x, out_grad_kernel = float32_2d(job, _GRAD_X), float32_2d(job, _GRAD_KERNEL)
    features, parts = x.shape[1], job[BLOCKS]
    first, last = part * features // parts, (part + 1) * features // parts
    # the transposes are views (F-contiguous, which BLAS takes as they are)
    out_grad_x[:, first:last] = np.dot(grad_out, kernel[first:last].T)
    np.dot(np.ascontiguousarray(x[:, first:last]).T, grad_out, out_grad_kernel[first:last])


@cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
def _dense_backward_cfunc(job_address, part):
    _dense_backward_block(job_of(job_address), part)


_DENSE_BACKWARD_BLOCK = _dense_backward_cfunc.address
