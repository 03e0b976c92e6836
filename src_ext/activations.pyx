# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Activations, float32: element-wise ReLU and sigmoid, row-wise softmax, forward and backward.

Every loop runs in blocks on the driver's threads (_driver.pxd), on the calling thread's default thread count.
A block reads the job's pointers into locals before its loop: Python's flags build with -fno-strict-aliasing, so a
store through job.out[i] could change job.out as far as the compiler knows, and it reloads the pointers every element
instead of vectorising.
"""
from libc.math cimport expf

from _driver cimport blocks_for, default_threads, fastconv_block_fn, run_blocks, share_driver
from _rows cimport check_matrices, row_max

share_driver()  # every module's kernels run on one driver (_driver.pxd)


cdef int check_same_length(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, str op) except -1:
    if a != b or a != c:
        raise ValueError(f"{op}: buffers of {a}, {b} and {c} elements must have the same length")
    return 0


cdef struct elementwise_job:
    # One call's arrays, read by every block (blocks run on the driver's threads, see _driver.pxd).
    const float* first_in   # x forward, grad_out backward
    const float* second_in  # y backward
    float* out
    Py_ssize_t size, blocks


cdef enum:
    MIN_BLOCK_ELEMENTS = 16384  # fewer per block and handing it out costs more than it saves


cdef inline Py_ssize_t first_of(const elementwise_job* job, Py_ssize_t block) noexcept nogil:
    return block * job.size // job.blocks


cdef void run_elementwise(fastconv_block_fn fn, const float* first_in, const float* second_in, float* out,
                          Py_ssize_t size) noexcept nogil:
    """fn over [0, size) in blocks of at least MIN_BLOCK_ELEMENTS, on the calling thread's default thread count."""
    cdef elementwise_job job
    cdef int threads = default_threads()
    job.first_in, job.second_in, job.out, job.size = first_in, second_in, out, size
    job.blocks = blocks_for(max(1, size // MIN_BLOCK_ELEMENTS), threads)
    run_blocks(fn, &job, job.blocks, threads)


cdef void relu_forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef elementwise_job* job = <elementwise_job*>job_ptr
    cdef const float* x = job.first_in
    cdef float* out = job.out
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        out[i] = 0.0 if x[i] <= 0 else x[i]


def relu_forward(const float[::1] x, float[::1] out_y):
    """out_y = max(x, 0), NaN kept as NaN (as the reference's np.maximum); x, out_y: (size,)."""
    check_same_length(x.shape[0], out_y.shape[0], out_y.shape[0], "relu_forward")
    with nogil:
        run_elementwise(relu_forward_block, &x[0], NULL, &out_y[0], x.shape[0])


cdef void relu_backward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef elementwise_job* job = <elementwise_job*>job_ptr
    cdef const float* grad_out = job.first_in
    cdef const float* y = job.second_in
    cdef float* out = job.out
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        out[i] = grad_out[i] if y[i] > 0 else 0.0


def relu_backward(const float[::1] grad_out, const float[::1] y, float[::1] out_grad_x):
    """out_grad_x = grad_out where y > 0, else 0; all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], out_grad_x.shape[0], "relu_backward")
    with nogil:
        run_elementwise(relu_backward_block, &grad_out[0], &y[0], &out_grad_x[0], y.shape[0])


cdef void sigmoid_forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef elementwise_job* job = <elementwise_job*>job_ptr
    cdef const float* x = job.first_in
    cdef float* out = job.out
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        out[i] = 1.0 / (1.0 + expf(-x[i]))


def sigmoid_forward(const float[::1] x, float[::1] out_y):
    """out_y = 1 / (1 + exp(-x)); x, out_y: (size,)."""
    check_same_length(x.shape[0], out_y.shape[0], out_y.shape[0], "sigmoid_forward")
    with nogil:
        run_elementwise(sigmoid_forward_block, &x[0], NULL, &out_y[0], x.shape[0])


cdef void sigmoid_backward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef elementwise_job* job = <elementwise_job*>job_ptr
    cdef const float* grad_out = job.first_in
    cdef const float* y = job.second_in
    cdef float* out = job.out
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        out[i] = grad_out[i] * y[i] * (1.0 - y[i])


def sigmoid_backward(const float[::1] grad_out, const float[::1] y, float[::1] out_grad_x):
    """out_grad_x = grad_out * y * (1 - y); all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], out_grad_x.shape[0], "sigmoid_backward")
    with nogil:
        run_elementwise(sigmoid_backward_block, &grad_out[0], &y[0], &out_grad_x[0], y.shape[0])


