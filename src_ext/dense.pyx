# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Dense (fully connected) kernels, float32: every product goes through BLAS."""
from cython.parallel cimport prange
from libc.string cimport memcpy

from _linalg cimport gemm_row_major, column_sums


def dense_forward(const float[:, ::1] x, const float[:, ::1] kernel, const float[::1] bias, float[:, ::1] y):
    """y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); y: (N, D_out), written."""
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1], row
    if kernel.shape[0] != features or bias.shape[0] != units or y.shape[0] != batch or y.shape[1] != units:
        raise ValueError(f"dense_forward: x ({batch}, {features}), kernel ({kernel.shape[0]}, {units}), "
                         f"bias ({bias.shape[0]},) and y ({y.shape[0]}, {y.shape[1]}) do not agree")
    with nogil:
        for row in prange(batch, schedule='static'):
            memcpy(&y[row, 0], &bias[0], units * sizeof(float))
        gemm_row_major(False, False, <int>batch, <int>units, <int>features, 1.0, &x[0, 0], <int>features,
                       &kernel[0, 0], <int>units, 1.0, &y[0, 0], <int>units)


def dense_backward(const float[:, ::1] grad_out, const float[:, ::1] x, const float[:, ::1] kernel,
                   float[:, ::1] grad_x, float[:, ::1] grad_kernel, float[::1] grad_bias):
    """grad_x = grad_out @ kernel^T; grad_kernel = x^T @ grad_out; grad_bias = column sums of grad_out.

    grad_out: (N, D_out); x, grad_x: (N, D_in); kernel, grad_kernel: (D_in, D_out);
    grad_bias: (D_out,) written, or (0,) to skip it.
    """
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1]
    if (kernel.shape[0] != features or grad_out.shape[0] != batch or grad_out.shape[1] != units
            or grad_x.shape[0] != batch or grad_x.shape[1] != features
            or grad_kernel.shape[0] != features or grad_kernel.shape[1] != units
            or grad_bias.shape[0] not in (0, units)):
        raise ValueError(f"dense_backward: grad_out ({grad_out.shape[0]}, {grad_out.shape[1]}), x ({batch}, {features}) "
                         f"and kernel ({kernel.shape[0]}, {units}) do not agree with the outputs")
    with nogil:
        gemm_row_major(False, True, <int>batch, <int>features, <int>units, 1.0, &grad_out[0, 0], <int>units,
                       &kernel[0, 0], <int>units, 0.0, &grad_x[0, 0], <int>features)
        gemm_row_major(True, False, <int>features, <int>units, <int>batch, 1.0, &x[0, 0], <int>features,
                       &grad_out[0, 0], <int>units, 0.0, &grad_kernel[0, 0], <int>units)
        if grad_bias.shape[0] > 0:
            column_sums(&grad_out[0, 0], batch, units, &grad_bias[0])
