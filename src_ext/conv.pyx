# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""2-D convolution kernels, NHWC float32: im2col over a chunk of the batch, then one BLAS product.

The chunk (a few samples) keeps the patch matrix inside the L3 cache. Patch
rows are laid out (KH, KW, C), so the Keras kernel (KH, KW, C, F) is the
(KH*KW*C, F) matrix of the product without any copy. A 1x1 kernel with stride
1 and no padding needs no patch matrix at all: the input already is one.

These functions trust their caller (``fastconv.backends.compiled``) for the
geometry but check every extent they index with before releasing the GIL;
windows are clipped to the input, so no geometry reads out of range.
"""
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from _linalg cimport gemm_row_major, column_sums


cdef inline void gather_patch(const float* x_sample, float* patch, Py_ssize_t top, Py_ssize_t left,
                              Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels,
                              Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """Copy the (kernel_h, kernel_w, channels) window at (top, left) into patch; zeros where it leaves the input."""
    cdef Py_ssize_t r, s, row, col
    cdef Py_ssize_t span = kernel_w * channels
    for r in range(kernel_h):
        row = top + r
        if row < 0 or row >= height:
            memset(patch, 0, span * sizeof(float))
        elif left >= 0 and left + kernel_w <= width:
            memcpy(patch, x_sample + (row * width + left) * channels, span * sizeof(float))
        else:
            for s in range(kernel_w):
                col = left + s
                if col < 0 or col >= width:
                    memset(patch + s * channels, 0, channels * sizeof(float))
                else:
                    memcpy(patch + s * channels, x_sample + (row * width + col) * channels, channels * sizeof(float))
        patch += span


cdef inline void scatter_patch(float* grad_sample, const float* patch, Py_ssize_t top, Py_ssize_t left,
                               Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels,
                               Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """Add a patch-shaped gradient back onto the input pixels it came from (the adjoint of gather_patch)."""
    cdef Py_ssize_t r, s, c, row, col
    cdef float* target
    cdef const float* source
    for r in range(kernel_h):
        row = top + r
        if row < 0 or row >= height:
            continue
        for s in range(kernel_w):
            col = left + s
            if col < 0 or col >= width:
                continue
            target = grad_sample + (row * width + col) * channels
            source = patch + (r * kernel_w + s) * channels
            for c in range(channels):
                target[c] += source[c]


cdef void im2col(const float* x, float* cols, Py_ssize_t first, Py_ssize_t samples,
                 Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """cols (samples*OH*OW, KH*KW*C): one row per output pixel of samples [first, first + samples)."""
    cdef Py_ssize_t patch_len = kernel_h * kernel_w * channels
    cdef Py_ssize_t row, n, oh, ow
    for row in prange(samples * out_h * out_w, schedule='static'):
        n = first + row // (out_h * out_w)
        oh = (row // out_w) % out_h
        ow = row % out_w
        gather_patch(x + n * height * width * channels, cols + row * patch_len,
                     oh * stride_h - pad_top, ow * stride_w - pad_left, height, width, channels, kernel_h, kernel_w)


cdef void col2im(const float* cols, float* grad_x, Py_ssize_t first, Py_ssize_t samples,
                 Py_ssize_t height, Py_ssize_t width, Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    """grad_x[first:first+samples] = the sum of every patch row scattered back (samples in parallel, no races)."""
    cdef Py_ssize_t patch_len = kernel_h * kernel_w * channels
    cdef Py_ssize_t sample_len = height * width * channels
    cdef Py_ssize_t i, row, oh, ow
    cdef float* grad_sample
    for i in prange(samples, schedule='static'):
        grad_sample = grad_x + (first + i) * sample_len
        memset(grad_sample, 0, sample_len * sizeof(float))
        for oh in range(out_h):
            for ow in range(out_w):
                row = (i * out_h + oh) * out_w + ow
                scatter_patch(grad_sample, cols + row * patch_len, oh * stride_h - pad_top, ow * stride_w - pad_left,
                              height, width, channels, kernel_h, kernel_w)


cdef int check_extents(Py_ssize_t batch, Py_ssize_t channels, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t filters,
                       Py_ssize_t matrix_rows, Py_ssize_t matrix_cols, Py_ssize_t grad_batch, Py_ssize_t grad_h,
                       Py_ssize_t grad_w, Py_ssize_t grad_filters, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t chunk) except -1:
    if stride_h < 1 or stride_w < 1 or kernel_h < 1 or kernel_w < 1 or chunk < 1:
        raise ValueError(f"conv2d: strides ({stride_h}, {stride_w}), kernel ({kernel_h}, {kernel_w}) and chunk {chunk} must be positive")
    if matrix_rows != kernel_h * kernel_w * channels or matrix_cols != filters:
        raise ValueError(f"conv2d: kernel matrix ({matrix_rows}, {matrix_cols}) does not match kernel ({kernel_h}, {kernel_w}, {channels}, {filters})")
    if (grad_batch, grad_h, grad_w, grad_filters) != (batch, out_h, out_w, filters):
        raise ValueError(f"conv2d: output ({grad_batch}, {grad_h}, {grad_w}, {grad_filters}) does not match ({batch}, {out_h}, {out_w}, {filters})")
    if chunk * out_h * out_w * matrix_rows >= 2**31 or batch * out_h * out_w >= 2**31:
        raise ValueError("conv2d: a chunk of the batch is too large for 32-bit BLAS indices")
    return 0


cdef inline bint is_pointwise(Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                              Py_ssize_t kernel_h, Py_ssize_t kernel_w) noexcept nogil:
    return kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1 and pad_top == 0 and pad_left == 0


cdef float* alloc_cols(Py_ssize_t chunk, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t patch_len) except NULL:
    cdef float* cols = <float*>malloc(chunk * out_h * out_w * patch_len * sizeof(float))
    if cols == NULL:
        raise MemoryError(f"conv2d: cannot allocate a ({chunk * out_h * out_w}, {patch_len}) patch matrix")
    return cols


def conv2d_forward(const float[:, :, :, ::1] x, const float[:, ::1] kernel_matrix, const float[::1] bias,
                   float[:, :, :, ::1] y, Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                   Py_ssize_t pad_left, Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t chunk):
    """y = conv(x, kernel) + bias.

    x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); bias: (F,); y: (N, OH, OW, F), written.
    """
    cdef Py_ssize_t batch = x.shape[0], height = x.shape[1], width = x.shape[2], channels = x.shape[3]
    cdef Py_ssize_t out_h = y.shape[1], out_w = y.shape[2], filters = y.shape[3]
    cdef Py_ssize_t patch_len = kernel_matrix.shape[0]
    check_extents(batch, channels, out_h, out_w, filters, kernel_matrix.shape[0], kernel_matrix.shape[1],
                  y.shape[0], out_h, out_w, filters, stride_h, stride_w, kernel_h, kernel_w, chunk)
    if bias.shape[0] != filters:
        raise ValueError(f"conv2d_forward: bias ({bias.shape[0]},) does not match {filters} filters")
    cdef bint pointwise = is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    cdef float* cols = NULL if pointwise else alloc_cols(chunk, out_h, out_w, patch_len)
    cdef const float* lhs
    cdef float* y_rows
    cdef Py_ssize_t first, samples, rows, row
    with nogil:
        first = 0
        while first < batch:
            samples = min(chunk, batch - first)
            rows = samples * out_h * out_w
            if pointwise:
                lhs = &x[first, 0, 0, 0]
            else:
                im2col(&x[0, 0, 0, 0], cols, first, samples, height, width, channels, out_h, out_w,
                       stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
                lhs = cols
            y_rows = &y[first, 0, 0, 0]
            for row in prange(rows, schedule='static'):
                memcpy(y_rows + row * filters, &bias[0], filters * sizeof(float))
            gemm_row_major(False, False, <int>rows, <int>filters, <int>patch_len, 1.0, lhs, <int>patch_len,
                           &kernel_matrix[0, 0], <int>filters, 1.0, y_rows, <int>filters)
            first += chunk
    free(cols)


def conv2d_backward_input(const float[:, :, :, ::1] grad_out, const float[:, ::1] kernel_matrix,
                          float[:, :, :, ::1] grad_x, Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                          Py_ssize_t pad_left, Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t chunk):
    """grad_x = the gradient of conv with respect to its input.

    grad_out: (N, OH, OW, F); kernel_matrix: (KH*KW*C, F); grad_x: (N, H, W, C), written.
    """
    cdef Py_ssize_t batch = grad_x.shape[0], height = grad_x.shape[1], width = grad_x.shape[2]
    cdef Py_ssize_t channels = grad_x.shape[3]
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2], filters = grad_out.shape[3]
    cdef Py_ssize_t patch_len = kernel_matrix.shape[0]
    check_extents(batch, channels, out_h, out_w, filters, kernel_matrix.shape[0], kernel_matrix.shape[1],
                  grad_out.shape[0], out_h, out_w, filters, stride_h, stride_w, kernel_h, kernel_w, chunk)
    cdef bint pointwise = is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    if pointwise and (out_h, out_w) != (height, width):
        raise ValueError("conv2d_backward_input: a 1x1 stride-1 convolution keeps the spatial size")
    cdef float* cols = NULL if pointwise else alloc_cols(chunk, out_h, out_w, patch_len)
    cdef Py_ssize_t first, samples, rows
    with nogil:
        first = 0
        while first < batch:
            samples = min(chunk, batch - first)
            rows = samples * out_h * out_w
            gemm_row_major(False, True, <int>rows, <int>patch_len, <int>filters, 1.0, &grad_out[first, 0, 0, 0],
                           <int>filters, &kernel_matrix[0, 0], <int>filters, 0.0,
                           &grad_x[first, 0, 0, 0] if pointwise else cols, <int>patch_len)
            if not pointwise:
                col2im(cols, &grad_x[0, 0, 0, 0], first, samples, height, width, channels, out_h, out_w,
                       stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
            first += chunk
    free(cols)


def conv2d_backward_kernel(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                           float[:, ::1] grad_kernel_matrix, float[::1] grad_bias, Py_ssize_t stride_h,
                           Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t kernel_h,
                           Py_ssize_t kernel_w, Py_ssize_t chunk):
    """grad_kernel_matrix = patches^T @ grad_out; grad_bias = grad_out summed over N, OH, OW.

    x: (N, H, W, C); grad_out: (N, OH, OW, F); grad_kernel_matrix: (KH*KW*C, F), written;
    grad_bias: (F,) written, or (0,) to skip it.
    """
    cdef Py_ssize_t batch = x.shape[0], height = x.shape[1], width = x.shape[2], channels = x.shape[3]
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2], filters = grad_out.shape[3]
    cdef Py_ssize_t patch_len = grad_kernel_matrix.shape[0]
    check_extents(batch, channels, out_h, out_w, filters, grad_kernel_matrix.shape[0], grad_kernel_matrix.shape[1],
                  grad_out.shape[0], out_h, out_w, filters, stride_h, stride_w, kernel_h, kernel_w, chunk)
    if grad_bias.shape[0] not in (0, filters):
        raise ValueError(f"conv2d_backward_kernel: grad_bias ({grad_bias.shape[0]},) does not match {filters} filters")
    cdef bint pointwise = is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    cdef float* cols = NULL if pointwise else alloc_cols(chunk, out_h, out_w, patch_len)
    cdef const float* patches
    cdef Py_ssize_t first, samples, rows
    with nogil:
        first = 0
        while first < batch:
            samples = min(chunk, batch - first)
            rows = samples * out_h * out_w
            if pointwise:
                patches = &x[first, 0, 0, 0]
            else:
                im2col(&x[0, 0, 0, 0], cols, first, samples, height, width, channels, out_h, out_w,
                       stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
                patches = cols
            gemm_row_major(True, False, <int>patch_len, <int>filters, <int>rows, 1.0, patches, <int>patch_len,
                           &grad_out[first, 0, 0, 0], <int>filters, 0.0 if first == 0 else 1.0,
                           &grad_kernel_matrix[0, 0], <int>filters)
            first += chunk
        if grad_bias.shape[0] > 0:
            column_sums(&grad_out[0, 0, 0, 0], batch * out_h * out_w, filters, &grad_bias[0])
    free(cols)
