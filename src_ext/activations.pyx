# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Activations and fused, numerically stable losses, float32 (losses accumulated in float64)."""
from cython.parallel cimport prange
from libc.math cimport exp, expf, fabs, log, log1p


cdef int check_same_length(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, str op) except -1:
    if a != b or a != c:
        raise ValueError(f"{op}: buffers of {a}, {b} and {c} elements must have the same length")
    return 0


cdef int check_matrices(Py_ssize_t rows_a, Py_ssize_t cols_a, Py_ssize_t rows_b, Py_ssize_t cols_b,
                        Py_ssize_t rows_c, Py_ssize_t cols_c, str op) except -1:
    if rows_a != rows_b or rows_a != rows_c or cols_a != cols_b or cols_a != cols_c or cols_a < 1:
        raise ValueError(f"{op}: ({rows_a}, {cols_a}), ({rows_b}, {cols_b}) and ({rows_c}, {cols_c}) must be one non-empty shape")
    return 0


def relu_forward(const float[::1] x, float[::1] y):
    """y = max(x, 0), NaN kept as NaN (as the reference's np.maximum); x, y: (size,)."""
    check_same_length(x.shape[0], y.shape[0], y.shape[0], "relu_forward")
    cdef Py_ssize_t i
    for i in prange(x.shape[0], nogil=True, schedule='static'):
        y[i] = 0.0 if x[i] <= 0 else x[i]


def relu_backward(const float[::1] grad_out, const float[::1] y, float[::1] grad_x):
    """grad_x = grad_out where y > 0, else 0; all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], grad_x.shape[0], "relu_backward")
    cdef Py_ssize_t i
    for i in prange(y.shape[0], nogil=True, schedule='static'):
        grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


def sigmoid_forward(const float[::1] x, float[::1] y):
    """y = 1 / (1 + exp(-x)); x, y: (size,)."""
    check_same_length(x.shape[0], y.shape[0], y.shape[0], "sigmoid_forward")
    cdef Py_ssize_t i
    for i in prange(x.shape[0], nogil=True, schedule='static'):
        y[i] = 1.0 / (1.0 + expf(-x[i]))


def sigmoid_backward(const float[::1] grad_out, const float[::1] y, float[::1] grad_x):
    """grad_x = grad_out * y * (1 - y); all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], grad_x.shape[0], "sigmoid_backward")
    cdef Py_ssize_t i
    for i in prange(y.shape[0], nogil=True, schedule='static'):
        grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


cdef inline float row_max(const float* row, Py_ssize_t length) noexcept nogil:
    cdef float best = row[0]
    cdef Py_ssize_t k
    for k in range(1, length):
        if row[k] > best:
            best = row[k]
    return best


def softmax_forward(const float[:, ::1] x, float[:, ::1] y):
    """Row-wise softmax; x, y: (N, K)."""
    check_matrices(x.shape[0], x.shape[1], y.shape[0], y.shape[1], y.shape[0], y.shape[1], "softmax_forward")
    cdef Py_ssize_t n, k, classes = x.shape[1]
    cdef float peak
    cdef double total
    for n in prange(x.shape[0], nogil=True, schedule='static'):
        peak = row_max(&x[n, 0], classes)
        total = 0.0
        for k in range(classes):
            y[n, k] = expf(x[n, k] - peak)
            total = total + y[n, k]
        for k in range(classes):
            y[n, k] = <float>(y[n, k] / total)


def softmax_backward(const float[:, ::1] grad_out, const float[:, ::1] y, float[:, ::1] grad_x):
    """grad_x = y * (grad_out - sum_k grad_out * y) row-wise; all (N, K)."""
    check_matrices(grad_out.shape[0], grad_out.shape[1], y.shape[0], y.shape[1], grad_x.shape[0], grad_x.shape[1], "softmax_backward")
    cdef Py_ssize_t n, k, classes = y.shape[1]
    cdef double dot
    for n in prange(y.shape[0], nogil=True, schedule='static'):
        dot = 0.0
        for k in range(classes):
            dot = dot + <double>grad_out[n, k] * y[n, k]
        for k in range(classes):
            grad_x[n, k] = <float>(y[n, k] * (grad_out[n, k] - dot))


def softmax_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] grad):
    """Mean categorical cross-entropy of softmax(logits); grad = (softmax * sum(t) - t) / N.

    logits, targets, grad: (N, K). Returns the loss as a float. The arithmetic is
    in float64: the gradient of a confident, correct prediction is 1 - p for p
    near 1, which float32 would round away.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], grad.shape[0], grad.shape[1], "softmax_cross_entropy")
    cdef Py_ssize_t n, k, batch = logits.shape[0], classes = logits.shape[1]
    cdef double peak, log_total, total, target_mass, row_loss, log_prob, loss = 0.0
    for n in prange(batch, nogil=True, schedule='static'):
        peak = row_max(&logits[n, 0], classes)
        total = 0.0
        target_mass = 0.0
        for k in range(classes):
            total = total + exp(logits[n, k] - peak)
            target_mass = target_mass + targets[n, k]
        log_total = log(total)
        row_loss = 0.0
        for k in range(classes):
            log_prob = logits[n, k] - peak - log_total
            row_loss = row_loss - targets[n, k] * log_prob
            grad[n, k] = <float>((exp(log_prob) * target_mass - targets[n, k]) / batch)
        loss += row_loss
    return loss / batch


def sigmoid_binary_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] grad):
    """Mean binary cross-entropy of sigmoid(logits); grad = (sigmoid(z) - t) / (N * K).

    logits, targets, grad: (N, K). Per element: max(z, 0) - z t + log(1 + exp(-|z|)),
    in float64 for the same reason as above. Returns the loss as a float.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], grad.shape[0], grad.shape[1], "sigmoid_binary_cross_entropy")
    cdef Py_ssize_t n, k, batch = logits.shape[0], classes = logits.shape[1]
    cdef double z, t, loss = 0.0
    cdef double count = batch * classes
    for n in prange(batch, nogil=True, schedule='static'):
        for k in range(classes):
            z = logits[n, k]
            t = targets[n, k]
            loss += (z if z > 0 else 0.0) - z * t + log1p(exp(-fabs(z)))
            grad[n, k] = <float>((1.0 / (1.0 + exp(-z)) - t) / count)
    return loss / count
