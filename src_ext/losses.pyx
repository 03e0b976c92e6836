# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused, numerically stable losses over logits, float32 in and out, accumulated in float64.

The rows run in a fixed number of blocks on the driver's threads (_driver.pxd); the blocks' sums are added in
block order, so a loss does not depend on the thread count.
"""
from libc.math cimport exp, fabs, log, log1p

from _driver cimport default_threads, fastconv_block_fn, run_blocks, share_driver
from _rows cimport check_matrices, row_max

share_driver()  # every module's kernels run on one driver (_driver.pxd)


cdef struct loss_job:
    # One call's (N, K) matrices, read by every block of rows.
    const float* logits
    const float* targets
    float* out_grad_logits
    Py_ssize_t rows, classes, blocks
    double* block_loss  # (blocks,): each block's sum, added in block order after


cdef enum:
    LOSS_BLOCKS = 16  # blocks of rows, fixed: the loss is the same sum whatever the threads


cdef double run_loss(fastconv_block_fn fn, const float[:, ::1] logits, const float[:, ::1] targets,
                     float[:, ::1] out_grad_logits) except? -1:
    """fn over the rows in LOSS_BLOCKS blocks; the sum of the blocks' losses, added in block order."""
    cdef loss_job job
    cdef double[LOSS_BLOCKS] block_loss
    cdef double total = 0.0
    cdef Py_ssize_t block
    cdef int threads = default_threads()
    job.logits, job.targets, job.out_grad_logits = &logits[0, 0], &targets[0, 0], &out_grad_logits[0, 0]
    job.rows, job.classes = logits.shape[0], logits.shape[1]
    job.blocks = max(1, min(job.rows, LOSS_BLOCKS))
    job.block_loss = block_loss
    with nogil:
        run_blocks(fn, &job, job.blocks, threads)
    for block in range(job.blocks):
        total += block_loss[block]
    return total


cdef void softmax_cross_entropy_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef loss_job* job = <loss_job*>job_ptr
    cdef Py_ssize_t n, k, batch = job.rows, classes = job.classes
    cdef double peak, log_total, total, target_mass, row_loss, log_prob, loss = 0.0
    cdef const float* logits
    cdef const float* targets
    cdef float* grad
    for n in range(block * batch // job.blocks, (block + 1) * batch // job.blocks):
        logits = job.logits + n * classes
        targets = job.targets + n * classes
        grad = job.out_grad_logits + n * classes
        peak = row_max(logits, classes)
        total = 0.0
        target_mass = 0.0
        for k in range(classes):
            total = total + exp(logits[k] - peak)
            target_mass = target_mass + targets[k]
        log_total = log(total)
        row_loss = 0.0
        for k in range(classes):
            log_prob = logits[k] - peak - log_total
            row_loss = row_loss - targets[k] * log_prob
            grad[k] = <float>((exp(log_prob) * target_mass - targets[k]) / batch)
        loss += row_loss
    job.block_loss[block] = loss


def softmax_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] out_grad_logits):
    """Mean categorical cross-entropy of softmax(logits); out_grad_logits = (softmax * sum(t) - t) / N.

    logits, targets, out_grad_logits: (N, K). Returns the loss as a float. The arithmetic is
    in float64: the gradient of a confident, correct prediction is 1 - p for p
    near 1, which float32 would round away.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], out_grad_logits.shape[0], out_grad_logits.shape[1], "softmax_cross_entropy")
    return run_loss(softmax_cross_entropy_block, logits, targets, out_grad_logits) / logits.shape[0]


cdef void sigmoid_binary_cross_entropy_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef loss_job* job = <loss_job*>job_ptr
    cdef Py_ssize_t i
    cdef double z, t, loss = 0.0
    cdef double count = job.rows * job.classes
    for i in range(block * job.rows // job.blocks * job.classes, (block + 1) * job.rows // job.blocks * job.classes):
        z = job.logits[i]
        t = job.targets[i]
        loss += (z if z > 0 else 0.0) - z * t + log1p(exp(-fabs(z)))
        job.out_grad_logits[i] = <float>((1.0 / (1.0 + exp(-z)) - t) / count)
    job.block_loss[block] = loss


def sigmoid_binary_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] out_grad_logits):
    """Mean binary cross-entropy of sigmoid(logits); out_grad_logits = (sigmoid(z) - t) / (N * K).

    logits, targets, out_grad_logits: (N, K). Per element: max(z, 0) - z t + log(1 + exp(-|z|)),
    in float64 for the same reason as above. Returns the loss as a float.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], out_grad_logits.shape[0], out_grad_logits.shape[1], "sigmoid_binary_cross_entropy")
    return run_loss(sigmoid_binary_cross_entropy_block, logits, targets, out_grad_logits) / (logits.shape[0] * logits.shape[1])
