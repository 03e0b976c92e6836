# The Winograd transforms' matrices applied to lines of vectors, written out: one function per matrix of
# fastconv.backends.winograd_tiles (B^T, A^T and A, for F(2x2) and F(4x4)).
#
#     line(src, src_stride, dst, dst_stride, count):
#         dst[i * dst_stride + c] = sum_k M[i, k] * src[k * src_stride + c]     for c < count
#
# M's columns are the vectors read (a for B^T and A^T, m for A) and its rows the vectors written. The 2-D transform
# of a tile is two passes of lines: over its rows, then its columns. Each function reads its inputs once into
# registers and writes each output once, where a loop over M's coefficients (one vector operation per nonzero
# coefficient, each a load and a store of the target) spends 3-4 stores per output (perf on VGG16's block1_conv2:
# the transforms were a third of the layer's time). The sums run in M's column order, as a loop would add them.
#
# winograd.pyx checks at import that each function is the matrix winograd_tiles holds (line_matrix below), so that
# these coefficients and the kernel transform's, which it reads from winograd_tiles, cannot drift apart.

cdef extern from *:
    """
    #include <stddef.h>

    #define FASTCONV_LINE(name) \\
        static void name(const float* __restrict__ d, Py_ssize_t s, float* __restrict__ r, Py_ssize_t t, \\
                         Py_ssize_t count)

    /* F(2x2): B^T (4, 4), A^T (2, 4), A (4, 2) */
    FASTCONV_LINE(fastconv_input_line_2) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c], d2 = d[2 * s + c], d3 = d[3 * s + c];
            r[c] = d0 - d2;
            r[t + c] = d1 + d2;
            r[2 * t + c] = d2 - d1;
            r[3 * t + c] = d1 - d3;
        }
    }
    FASTCONV_LINE(fastconv_output_line_2) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c], d2 = d[2 * s + c], d3 = d[3 * s + c];
            r[c] = d0 + d1 + d2;
            r[t + c] = d1 - d2 - d3;
        }
    }
    FASTCONV_LINE(fastconv_gradient_line_2) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c];
            r[c] = d0;
            r[t + c] = d0 + d1;
            r[2 * t + c] = d0 - d1;
            r[3 * t + c] = -d1;
        }
    }

    /* F(4x4): B^T (6, 6), A^T (4, 6), A (6, 4), for the points 0, +-1, 1/2, -2 and infinity */
    FASTCONV_LINE(fastconv_input_line_4) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c], d2 = d[2 * s + c], d3 = d[3 * s + c], d4 = d[4 * s + c],
                        d5 = d[5 * s + c];
            r[c] = d0 - 1.5f * d1 - 2.0f * d2 + 1.5f * d3 + d4;
            r[t + c] = -d1 + 0.5f * d2 + 2.5f * d3 + d4;
            r[2 * t + c] = d1 - 2.5f * d2 + 0.5f * d3 + d4;
            r[3 * t + c] = -2.0f * d1 - d2 + 2.0f * d3 + d4;
            r[4 * t + c] = 0.5f * d1 - d2 - 0.5f * d3 + d4;
            r[5 * t + c] = d1 - 1.5f * d2 - 2.0f * d3 + 1.5f * d4 + d5;
        }
    }
    FASTCONV_LINE(fastconv_output_line_4) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c], d2 = d[2 * s + c], d3 = d[3 * s + c], d4 = d[4 * s + c],
                        d5 = d[5 * s + c];
            r[c] = d0 + d1 + d2 + d3 + d4;
            r[t + c] = d1 - d2 + 0.5f * d3 - 2.0f * d4;
            r[2 * t + c] = d1 + d2 + 0.25f * d3 + 4.0f * d4;
            r[3 * t + c] = d1 - d2 + 0.125f * d3 - 8.0f * d4 + d5;
        }
    }
    FASTCONV_LINE(fastconv_gradient_line_4) {
        #pragma GCC ivdep
        for (Py_ssize_t c = 0; c < count; c++) {
            const float d0 = d[c], d1 = d[s + c], d2 = d[2 * s + c], d3 = d[3 * s + c];
            r[c] = d0;
            r[t + c] = d0 + d1 + d2 + d3;
            r[2 * t + c] = d0 - d1 + d2 - d3;
            r[3 * t + c] = d0 + 0.5f * d1 + 0.25f * d2 + 0.125f * d3;
            r[4 * t + c] = d0 - 2.0f * d1 + 4.0f * d2 - 8.0f * d3;
            r[5 * t + c] = d3;
        }
    }
    """
    void fastconv_input_line_2(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fastconv_output_line_2(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fastconv_gradient_line_2(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fastconv_input_line_4(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fastconv_output_line_4(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fastconv_gradient_line_4(const float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t) noexcept nogil


ctypedef void (*line_transform)(const float* src, Py_ssize_t src_stride, float* dst, Py_ssize_t dst_stride,
                                Py_ssize_t count) noexcept nogil
