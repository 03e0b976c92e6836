# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Activations, float32: element-wise ReLU and sigmoid, row-wise softmax, forward and backward."""
from cython.parallel cimport prange
from libc.math cimport expf

from _rows cimport check_matrices, row_max


cdef int check_same_length(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, str op) except -1:
    if a != b or a != c:
        raise ValueError(f"{op}: buffers of {a}, {b} and {c} elements must have the same length")
    return 0


def relu_forward(const float[::1] x, float[::1] out_y):
    """out_y = max(x, 0), NaN kept as NaN (as the reference's np.maximum); x, out_y: (size,)."""
    check_same_length(x.shape[0], out_y.shape[0], out_y.shape[0], "relu_forward")
    cdef Py_ssize_t i
    for i in prange(x.shape[0], nogil=True, schedule='static'):
        out_y[i] = 0.0 if x[i] <= 0 else x[i]


def relu_backward(const float[::1] grad_out, const float[::1] y, float[::1] out_grad_x):
    """out_grad_x = grad_out where y > 0, else 0; all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], out_grad_x.shape[0], "relu_backward")
    cdef Py_ssize_t i
    for i in prange(y.shape[0], nogil=True, schedule='static'):
        out_grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


def sigmoid_forward(const float[::1] x, float[::1] out_y):
    """out_y = 1 / (1 + exp(-x)); x, out_y: (size,)."""
    check_same_length(x.shape[0], out_y.shape[0], out_y.shape[0], "sigmoid_forward")
    cdef Py_ssize_t i
    for i in prange(x.shape[0], nogil=True, schedule='static'):
        out_y[i] = 1.0 / (1.0 + expf(-x[i]))


def sigmoid_backward(const float[::1] grad_out, const float[::1] y, float[::1] out_grad_x):
    """out_grad_x = grad_out * y * (1 - y); all (size,)."""
    check_same_length(grad_out.shape[0], y.shape[0], out_grad_x.shape[0], "sigmoid_backward")
    cdef Py_ssize_t i
    for i in prange(y.shape[0], nogil=True, schedule='static'):
        out_grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


def softmax_forward(const float[:, ::1] x, float[:, ::1] out_y):
    """Row-wise softmax; x, out_y: (N, K)."""
    check_matrices(x.shape[0], x.shape[1], out_y.shape[0], out_y.shape[1], out_y.shape[0], out_y.shape[1], "softmax_forward")
    cdef Py_ssize_t n, k, classes = x.shape[1]
    cdef float peak
    cdef double total
    for n in prange(x.shape[0], nogil=True, schedule='static'):
        peak = row_max(&x[n, 0], classes)
        total = 0.0
        for k in range(classes):
            out_y[n, k] = expf(x[n, k] - peak)
            total = total + out_y[n, k]
        for k in range(classes):
            out_y[n, k] = <float>(out_y[n, k] / total)


def softmax_backward(const float[:, ::1] grad_out, const float[:, ::1] y, float[:, ::1] out_grad_x):
    """out_grad_x = y * (grad_out - sum_k grad_out * y) row-wise; all (N, K)."""
    check_matrices(grad_out.shape[0], grad_out.shape[1], y.shape[0], y.shape[1], out_grad_x.shape[0], out_grad_x.shape[1], "softmax_backward")
    cdef Py_ssize_t n, k, classes = y.shape[1]
    cdef double dot
    for n in prange(y.shape[0], nogil=True, schedule='static'):
        dot = 0.0
        for k in range(classes):
            dot = dot + <double>grad_out[n, k] * y[n, k]
        for k in range(classes):
            out_grad_x[n, k] = <float>(y[n, k] * (grad_out[n, k] - dot))
