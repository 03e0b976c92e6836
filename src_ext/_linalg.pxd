# Row-major matrix products on top of the Fortran (column-major) BLAS that
# SciPy ships, so that every kernel multiplies matrices through one call.
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm


# The kernels run their own threads, each making single-threaded BLAS calls, so
# that BLAS threads never fight them for the cores. OpenBLAS' thread count is
# process-wide: fastconv.backends.blas_threads sets it to 1 around every kernel
# call (reference-counted, so concurrent calls from several Python threads
# restore it exactly once), never inside the compiled code.


cdef inline void gemm_row_major(bint transpose_a, bint transpose_b, int m, int n, int k,
                                float alpha, const float* a, int lda, const float* b, int ldb,
                                float beta, float* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    A row-major matrix is the column-major matrix of its transpose, so the
    product is computed as C^T = op(B)^T @ op(A)^T: B goes first.
    """
    cdef char trans_b_flag = b'T' if transpose_b else b'N'
    cdef char trans_a_flag = b'T' if transpose_a else b'N'
    sgemm(&trans_b_flag, &trans_a_flag, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)


cdef inline int column_sums(const float* matrix, Py_ssize_t rows, Py_ssize_t cols, float* sums) except -1 nogil:
    """sums[j] = sum_i matrix[i, j] for a row-major (rows, cols) matrix, accumulated in float64.

    The rows are split into blocks summed in parallel, each into its own
    partial row, so the memory is read once, in order.
    """
    cdef Py_ssize_t blocks = 16 if rows >= 16 else 1
    cdef double* partial = <double*>calloc(blocks * cols, sizeof(double))
    cdef Py_ssize_t block, i, j
    cdef double total
    if partial == NULL:
        with gil:
            raise MemoryError()
    for block in prange(blocks, schedule='static'):
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            for j in range(cols):
                partial[block * cols + j] += matrix[i * cols + j]
    for j in range(cols):
        total = 0.0
        for block in range(blocks):
            total = total + partial[block * cols + j]
        sums[j] = <float>total
    free(partial)
    return 0


cdef inline void sum_partials(float** partials, int count, Py_ssize_t length, float* total) noexcept nogil:
    """total[0:length] = the sum of the non-NULL partials[0:count], added in that order (so results are repeatable);
    a NULL partial is a thread the team did not get, or one that ran out of memory (the caller knows which)."""
    cdef Py_ssize_t i
    cdef int t
    memset(total, 0, length * sizeof(float))
    for t in range(count):
        if partials[t] != NULL:
            for i in range(length):
                total[i] += partials[t][i]
