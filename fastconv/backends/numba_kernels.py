"""Numba ``@njit`` kernels with the low-level contract of ``fastconv.backends.compiled``.

They mirror src_ext/ function for function: the same im2col-in-chunks
convolution with one BLAS product per chunk (``np.dot``, which Numba routes
to SciPy's BLAS), the same clipped pooling windows, the same fused losses.
Outputs are preallocated by the caller; every array is float32 (argmax int32)
and C-contiguous. Compiled on first use and cached on disk (``cache=True``).
"""

import numpy as np
from numba import njit, prange

_SERIAL = dict(cache=True, nogil=True)
_PARALLEL = dict(cache=True, nogil=True, parallel=True)


# --- convolution -----------------------------------------------------------


# As in the Cython kernels, each thread gathers a block of patches and
# multiplies it with a BLAS call that fastconv.backends.blas_threads keeps
# single-threaded for the whole kernel call, in its own core's cache.


@njit(**_SERIAL)
def _im2col_rows(x, cols, first_row, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    """cols (rows, KH*KW*C): the patches of output pixels [first_row, first_row + rows) of the flattened (N, OH, OW).

    A kernel row that lies wholly inside the input is one contiguous run of
    KW*C values in NHWC, copied without a test per element.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x_rows = x.reshape(x.shape[0], height, width * channels)
    span = kernel_w * channels
    for i in range(cols.shape[0]):
        pixel = first_row + i
        n = pixel // (out_h * out_w)
        top = ((pixel // out_w) % out_h) * stride_h - pad_top
        left = (pixel % out_w) * stride_w - pad_left
        for r in range(kernel_h):
            in_row = top + r
            base = r * span
            if in_row < 0 or in_row >= height:
                for j in range(span):
                    cols[i, base + j] = 0.0
            elif left >= 0 and left + kernel_w <= width:
                start = left * channels
                for j in range(span):
                    cols[i, base + j] = x_rows[n, in_row, start + j]
            else:
                for s in range(kernel_w):
                    in_col = left + s
                    inside = 0 <= in_col < width
                    for c in range(channels):
                        cols[i, base + s * channels + c] = x_rows[n, in_row, in_col * channels + c] if inside else 0.0


@njit(**_SERIAL)
def _col2im_sample(cols, grad_sample, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    """grad_sample (H, W, C) = one sample's patch rows cols (OH*OW, KH*KW*C) added back where they were gathered."""
    height, width, channels = grad_sample.shape
    grad_sample[:] = 0.0
    for oh in range(out_h):
        for ow in range(out_w):
            row = oh * out_w + ow
            k = 0
            for r in range(kernel_h):
                in_row = oh * stride_h - pad_top + r
                for s in range(kernel_w):
                    in_col = ow * stride_w - pad_left + s
                    if 0 <= in_row < height and 0 <= in_col < width:
                        for c in range(channels):
                            grad_sample[in_row, in_col, c] += cols[row, k + c]
                    k += channels


@njit(**_SERIAL)
def _is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    return kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1 and pad_top == 0 and pad_left == 0


@njit(**_SERIAL)
def _patches(x, first_row, rows, patch_len, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    """The (rows, KH*KW*C) patch matrix of a block of output pixels (a copy of x's rows for a pointwise kernel)."""
    if _is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
        return np.ascontiguousarray(x.reshape(-1, x.shape[3])[first_row : first_row + rows])
    patches = np.empty((rows, patch_len), dtype=np.float32)
    _im2col_rows(x, patches, first_row, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    return patches


@njit(**_PARALLEL)
def conv2d_forward(x, kernel_matrix, bias, y, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """y = conv(x, kernel) + bias. x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); bias: (F,); y: (N, OH, OW, F)."""
    batch, out_h, out_w, filters = y.shape
    y_rows = y.reshape(batch * out_h * out_w, filters)
    total_rows = y_rows.shape[0]
    for block in prange((total_rows + block_rows - 1) // block_rows):
        first_row = block * block_rows
        rows = min(block_rows, total_rows - first_row)
        patches = _patches(x, first_row, rows, kernel_matrix.shape[0], out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
        y_block = y_rows[first_row : first_row + rows]
        np.dot(patches, kernel_matrix, y_block)
        y_block += bias


@njit(**_PARALLEL)
def conv2d_backward_input(grad_out, kernel_matrix, grad_x, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """grad_x = d conv / d x, one sample per block. grad_out: (N, OH, OW, F); kernel_matrix: (KH*KW*C, F); grad_x: (N, H, W, C)."""
    batch, out_h, out_w, filters = grad_out.shape
    kernel_matrix_t = np.ascontiguousarray(kernel_matrix.T)
    pointwise = _is_pointwise(stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    for n in prange(batch):
        grad_patches = np.dot(np.ascontiguousarray(grad_out[n].reshape(out_h * out_w, filters)), kernel_matrix_t)
        if pointwise:
            grad_x[n] = grad_patches.reshape(grad_x.shape[1:])
        else:
            _col2im_sample(grad_patches, grad_x[n], out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)


@njit(**_PARALLEL)
def conv2d_backward_kernel(x, grad_out, grad_kernel_matrix, grad_bias, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """grad_kernel_matrix = patches^T @ grad_out, grad_bias = sums of grad_out over N, OH, OW ((0,) to skip).

    The blocks are split into ``threads`` contiguous groups, each summed into its own
    partial gradient; the partials are added in group order, so results are repeatable.
    """
    batch, out_h, out_w, filters = grad_out.shape
    grad_rows = grad_out.reshape(batch * out_h * out_w, filters)
    total_rows = grad_rows.shape[0]
    blocks = (total_rows + block_rows - 1) // block_rows
    partials = np.zeros((threads, grad_kernel_matrix.shape[0], filters), dtype=np.float32)
    for group in prange(threads):
        for block in range(group * blocks // threads, (group + 1) * blocks // threads):
            first_row = block * block_rows
            rows = min(block_rows, total_rows - first_row)
            patches = _patches(x, first_row, rows, grad_kernel_matrix.shape[0], out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
            partials[group] += np.dot(np.ascontiguousarray(patches.T), np.ascontiguousarray(grad_rows[first_row : first_row + rows]))
    grad_kernel_matrix[:] = 0.0
    for group in range(threads):
        grad_kernel_matrix += partials[group]
    if grad_bias.shape[0] > 0:
        _column_sums(grad_rows, grad_bias)


@njit(**_PARALLEL)
def _column_sums(matrix, sums):
    """sums[j] = sum_i matrix[i, j], in float64, row blocks in parallel."""
    rows, cols = matrix.shape
    blocks = 16 if rows >= 16 else 1
    partial = np.zeros((blocks, cols))
    for block in prange(blocks):
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            for j in range(cols):
                partial[block, j] += matrix[i, j]
    for j in range(cols):
        sums[j] = partial[:, j].sum()


# --- pooling ---------------------------------------------------------------


@njit(**_SERIAL)
def _clip_window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, height, width):
    """(row_start, row_stop, col_start, col_stop) of the real input under output pixel (oh, ow)."""
    top = oh * stride_h - pad_top
    left = ow * stride_w - pad_left
    return max(top, 0), min(top + pool_h, height), max(left, 0), min(left + pool_w, width)


@njit(**_PARALLEL)
def max_pool2d_forward(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """y = window maxima; argmax = row * W + col of each winner. x: (N, H, W, C); y, argmax: (N, OH, OW, C).

    As NumPy's argmax (the reference): the first NaN of a window wins, else its first largest value.
    """
    batch, height, width, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for item in prange(batch * out_h):
        n = item // out_h
        oh = item % out_h
        for ow in range(out_w):
            r0, r1, c0, c1 = _clip_window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, height, width)
            if r0 >= r1 or c0 >= c1:  # no real pixel (impossible for Keras geometries)
                y[n, oh, ow, :] = -np.inf
                argmax[n, oh, ow, :] = 0
                continue
            for c in range(channels):
                y[n, oh, ow, c] = x[n, r0, c0, c]
                argmax[n, oh, ow, c] = r0 * width + c0
            for row in range(r0, r1):
                for col in range(c0, c1):
                    for c in range(channels):
                        value, best = x[n, row, col, c], y[n, oh, ow, c]
                        if value > best or (np.isnan(value) and not np.isnan(best)):
                            y[n, oh, ow, c] = value
                            argmax[n, oh, ow, c] = row * width + col


@njit(**_PARALLEL)
def max_pool2d_backward(grad_out, argmax, grad_x):
    """grad_x[n, argmax, c] += grad_out. grad_out, argmax: (N, OH, OW, C); grad_x: (N, H, W, C)."""
    batch, height, width, channels = grad_x.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for n in prange(batch):
        grad_x[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                for c in range(channels):
                    index = argmax[n, oh, ow, c]
                    grad_x[n, index // width, index % width, c] += grad_out[n, oh, ow, c]


@njit(**_PARALLEL)
def avg_pool2d_forward(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """y = mean of each window's real pixels. x: (N, H, W, C); y: (N, OH, OW, C).

    Each pixel is scaled before it is added, so the mean of finite values is finite.
    """
    batch, height, width, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for item in prange(batch * out_h):
        n = item // out_h
        oh = item % out_h
        for ow in range(out_w):
            r0, r1, c0, c1 = _clip_window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, height, width)
            scale = np.float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
            for c in range(channels):
                y[n, oh, ow, c] = 0.0
            for row in range(r0, r1):
                for col in range(c0, c1):
                    for c in range(channels):
                        y[n, oh, ow, c] += x[n, row, col, c] * scale


@njit(**_PARALLEL)
def avg_pool2d_backward(grad_out, grad_x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """Spread each output gradient evenly over its window's real pixels. grad_out: (N, OH, OW, C); grad_x: (N, H, W, C)."""
    batch, height, width, channels = grad_x.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for n in prange(batch):
        grad_x[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                r0, r1, c0, c1 = _clip_window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, height, width)
                scale = np.float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
                for row in range(r0, r1):
                    for col in range(c0, c1):
                        for c in range(channels):
                            grad_x[n, row, col, c] += grad_out[n, oh, ow, c] * scale


# --- dense -----------------------------------------------------------------


@njit(**_SERIAL)
def dense_forward(x, kernel, bias, y, threads):
    """y = x @ kernel + bias. x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,); y: (N, D_out).

    BLAS runs single-threaded here too (the caller sees to it): its threads would
    otherwise spin against the Numba threads of the layers around it.
    """
    np.dot(x, kernel, y)
    y += bias


@njit(**_SERIAL)
def dense_backward(grad_out, x, kernel, grad_x, grad_kernel, grad_bias, threads):
    """grad_x = grad_out @ kernel^T; grad_kernel = x^T @ grad_out; grad_bias = column sums ((0,) to skip)."""
    np.dot(grad_out, np.ascontiguousarray(kernel.T), grad_x)
    np.dot(np.ascontiguousarray(x.T), grad_out, grad_kernel)
    if grad_bias.shape[0] > 0:
        _column_sums(grad_out, grad_bias)


# --- activations and losses ------------------------------------------------


@njit(**_PARALLEL)
def relu_forward(x, y):
    """y = max(x, 0), NaN kept as NaN; flat (size,) buffers."""
    for i in prange(x.shape[0]):
        y[i] = 0.0 if x[i] <= 0 else x[i]


@njit(**_PARALLEL)
def relu_backward(grad_out, y, grad_x):
    """grad_x = grad_out where y > 0, else 0; flat buffers."""
    for i in prange(y.shape[0]):
        grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


@njit(**_PARALLEL)
def sigmoid_forward(x, y):
    """y = 1 / (1 + exp(-x)); flat buffers."""
    for i in prange(x.shape[0]):
        y[i] = 1.0 / (1.0 + np.exp(-x[i]))


@njit(**_PARALLEL)
def sigmoid_backward(grad_out, y, grad_x):
    """grad_x = grad_out * y * (1 - y); flat buffers."""
    for i in prange(y.shape[0]):
        grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


@njit(**_PARALLEL)
def softmax_forward(x, y):
    """Row-wise softmax. x, y: (N, K)."""
    for n in prange(x.shape[0]):
        peak = x[n].max()
        total = 0.0
        for k in range(x.shape[1]):
            y[n, k] = np.exp(x[n, k] - peak)
            total += y[n, k]
        for k in range(x.shape[1]):
            y[n, k] = y[n, k] / total


@njit(**_PARALLEL)
def softmax_backward(grad_out, y, grad_x):
    """grad_x = y * (grad_out - sum_k grad_out * y) row-wise; all (N, K)."""
    for n in prange(y.shape[0]):
        dot = 0.0
        for k in range(y.shape[1]):
            dot += np.float64(grad_out[n, k]) * y[n, k]
        for k in range(y.shape[1]):
            grad_x[n, k] = y[n, k] * (grad_out[n, k] - dot)


@njit(**_PARALLEL)
def softmax_cross_entropy(logits, targets, grad):
    """Mean categorical cross-entropy of softmax(logits); grad = (softmax * sum(t) - t) / N. Returns the loss.

    The arithmetic is in float64: the gradient of a confident, correct prediction
    is 1 - p for p near 1, which float32 would round away.
    """
    batch, classes = logits.shape
    loss = 0.0
    for n in prange(batch):
        peak = np.float64(logits[n].max())
        total = 0.0
        target_mass = 0.0
        for k in range(classes):
            total += np.exp(np.float64(logits[n, k]) - peak)
            target_mass += targets[n, k]
        log_total = np.log(total)
        row_loss = 0.0
        for k in range(classes):
            log_prob = np.float64(logits[n, k]) - peak - log_total
            row_loss -= targets[n, k] * log_prob
            grad[n, k] = (np.exp(log_prob) * target_mass - targets[n, k]) / batch
        loss += row_loss
    return loss / batch


@njit(**_PARALLEL)
def sigmoid_binary_cross_entropy(logits, targets, grad):
    """Mean binary cross-entropy of sigmoid(logits), in float64; grad = (sigmoid(z) - t) / (N * K). Returns the loss."""
    batch, classes = logits.shape
    count = batch * classes
    loss = 0.0
    for n in prange(batch):
        for k in range(classes):
            z = np.float64(logits[n, k])
            t = np.float64(targets[n, k])
            loss += max(z, 0.0) - z * t + np.log1p(np.exp(-abs(z)))
            grad[n, k] = (1.0 / (1.0 + np.exp(-z)) - t) / count
    return loss / count
