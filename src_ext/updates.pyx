# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The optimizers' updates, float32, in place on flat arrays: SGD (with or without momentum, Nesterov), RMSprop, Adam.

The arrays a step changes (the weight and its state) are read and written in place: the contract's ``out_``
arrays, after the gradient. Keras' formulas (fastconv.backends.host_ops writes them in NumPy), each in one pass over the weight, its gradient
and its state: NumPy needs five to seven passes and as many temporaries, which cost the cats-vs-dogs step ~10 ms
for its 3.45M weights. Every loop runs in blocks on the driver's threads (_driver.pxd), on the calling thread's
default thread count; a block reads the job's pointers into locals first (see activations.pyx for why).
"""
from libc.math cimport sqrtf

from _driver cimport blocks_for, default_threads, fastconv_block_fn, run_blocks, share_driver

share_driver()  # every module's kernels run on one driver (_driver.pxd)


cdef struct update_job:
    # One call's arrays and settings, read by every block.
    float* weight
    const float* grad
    float* first_slot   # SGD's velocity, RMSprop's mean square, Adam's first moment
    float* second_slot  # Adam's second moment
    float learning_rate, decay_1, decay_2, epsilon
    bint nesterov
    Py_ssize_t size, blocks


cdef enum:
    MIN_BLOCK_ELEMENTS = 16384  # fewer per block and handing it out costs more than it saves


cdef inline Py_ssize_t first_of(const update_job* job, Py_ssize_t block) noexcept nogil:
    return block * job.size // job.blocks


cdef void run_update(fastconv_block_fn fn, update_job* job) noexcept nogil:
    cdef int threads = default_threads()
    job.blocks = blocks_for(max(1, job.size // MIN_BLOCK_ELEMENTS), threads)
    run_blocks(fn, job, job.blocks, threads)


cdef int check_lengths(str op, Py_ssize_t size, Py_ssize_t grad, Py_ssize_t first, Py_ssize_t second) except -1:
    if grad != size or first != size or second != size:
        raise ValueError(f"{op}: the weight has {size} elements, the gradient {grad} and the state {first} and {second}")
    return 0


cdef void sgd_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef update_job* job = <update_job*>job_ptr
    cdef float* weight = job.weight
    cdef const float* grad = job.grad
    cdef float learning_rate = job.learning_rate
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        weight[i] -= learning_rate * grad[i]


cdef void sgd_momentum_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef update_job* job = <update_job*>job_ptr
    cdef float* weight = job.weight
    cdef const float* grad = job.grad
    cdef float* velocity = job.first_slot
    cdef float learning_rate = job.learning_rate, momentum = job.decay_1
    cdef bint nesterov = job.nesterov
    cdef Py_ssize_t i
    cdef float step
    for i in range(first_of(job, block), first_of(job, block + 1)):
        step = learning_rate * grad[i]
        velocity[i] = momentum * velocity[i] - step
        weight[i] += momentum * velocity[i] - step if nesterov else velocity[i]


def sgd_update(const float[::1] grad, float[::1] out_weight, float[::1] out_velocity, double learning_rate,
               double momentum, bint nesterov):
    """out_weight -= lr * grad; with momentum: out_velocity = momentum * out_velocity - lr * grad, out_weight +=
    out_velocity (Nesterov: out_weight += momentum * out_velocity - lr * grad). grad, out_weight: (size,);
    out_velocity: (size,), or (0,) without momentum."""
    cdef update_job job
    cdef Py_ssize_t size = out_weight.shape[0]
    check_lengths("sgd_update", size, grad.shape[0], out_velocity.shape[0] if momentum else size, size)
    if size == 0:
        return
    job.weight, job.grad, job.size = &out_weight[0], &grad[0], size
    job.learning_rate, job.decay_1, job.nesterov = learning_rate, momentum, nesterov
    with nogil:
        if momentum == 0:
            run_update(sgd_block, &job)
        else:
            job.first_slot = &out_velocity[0]
            run_update(sgd_momentum_block, &job)


cdef void rmsprop_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef update_job* job = <update_job*>job_ptr
    cdef float* weight = job.weight
    cdef const float* grad = job.grad
    cdef float* mean_square = job.first_slot
    cdef float learning_rate = job.learning_rate, rho = job.decay_1, one_minus_rho = job.decay_2, epsilon = job.epsilon
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        mean_square[i] = rho * mean_square[i] + one_minus_rho * grad[i] * grad[i]
        weight[i] -= learning_rate * grad[i] / sqrtf(mean_square[i] + epsilon)


def rmsprop_update(const float[::1] grad, float[::1] out_weight, float[::1] out_mean_square, double learning_rate,
                   double rho, double epsilon):
    """out_mean_square = rho * out_mean_square + (1 - rho) * grad**2; out_weight -= lr * grad /
    sqrt(out_mean_square + epsilon); all (size,)."""
    cdef update_job job
    cdef Py_ssize_t size = out_weight.shape[0]
    check_lengths("rmsprop_update", size, grad.shape[0], out_mean_square.shape[0], size)
    if size == 0:
        return
    job.weight, job.grad, job.first_slot, job.size = &out_weight[0], &grad[0], &out_mean_square[0], size
    job.learning_rate, job.decay_1, job.decay_2, job.epsilon = learning_rate, rho, 1 - rho, epsilon
    with nogil:
        run_update(rmsprop_block, &job)


cdef void adam_block(void* job_ptr, Py_ssize_t block) noexcept nogil:
    cdef update_job* job = <update_job*>job_ptr
    cdef float* weight = job.weight
    cdef const float* grad = job.grad
    cdef float* first = job.first_slot
    cdef float* second = job.second_slot
    cdef float step_size = job.learning_rate, one_minus_beta_1 = job.decay_1, one_minus_beta_2 = job.decay_2
    cdef float epsilon = job.epsilon
    cdef Py_ssize_t i
    for i in range(first_of(job, block), first_of(job, block + 1)):
        first[i] += one_minus_beta_1 * (grad[i] - first[i])
        second[i] += one_minus_beta_2 * (grad[i] * grad[i] - second[i])
        weight[i] -= step_size * first[i] / (sqrtf(second[i]) + epsilon)


def adam_update(const float[::1] grad, float[::1] out_weight, float[::1] out_first, float[::1] out_second,
                double step_size, double beta_1, double beta_2, double epsilon):
    """out_first += (1 - beta_1)(grad - out_first); out_second += (1 - beta_2)(grad**2 - out_second);
    out_weight -= step_size * out_first / (sqrt(out_second) + epsilon), step_size = lr sqrt(1 - beta_2**t) /
    (1 - beta_1**t); all (size,)."""
    cdef update_job job
    cdef Py_ssize_t size = out_weight.shape[0]
    check_lengths("adam_update", size, grad.shape[0], out_first.shape[0], out_second.shape[0])
    if size == 0:
        return
    job.weight, job.grad, job.first_slot, job.second_slot = &out_weight[0], &grad[0], &out_first[0], &out_second[0]
    job.size, job.learning_rate, job.decay_1, job.decay_2 = size, step_size, 1 - beta_1, 1 - beta_2
    job.epsilon = epsilon
    with nogil:
        run_update(adam_block, &job)
