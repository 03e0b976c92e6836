# Row-major matrix products on top of the Fortran (column-major) BLAS that
# SciPy ships, so that every kernel multiplies matrices through one call, gemm(), which takes matrix views and
# named transpose flags and works out the sizes and leading dimensions itself; and the two parallel reductions
# the kernels share (column sums, partials added in a fixed order).
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm

from _driver cimport run_blocks


# The kernels run their own threads, each making single-threaded BLAS calls, so
# that BLAS threads never fight them for the cores. OpenBLAS' thread count is
# process-wide: fastconv.backends.blas_threads sets it to 1 around every kernel
# call (reference-counted, so concurrent calls from several Python threads
# restore it exactly once), never inside the compiled code.


cdef enum Transpose:
    NO_TRANSPOSE = 0
    TRANSPOSE = 1


cdef struct matrix_view:
    # A row-major float32 matrix of `rows` x `cols`, its rows `stride` floats apart (a block of a larger one).
    const float* data
    int rows, cols, stride


cdef inline matrix_view view(const float* data, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The dense (rows, cols) matrix at data."""
    return matrix_view(data, <int>rows, <int>cols, <int>cols)


cdef inline matrix_view strided_view(const float* data, Py_ssize_t rows, Py_ssize_t cols,
                                     Py_ssize_t stride) noexcept nogil:
    """The (rows, cols) matrix at data whose rows lie ``stride`` floats apart (columns of a wider matrix)."""
    return matrix_view(data, <int>rows, <int>cols, <int>stride)


cdef inline void gemm(float alpha, matrix_view a, Transpose a_transposed, matrix_view b, Transpose b_transposed,
                      float beta, matrix_view out_c) noexcept nogil:
    """out_c = alpha * op(a) @ op(b) + beta * out_c, all row-major, op(m) = m^T where TRANSPOSE; the sizes m, n, k
    come from the views (out_c (m, n); op(a) (m, k); op(b) (k, n)), which the kernels shape from checked extents.

    A row-major matrix is the column-major matrix of its transpose, so the Fortran BLAS computes
    out_c^T = op(b)^T @ op(a)^T: b goes first.
    """
    cdef int m = out_c.rows, n = out_c.cols
    cdef int k = a.rows if a_transposed == TRANSPOSE else a.cols
    cdef char a_flag = b'T' if a_transposed == TRANSPOSE else b'N'
    cdef char b_flag = b'T' if b_transposed == TRANSPOSE else b'N'
    cdef int lda = a.stride, ldb = b.stride, ldc = out_c.stride
    sgemm(&b_flag, &a_flag, &n, &m, &k, &alpha, <float*>b.data, &ldb, <float*>a.data, &lda, &beta,
          <float*>out_c.data, &ldc)


cdef struct column_sums_job:
    const float* matrix
    Py_ssize_t rows, cols, parts
    double* partial  # (parts, cols): part p's sums of its rows


cdef extern from *:
    """
    #include <string.h>

    typedef double fastconv_v4d __attribute__((vector_size(32)));
    typedef float fastconv_v4f __attribute__((vector_size(16)));

    /* partial[j] += matrix[i, j] for rows [first, last) of a row-major (rows, cols) matrix, in float64, row by row.
       Runs of 32 columns keep their 32 sums in registers over all the rows (a loop over j with the sums in memory
       ran at a value per cycle: 0.5 ms of MNIST's 11 ms step); the order of the additions is the plain loop's. */
    static void fastconv_add_rows(const float* matrix, Py_ssize_t first, Py_ssize_t last, Py_ssize_t cols,
                                  double* partial) {
        Py_ssize_t i, j = 0;
        int k;
        for (; j + 32 <= cols; j += 32) {
            fastconv_v4d sums[8];
            memcpy(sums, partial + j, sizeof sums);
            for (i = first; i < last; i++) {
                const float* row = matrix + i * cols + j;
                for (k = 0; k < 8; k++) {
                    fastconv_v4f values;
                    memcpy(&values, row + 4 * k, sizeof values);
                    sums[k] += __builtin_convertvector(values, fastconv_v4d);
                }
            }
            memcpy(partial + j, sums, sizeof sums);
        }
        for (; j + 4 <= cols; j += 4) {
            fastconv_v4d sums;
            memcpy(&sums, partial + j, sizeof sums);
            for (i = first; i < last; i++) {
                fastconv_v4f values;
                memcpy(&values, matrix + i * cols + j, sizeof values);
                sums += __builtin_convertvector(values, fastconv_v4d);
            }
            memcpy(partial + j, &sums, sizeof sums);
        }
        for (; j < cols; j++)
            for (i = first; i < last; i++) partial[j] += matrix[i * cols + j];
    }
    """
    void fastconv_add_rows(const float* matrix, Py_ssize_t first, Py_ssize_t last, Py_ssize_t cols,
                           double* partial) noexcept nogil


cdef inline void column_sums_part(void* job_ptr, Py_ssize_t part) noexcept nogil:
    cdef column_sums_job* job = <column_sums_job*>job_ptr
    fastconv_add_rows(job.matrix, part * job.rows // job.parts, (part + 1) * job.rows // job.parts, job.cols,
                      job.partial + part * job.cols)


cdef inline int column_sums(const float* matrix, Py_ssize_t rows, Py_ssize_t cols, float* sums, int threads) except -1 nogil:
    """sums[j] = sum_i matrix[i, j] for a row-major (rows, cols) matrix, accumulated in float64.

    The rows are cut into a fixed number of parts, summed in parallel each into its own partial row (so the memory
    is read once, in order) and added in part order, so results do not depend on ``threads``.
    """
    cdef column_sums_job job
    job.matrix = matrix
    job.rows = rows
    job.cols = cols
    job.parts = 16 if rows >= 16 else 1
    job.partial = <double*>calloc(job.parts * cols, sizeof(double))
    cdef Py_ssize_t part, j
    cdef double total
    if job.partial == NULL:
        with gil:
            raise MemoryError()
    run_blocks(column_sums_part, &job, job.parts, threads)
    for j in range(cols):
        total = 0.0
        for part in range(job.parts):
            total = total + job.partial[part * cols + j]
        sums[j] = <float>total
    free(job.partial)
    return 0


cdef struct sum_groups_job:
    const float* partials  # (groups, length), group-major
    float* total           # (length,)
    Py_ssize_t groups, length, chunk


cdef inline void sum_groups_chunk(void* job_ptr, Py_ssize_t chunk) noexcept nogil:
    cdef sum_groups_job* job = <sum_groups_job*>job_ptr
    cdef Py_ssize_t first = chunk * job.chunk, last = min(first + job.chunk, job.length), i, group
    cdef const float* partial
    memcpy(job.total + first, job.partials + first, (last - first) * sizeof(float))
    for group in range(1, job.groups):
        partial = job.partials + group * job.length
        for i in range(first, last):
            job.total[i] += partial[i]


cdef inline void sum_groups(const float* partials, Py_ssize_t groups, Py_ssize_t length, float* total,
                            int threads) noexcept nogil:
    """total[0:length] = the sum of the ``groups`` rows of partials (groups, length), added in row order whatever
    the threads (so results are repeatable), in chunks of the columns shared among ``threads``."""
    cdef sum_groups_job job
    job.partials = partials
    job.total = total
    job.groups = groups
    job.length = length
    job.chunk = max(4096, (length + 4 * threads - 1) // (4 * threads))
    run_blocks(sum_groups_chunk, &job, (length + job.chunk - 1) // job.chunk, threads)