cdef struct rows_job:
    # One call's (N, K) matrices, read by every block of rows.
    const float* first_in   # x forward, grad_out backward
    const float* second_in  # y backward
    float* out
    Py_ssize_t rows, classes, blocks


cdef void run_rows(fastconv_block_fn fn, const float* first_in, const float* second_in, float* out, Py_ssize_t rows,
                   Py_ssize_t classes) noexcept nogil:
    """fn over the rows [0, rows) in blocks of at least MIN_BLOCK_ELEMENTS elements."""
    cdef rows_job job
    cdef int threads = default_threads()
    job.first_in, job.second_in, job.out, job.rows, job.classes = first_in, second_in, out, rows, classes
    job.blocks = blocks_for(min(rows, max(1, rows * classes // MIN_BLOCK_ELEMENTS)), threads)
    run_blocks(fn, &job, job.blocks, threads)


cdef void softmax_forward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef rows_job* job = <rows_job*>job_ptr
    cdef Py_ssize_t n, k, classes = job.classes
    cdef float peak
    cdef double total
    cdef const float* x
    cdef float* y
    for n in range(block * job.rows // job.blocks, (block + 1) * job.rows // job.blocks):
        x = job.first_in + n * classes
        y = job.out + n * classes
        peak = row_max(x, classes)
        total = 0.0
        for k in range(classes):
            y[k] = expf(x[k] - peak)
            total = total + y[k]
        for k in range(classes):
            y[k] = <float>(y[k] / total)


def softmax_forward(const float[:, ::1] x, float[:, ::1] out_y):
    """Row-wise softmax; x, out_y: (N, K)."""
    check_matrices(x.shape[0], x.shape[1], out_y.shape[0], out_y.shape[1], out_y.shape[0], out_y.shape[1], "softmax_forward")
    with nogil:
        run_rows(softmax_forward_block, &x[0, 0], NULL, &out_y[0, 0], x.shape[0], x.shape[1])


cdef void softmax_backward_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef rows_job* job = <rows_job*>job_ptr
    cdef Py_ssize_t n, k, classes = job.classes
    cdef double dot
    cdef const float* grad_out
    cdef const float* y
    cdef float* grad_x
    for n in range(block * job.rows // job.blocks, (block + 1) * job.rows // job.blocks):
        grad_out = job.first_in + n * classes
        y = job.second_in + n * classes
        grad_x = job.out + n * classes
        dot = 0.0
        for k in range(classes):
            dot = dot + <double>grad_out[k] * y[k]
        for k in range(classes):
            grad_x[k] = <float>(y[k] * (grad_out[k] - dot))


def softmax_backward(const float[:, ::1] grad_out, const float[:, ::1] y, float[:, ::1] out_grad_x):
    """out_grad_x = y * (grad_out - sum_k grad_out * y) row-wise; all (N, K)."""
    check_matrices(grad_out.shape[0], grad_out.shape[1], y.shape[0], y.shape[1], out_grad_x.shape[0], out_grad_x.shape[1], "softmax_backward")
    with nogil:
        run_rows(softmax_backward_block, &grad_out[0, 0], &y[0, 0], &out_grad_x[0, 0], y.shape[0], y.shape[1])
