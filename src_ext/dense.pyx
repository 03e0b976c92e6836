# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Dense (fully connected) kernels, float32: every product goes through BLAS.

The output columns (forward), input features (grad x) and kernel rows (grad
kernel) are split among ``threads`` threads, each making one single-threaded
BLAS call on its slice, as the convolution does (see _linalg.pxd).
"""
from cython.parallel cimport prange
from libc.string cimport memcpy

from _linalg cimport column_sums, gemm_row_major


def dense_forward(const float[:, ::1] x, const float[:, ::1] kernel, const float[::1] bias, float[:, ::1] out_y, int threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out), written."""
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1], row, part, first, last
    if kernel.shape[0] != features or bias.shape[0] != units or out_y.shape[0] != batch or out_y.shape[1] != units or threads < 1:
        raise ValueError(f"dense_forward: x ({batch}, {features}), kernel ({kernel.shape[0]}, {units}), "
                         f"bias ({bias.shape[0]},), out_y ({out_y.shape[0]}, {out_y.shape[1]}) and threads {threads} do not agree")
    with nogil:
        for part in prange(threads, num_threads=threads, schedule='static'):
            first = part * units // threads
            last = (part + 1) * units // threads
            if last > first:
                for row in range(batch):
                    memcpy(&out_y[row, first], &bias[first], (last - first) * sizeof(float))
                gemm_row_major(False, False, <int>batch, <int>(last - first), <int>features, 1.0, &x[0, 0], <int>features,
                               &kernel[0, first], <int>units, 1.0, &out_y[0, first], <int>units)


def dense_backward(const float[:, ::1] grad_out, const float[:, ::1] x, const float[:, ::1] kernel,
                   float[:, ::1] out_grad_x, float[:, ::1] out_grad_kernel, float[::1] out_grad_bias, int threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums of grad_out.

    grad_out: (N, D_out); x, out_grad_x: (N, D_in); kernel, out_grad_kernel: (D_in, D_out);
    out_grad_bias: (D_out,) written, or (0,) to skip it.
    """
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1], part, first, last
    if (kernel.shape[0] != features or grad_out.shape[0] != batch or grad_out.shape[1] != units
            or out_grad_x.shape[0] != batch or out_grad_x.shape[1] != features
            or out_grad_kernel.shape[0] != features or out_grad_kernel.shape[1] != units
            or out_grad_bias.shape[0] not in (0, units) or threads < 1):
        raise ValueError(f"dense_backward: grad_out ({grad_out.shape[0]}, {grad_out.shape[1]}), x ({batch}, {features}), "
                         f"kernel ({kernel.shape[0]}, {units}) and threads {threads} do not agree with the outputs")
    with nogil:
        for part in prange(threads, num_threads=threads, schedule='static'):
            first = part * features // threads
            last = (part + 1) * features // threads
            if last > first:
                # out_grad_x[:, first:last] = grad_out @ kernel[first:last, :]^T
                gemm_row_major(False, True, <int>batch, <int>(last - first), <int>units, 1.0, &grad_out[0, 0], <int>units,
                               &kernel[first, 0], <int>units, 0.0, &out_grad_x[0, first], <int>features)
                # out_grad_kernel[first:last, :] = x[:, first:last]^T @ grad_out
                gemm_row_major(True, False, <int>(last - first), <int>units, <int>batch, 1.0, &x[0, first], <int>features,
                               &grad_out[0, 0], <int>units, 0.0, &out_grad_kernel[first, 0], <int>units)
        if out_grad_bias.shape[0] > 0:
            column_sums(&grad_out[0, 0], batch, units, &out_grad_bias[0])
