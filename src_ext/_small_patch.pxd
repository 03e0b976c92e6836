# Products of a block of short patch rows (a first layer: KH*KW*C = 9 for MNIST's conv1, 27 for cats vs dogs'),
# without BLAS.
#
# With a patch of K <= 32 values, BLAS spends more on packing the (rows, K) patch matrix than on the product
# (perf on cats vs dogs' conv1: sgemm_itcopy and the kernel's own copies took as long as sgemm_kernel). These
# loops keep 4 rows x 16 filters of sums in registers (GCC's vector extensions: AVX2's 16 registers hold them and
# the operands; a narrower SIMD level splits each vector), reading each patch value once per 16 filters.
#
# Both need filters % 8 == 0 (small_patch_fits); the caller falls back to BLAS otherwise.

cdef extern from *:
    """
    #include <string.h>

    typedef float fastconv_v8 __attribute__((vector_size(32)));
    typedef int fastconv_v8i __attribute__((vector_size(32)));

    static inline fastconv_v8 fastconv_load8(const float* from) { fastconv_v8 v; memcpy(&v, from, sizeof v); return v; }
    static inline void fastconv_store8(float* to, fastconv_v8 v) { memcpy(to, &v, sizeof v); }
    static inline fastconv_v8 fastconv_relu8(fastconv_v8 v, int relu) {
        if (!relu) return v;
        fastconv_v8 zero = {0};
        fastconv_v8i not_positive = v <= zero;  /* all ones where v <= 0; NaN compares false: kept, as relu_forward */
        return (fastconv_v8)((fastconv_v8i)v & ~not_positive);
    }

    #define FASTCONV_SMALL_PATCH_MAX 32

    static int small_patch_fits(Py_ssize_t patch_len, Py_ssize_t filters) {
        return patch_len <= FASTCONV_SMALL_PATCH_MAX && filters % 8 == 0;
    }

    /* y (rows, F) = patches (rows, K) @ w (K, F) + bias (F,), then max(., 0), NaN kept, if relu. */
    static void small_patch_forward(const float* patches, Py_ssize_t rows, Py_ssize_t k_len, const float* w,
                                    Py_ssize_t filters, const float* bias, int relu, float* y) {
        Py_ssize_t p = 0, f, k, i;
        for (; p + 4 <= rows; p += 4) {
            const float* row0 = patches + p * k_len;
            for (f = 0; f + 16 <= filters; f += 16) {
                fastconv_v8 lo[4], hi[4];
                for (i = 0; i < 4; i++) { lo[i] = fastconv_load8(bias + f); hi[i] = fastconv_load8(bias + f + 8); }
                for (k = 0; k < k_len; k++) {
                    fastconv_v8 w_lo = fastconv_load8(w + k * filters + f), w_hi = fastconv_load8(w + k * filters + f + 8);
                    for (i = 0; i < 4; i++) {
                        float value = row0[i * k_len + k];
                        lo[i] += value * w_lo;
                        hi[i] += value * w_hi;
                    }
                }
                for (i = 0; i < 4; i++) {
                    fastconv_store8(y + (p + i) * filters + f, fastconv_relu8(lo[i], relu));
                    fastconv_store8(y + (p + i) * filters + f + 8, fastconv_relu8(hi[i], relu));
                }
            }
            for (; f < filters; f += 8) {
                fastconv_v8 sum[4];
                for (i = 0; i < 4; i++) sum[i] = fastconv_load8(bias + f);
                for (k = 0; k < k_len; k++) {
                    fastconv_v8 w8 = fastconv_load8(w + k * filters + f);
                    for (i = 0; i < 4; i++) sum[i] += row0[i * k_len + k] * w8;
                }
                for (i = 0; i < 4; i++) fastconv_store8(y + (p + i) * filters + f, fastconv_relu8(sum[i], relu));
            }
        }
        for (; p < rows; p++) {
            for (f = 0; f < filters; f += 8) {
                fastconv_v8 sum = fastconv_load8(bias + f);
                for (k = 0; k < k_len; k++) sum += patches[p * k_len + k] * fastconv_load8(w + k * filters + f);
                fastconv_store8(y + p * filters + f, fastconv_relu8(sum, relu));
            }
        }
    }

    /* grad_w (K, F) += patches (rows, K)^T @ grad_out (rows, F); rows taken 64 at a time, so that they stay in the L1
       cache while every 4 x 16 (or 4 x 8) tile of grad_w sums over them in registers. */
    #define FASTCONV_GRADIENT_ROWS 64
    static void small_patch_kernel_gradient(const float* patches, Py_ssize_t rows, Py_ssize_t k_len,
                                            const float* grad_out, Py_ssize_t filters, float* grad_w) {
        for (Py_ssize_t first = 0; first < rows; first += FASTCONV_GRADIENT_ROWS) {
            Py_ssize_t count = rows - first < FASTCONV_GRADIENT_ROWS ? rows - first : FASTCONV_GRADIENT_ROWS;
            const float* block = patches + first * k_len;
            const float* grad = grad_out + first * filters;
            Py_ssize_t k = 0, f, p, i;
            for (; k + 4 <= k_len; k += 4) {
                for (f = 0; f + 16 <= filters; f += 16) {
                    fastconv_v8 lo[4], hi[4];
                    for (i = 0; i < 4; i++) {
                        lo[i] = fastconv_load8(grad_w + (k + i) * filters + f);
                        hi[i] = fastconv_load8(grad_w + (k + i) * filters + f + 8);
                    }
                    for (p = 0; p < count; p++) {
                        fastconv_v8 g_lo = fastconv_load8(grad + p * filters + f), g_hi = fastconv_load8(grad + p * filters + f + 8);
                        for (i = 0; i < 4; i++) {
                            float value = block[p * k_len + k + i];
                            lo[i] += value * g_lo;
                            hi[i] += value * g_hi;
                        }
                    }
                    for (i = 0; i < 4; i++) {
                        fastconv_store8(grad_w + (k + i) * filters + f, lo[i]);
                        fastconv_store8(grad_w + (k + i) * filters + f + 8, hi[i]);
                    }
                }
                for (; f < filters; f += 8) {
                    fastconv_v8 sum[4];
                    for (i = 0; i < 4; i++) sum[i] = fastconv_load8(grad_w + (k + i) * filters + f);
                    for (p = 0; p < count; p++) {
                        fastconv_v8 g = fastconv_load8(grad + p * filters + f);
                        for (i = 0; i < 4; i++) sum[i] += block[p * k_len + k + i] * g;
                    }
                    for (i = 0; i < 4; i++) fastconv_store8(grad_w + (k + i) * filters + f, sum[i]);
                }
            }
            for (; k < k_len; k++) {
                for (f = 0; f < filters; f += 8) {
                    fastconv_v8 sum = fastconv_load8(grad_w + k * filters + f);
                    for (p = 0; p < count; p++) sum += block[p * k_len + k] * fastconv_load8(grad + p * filters + f);
                    fastconv_store8(grad_w + k * filters + f, sum);
                }
            }
        }
    }
    """
    bint small_patch_fits(Py_ssize_t patch_len, Py_ssize_t filters) noexcept nogil
    void small_patch_forward(const float* patches, Py_ssize_t rows, Py_ssize_t k_len, const float* w,
                             Py_ssize_t filters, const float* bias, int relu, float* y) noexcept nogil
    void small_patch_kernel_gradient(const float* patches, Py_ssize_t rows, Py_ssize_t k_len, const float* grad_out,
                                     Py_ssize_t filters, float* grad_w) noexcept nogil
