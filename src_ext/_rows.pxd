# What the activation and loss kernels share: one shape check and the row maximum of a softmax.

cdef inline int check_matrices(Py_ssize_t rows_a, Py_ssize_t cols_a, Py_ssize_t rows_b, Py_ssize_t cols_b,
                               Py_ssize_t rows_c, Py_ssize_t cols_c, str op) except -1:
    if rows_a != rows_b or rows_a != rows_c or cols_a != cols_b or cols_a != cols_c or cols_a < 1:
        raise ValueError(f"{op}: ({rows_a}, {cols_a}), ({rows_b}, {cols_b}) and ({rows_c}, {cols_c}) must be one non-empty shape")
    return 0


cdef inline float row_max(const float* row, Py_ssize_t length) noexcept nogil:
    """The largest of row[0:length] by ``>``; with a NaN in the row the softmax is NaN whatever this returns."""
    cdef float best = row[0]
    cdef Py_ssize_t k
    for k in range(1, length):
        if row[k] > best:
            best = row[k]
    return best
