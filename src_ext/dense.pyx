# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Dense (fully connected) kernels, float32: every product goes through BLAS.

The output columns (forward), input features (grad x) and kernel rows (grad
kernel) are cut into parts taken by up to ``threads`` threads of the driver
(_driver.pxd), each part one single-threaded BLAS call on its slice, as the
convolution does (see _linalg.pxd).
"""
from libc.string cimport memcpy

from _driver cimport blocks_for, run_blocks, share_driver
from _linalg cimport NO_TRANSPOSE, TRANSPOSE, column_sums, gemm, strided_view, view

share_driver()  # every module's kernels run on one driver (_driver.pxd)


cdef struct dense_job:
    # One call's arguments, read by every part (parts run on the driver's threads, see _driver.pxd).
    Py_ssize_t batch, features, units, parts
    const float* x
    const float* kernel
    const float* bias
    const float* grad_out
    float* out_y
    float* out_grad_x
    float* out_grad_kernel


cdef enum:
    MIN_PART_COLUMNS = 32


cdef inline Py_ssize_t parts_for(Py_ssize_t columns, int threads) noexcept nogil:
    """Parts of at least MIN_PART_COLUMNS columns each (a narrower BLAS product runs below its speed)."""
    return blocks_for(max(1, columns // MIN_PART_COLUMNS), threads)


cdef void forward_part(void* job_ptr, Py_ssize_t part) noexcept nogil:
    """out_y[:, first:last] = x @ kernel[:, first:last] + bias[first:last], the part's run of output columns."""
    cdef dense_job* job = <dense_job*>job_ptr
    cdef Py_ssize_t first = part * job.units // job.parts, last = (part + 1) * job.units // job.parts, row
    if last == first:
        return
    for row in range(job.batch):
        memcpy(job.out_y + row * job.units + first, job.bias + first, (last - first) * sizeof(float))
    gemm(1.0, view(job.x, job.batch, job.features), NO_TRANSPOSE,
         strided_view(job.kernel + first, job.features, last - first, job.units), NO_TRANSPOSE,
         1.0, strided_view(job.out_y + first, job.batch, last - first, job.units))


def dense_forward(const float[:, ::1] x, const float[:, ::1] kernel, const float[::1] bias, float[:, ::1] out_y, int threads):
    """out_y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); out_y: (N, D_out), written."""
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1]
    if kernel.shape[0] != features or bias.shape[0] != units or out_y.shape[0] != batch or out_y.shape[1] != units or threads < 1:
        raise ValueError(f"dense_forward: x ({batch}, {features}), kernel ({kernel.shape[0]}, {units}), "
                         f"bias ({bias.shape[0]},), out_y ({out_y.shape[0]}, {out_y.shape[1]}) and threads {threads} do not agree")
    cdef dense_job job
    job.batch, job.features, job.units, job.parts = batch, features, units, parts_for(units, threads)
    job.x, job.kernel, job.bias, job.out_y = &x[0, 0], &kernel[0, 0], &bias[0], &out_y[0, 0]
    with nogil:
        run_blocks(forward_part, &job, job.parts, threads)


cdef void backward_part(void* job_ptr, Py_ssize_t part) noexcept nogil:
    """The part's run of input features [first, last): its columns of grad_x and its rows of grad_kernel."""
    cdef dense_job* job = <dense_job*>job_ptr
    cdef Py_ssize_t first = part * job.features // job.parts, last = (part + 1) * job.features // job.parts
    if last == first:
        return
    # out_grad_x[:, first:last] = grad_out @ kernel[first:last, :]^T
    gemm(1.0, view(job.grad_out, job.batch, job.units), NO_TRANSPOSE,
         view(job.kernel + first * job.units, last - first, job.units), TRANSPOSE,
         0.0, strided_view(job.out_grad_x + first, job.batch, last - first, job.features))
    # out_grad_kernel[first:last, :] = x[:, first:last]^T @ grad_out
    gemm(1.0, strided_view(job.x + first, job.batch, last - first, job.features), TRANSPOSE,
         view(job.grad_out, job.batch, job.units), NO_TRANSPOSE,
         0.0, view(job.out_grad_kernel + first * job.units, last - first, job.units))


def dense_backward(const float[:, ::1] grad_out, const float[:, ::1] x, const float[:, ::1] kernel,
                   float[:, ::1] out_grad_x, float[:, ::1] out_grad_kernel, float[::1] out_grad_bias, int threads):
    """out_grad_x = grad_out @ kernel^T; out_grad_kernel = x^T @ grad_out; out_grad_bias = column sums of grad_out.

    grad_out: (N, D_out); x, out_grad_x: (N, D_in); kernel, out_grad_kernel: (D_in, D_out);
    out_grad_bias: (D_out,) written, or (0,) to skip it.
    """
    cdef Py_ssize_t batch = x.shape[0], features = x.shape[1], units = kernel.shape[1]
    if (kernel.shape[0] != features or grad_out.shape[0] != batch or grad_out.shape[1] != units
            or out_grad_x.shape[0] != batch or out_grad_x.shape[1] != features
            or out_grad_kernel.shape[0] != features or out_grad_kernel.shape[1] != units
            or out_grad_bias.shape[0] not in (0, units) or threads < 1):
        raise ValueError(f"dense_backward: grad_out ({grad_out.shape[0]}, {grad_out.shape[1]}), x ({batch}, {features}), "
                         f"kernel ({kernel.shape[0]}, {units}) and threads {threads} do not agree with the outputs")
    cdef dense_job job
    job.batch, job.features, job.units, job.parts = batch, features, units, parts_for(features, threads)
    job.grad_out, job.x, job.kernel = &grad_out[0, 0], &x[0, 0], &kernel[0, 0]
    job.out_grad_x, job.out_grad_kernel = &out_grad_x[0, 0], &out_grad_kernel[0, 0]
    with nogil:
        run_blocks(backward_part, &job, job.parts, threads)
        if out_grad_bias.shape[0] > 0:
            column_sums(job.grad_out, batch, units, &out_grad_bias[0], threads)
