# cython: language_level=3
"""What the compiler that built the kernels targeted, read from its own macros (for ``python -m fastconv info``)."""

cdef extern from *:
    """
    #if defined(__AVX512F__)
    #define FASTCONV_SIMD "avx512f"
    #elif defined(__AVX2__) && defined(__FMA__)
    #define FASTCONV_SIMD "avx2+fma"
    #elif defined(__AVX2__)
    #define FASTCONV_SIMD "avx2"
    #elif defined(__AVX__)
    #define FASTCONV_SIMD "avx"
    #elif defined(__SSE4_2__)
    #define FASTCONV_SIMD "sse4.2"
    #elif defined(__x86_64__)
    #define FASTCONV_SIMD "x86-64 baseline (sse2)"
    #elif defined(__aarch64__)
    #define FASTCONV_SIMD "aarch64 (neon)"
    #else
    #define FASTCONV_SIMD "unknown"
    #endif
    #ifdef _OPENMP
    #define FASTCONV_OPENMP 1
    #include <omp.h>
    static void fastconv_set_default_threads(int count) { omp_set_num_threads(count); }
    #else
    #define FASTCONV_OPENMP 0
    static void fastconv_set_default_threads(int count) { (void)count; }
    #endif
    """
    const char* FASTCONV_SIMD
    int FASTCONV_OPENMP
    void fastconv_set_default_threads(int count) nogil


def simd_level():
    """The widest SIMD instruction set the kernels were compiled for ('avx512f', 'avx2+fma', ...)."""
    return FASTCONV_SIMD.decode()


def openmp():
    """Whether the kernels were compiled with OpenMP (it holds each thread's default thread count, which pooling,
    activations and losses follow; without it they run on one thread)."""
    return bool(FASTCONV_OPENMP)


def set_default_threads(int count):
    """The threads of the OpenMP regions that name no count of their own (activations, losses, pooling, Winograd's
    kernel transform), started from the calling thread from now on (OpenMP keeps the setting per thread)."""
    if count < 1:
        raise ValueError(f"set_default_threads: count must be >= 1, got {count}")
    fastconv_set_default_threads(count)
