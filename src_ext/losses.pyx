# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused, numerically stable losses over logits, float32 in and out, accumulated in float64."""
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, log1p

from _rows cimport check_matrices, row_max


def softmax_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] out_grad_logits):
    """Mean categorical cross-entropy of softmax(logits); out_grad_logits = (softmax * sum(t) - t) / N.

    logits, targets, out_grad_logits: (N, K). Returns the loss as a float. The arithmetic is
    in float64: the gradient of a confident, correct prediction is 1 - p for p
    near 1, which float32 would round away.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], out_grad_logits.shape[0], out_grad_logits.shape[1], "softmax_cross_entropy")
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
            out_grad_logits[n, k] = <float>((exp(log_prob) * target_mass - targets[n, k]) / batch)
        loss += row_loss
    return loss / batch


def sigmoid_binary_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[:, ::1] out_grad_logits):
    """Mean binary cross-entropy of sigmoid(logits); out_grad_logits = (sigmoid(z) - t) / (N * K).

    logits, targets, out_grad_logits: (N, K). Per element: max(z, 0) - z t + log(1 + exp(-|z|)),
    in float64 for the same reason as above. Returns the loss as a float.
    """
    check_matrices(logits.shape[0], logits.shape[1], targets.shape[0], targets.shape[1], out_grad_logits.shape[0], out_grad_logits.shape[1], "sigmoid_binary_cross_entropy")
    cdef Py_ssize_t n, k, batch = logits.shape[0], classes = logits.shape[1]
    cdef double z, t, loss = 0.0
    cdef double count = batch * classes
    for n in prange(batch, nogil=True, schedule='static'):
        for k in range(classes):
            z = logits[n, k]
            t = targets[n, k]
            loss += (z if z > 0 else 0.0) - z * t + log1p(exp(-fabs(z)))
            out_grad_logits[n, k] = <float>((1.0 / (1.0 + exp(-z)) - t) / count)
    return loss / count
