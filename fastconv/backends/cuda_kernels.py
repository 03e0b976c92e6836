"""numba.cuda kernels with the low-level contract of ``fastconv.backends.compiled``.

Every argument is a device array (float32; argmax int32), every output is
preallocated by the caller, shapes are already checked. The heavy work is one
shared-memory, register-blocked GEMM (``gemm``) that the convolution (im2col +
GEMM, and a gathering col2im for the input gradient) and the dense layer share;
bias is added in its epilogue. ``block_rows``/``threads`` of the CPU contract are
accepted and ignored: the GPU takes the whole batch at once.

Runs on a GPU, and under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) for tests.
"""

import math

import numpy as np
from numba import config, cuda, float32, float64

# GEMM blocking: each block computes a BM x BN tile of C from BK-deep slices of A and B staged in
# shared memory; each thread keeps a TM x TN sub-tile in registers. The simulator runs every GPU
# thread as a Python thread: there, small tiles and blocks keep tests quick (and make the GEMM cross
# many tile boundaries, which is what the tests should exercise).
if config.ENABLE_CUDASIM:
    BM, BN, BK, TM, TN, THREADS = 8, 8, 4, 2, 2, 32
else:
    BM, BN, BK, TM, TN, THREADS = 64, 64, 8, 4, 4, 256
GEMM_THREADS = (BM // TM) * (BN // TN)


def _blocks(count):
    return max(1, (count + THREADS - 1) // THREADS)


# --- GEMM -----------------------------------------------------------------------


@cuda.jit
def _gemm_kernel(a, b, c, bias, m, n, k, transpose_a, transpose_b, beta, use_bias):
    """c (m, n) = op(a) @ op(b) + beta * c (+ bias over columns).

    Register-blocked: a block of (BN/TN, BM/TM) threads owns a BM x BN tile of c; per BK-deep step
    it stages op(a)[tile rows, step] (transposed, so a thread's TM values are contiguous) and
    op(b)[step, tile columns] in shared memory, then each thread updates its TM x TN accumulators.
    """
    tile_a = cuda.shared.array((BK, BM), float32)
    tile_b = cuda.shared.array((BK, BN), float32)
    accumulator = cuda.local.array((TM, TN), float32)
    a_values = cuda.local.array(TM, float32)
    b_values = cuda.local.array(TN, float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    thread = ty * (BN // TN) + tx
    first_row, first_col = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    for i in range(TM):
        for j in range(TN):
            accumulator[i, j] = 0.0
    for depth in range(0, k, BK):
        for element in range(thread, BM * BK, GEMM_THREADS):
            i, kk = element // BK, element % BK
            row, kc = first_row + i, depth + kk
            value = float32(0.0)
            if row < m and kc < k:
                value = a[kc, row] if transpose_a else a[row, kc]
            tile_a[kk, i] = value
        for element in range(thread, BK * BN, GEMM_THREADS):
            kk, j = element // BN, element % BN
            kc, col = depth + kk, first_col + j
            value = float32(0.0)
            if kc < k and col < n:
                value = b[col, kc] if transpose_b else b[kc, col]
            tile_b[kk, j] = value
        cuda.syncthreads()
        for kk in range(BK):
            for i in range(TM):
                a_values[i] = tile_a[kk, ty * TM + i]
            for j in range(TN):
                b_values[j] = tile_b[kk, tx * TN + j]
            for i in range(TM):
                for j in range(TN):
                    accumulator[i, j] += a_values[i] * b_values[j]
        cuda.syncthreads()
    for i in range(TM):
        row = first_row + ty * TM + i
        for j in range(TN):
            col = first_col + tx * TN + j
            if row < m and col < n:
                value = accumulator[i, j]
                if beta != 0.0:
                    value += beta * c[row, col]
                if use_bias:
                    value += bias[col]
                c[row, col] = value


def gemm(a, b, c, transpose_a=False, transpose_b=False, beta=0.0, bias=None):
    """c = op(a) @ op(b) + beta * c (+ bias), row-major device matrices."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    use_bias = bias is not None
    grid = ((n + BN - 1) // BN, (m + BM - 1) // BM)
    _gemm_kernel[grid, (BN // TN, BM // TM)](a, b, c, bias if use_bias else c[0], m, n, k, transpose_a, transpose_b, beta, use_bias)


@cuda.jit
def _column_sums_kernel(matrix, sums):
    col = cuda.grid(1)
    if col < matrix.shape[1]:
        total = float64(0.0)
        for row in range(matrix.shape[0]):
            total += matrix[row, col]
        sums[col] = total


def _column_sums(matrix, sums):
    _column_sums_kernel[_blocks(matrix.shape[1]), THREADS](matrix, sums)


@cuda.jit
def _fill_kernel(flat, value):
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = value


def fill(array, value):
    flat = array.reshape(array.size)
    _fill_kernel[_blocks(flat.shape[0]), THREADS](flat, value)


# --- convolution ----------------------------------------------------------------


@cuda.jit
def _im2col_kernel(x, cols, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_w):
    """cols[row, (r*KW + s)*C + c] = x at the kernel offset (r, s) of output pixel ``row``, 0 outside."""
    i = cuda.grid(1)
    rows, patch_len = cols.shape
    if i >= rows * patch_len:
        return
    row, k = i // patch_len, i % patch_len
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    c, s, r = k % channels, (k // channels) % kernel_w, k // (channels * kernel_w)
    n, oh, ow = row // (out_h * out_w), (row // out_w) % out_h, row % out_w
    in_row, in_col = oh * stride_h - pad_top + r, ow * stride_w - pad_left + s
    inside = 0 <= in_row < height and 0 <= in_col < width
    cols[row, k] = x[n, in_row, in_col, c] if inside else 0.0


@cuda.jit
def _col2im_kernel(grad_cols, grad_x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    """grad_x[n, i, j, c] = the sum of the patch gradients that gathered it (one thread per input value, no atomics)."""
    index = cuda.grid(1)
    batch, height, width, channels = grad_x.shape
    if index >= batch * height * width * channels:
        return
    n, i, j, c = _nhwc_index(index, height, width, channels)
    total = float32(0.0)
    for r in range(kernel_h):
        top = i + pad_top - r
        if top < 0 or top % stride_h != 0 or top // stride_h >= out_h:
            continue
        for s in range(kernel_w):
            left = j + pad_left - s
            if left < 0 or left % stride_w != 0 or left // stride_w >= out_w:
                continue
            row = (n * out_h + top // stride_h) * out_w + left // stride_w
            total += grad_cols[row, (r * kernel_w + s) * channels + c]
    grad_x[n, i, j, c] = total


def _patches(x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w):
    rows = x.shape[0] * out_h * out_w
    cols = cuda.device_array((rows, kernel_h * kernel_w * x.shape[3]), dtype=np.float32)
    _im2col_kernel[_blocks(cols.size), THREADS](x, cols, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_w)
    return cols


def conv2d_forward(x, kernel_matrix, bias, y, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """y = conv(x, kernel) + bias. x: (N, H, W, C); kernel_matrix: (KH*KW*C, F); y: (N, OH, OW, F)."""
    batch, out_h, out_w, filters = y.shape
    cols = _patches(x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    gemm(cols, kernel_matrix, y.reshape(batch * out_h * out_w, filters), bias=bias)


def conv2d_backward_input(grad_out, kernel_matrix, grad_x, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """grad_x = d conv / d x: grad_cols = grad_out @ kernel_matrix^T, then gathered back."""
    batch, out_h, out_w, filters = grad_out.shape
    grad_cols = cuda.device_array((batch * out_h * out_w, kernel_matrix.shape[0]), dtype=np.float32)
    gemm(grad_out.reshape(batch * out_h * out_w, filters), kernel_matrix, grad_cols, transpose_b=True)
    _col2im_kernel[_blocks(grad_x.size), THREADS](grad_cols, grad_x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)


def conv2d_backward_kernel(x, grad_out, grad_kernel_matrix, grad_bias, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w, block_rows, threads):
    """grad_kernel_matrix = patches^T @ grad_out; grad_bias = column sums of grad_out ((0,) to skip)."""
    batch, out_h, out_w, filters = grad_out.shape
    cols = _patches(x, out_h, out_w, stride_h, stride_w, pad_top, pad_left, kernel_h, kernel_w)
    grad_rows = grad_out.reshape(batch * out_h * out_w, filters)
    gemm(cols, grad_rows, grad_kernel_matrix, transpose_a=True)
    if grad_bias.shape[0] > 0:
        _column_sums(grad_rows, grad_bias)


# --- pooling --------------------------------------------------------------------


@cuda.jit(device=True)
def _nhwc_index(index, height, width, channels):
    """(n, row, col, channel) of the flat index of a C-contiguous (N, H, W, C) array."""
    return index // (channels * width * height), (index // (channels * width)) % height, (index // channels) % width, index % channels


@cuda.jit(device=True)
def _window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, height, width):
    top, left = oh * stride_h - pad_top, ow * stride_w - pad_left
    return max(top, 0), min(top + pool_h, height), max(left, 0), min(left + pool_w, width)


@cuda.jit
def _max_pool_kernel(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = y.shape
    if index >= y.size:
        return
    n, oh, ow, c = _nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, x.shape[1], x.shape[2])
    best, best_index = -math.inf, 0
    if r0 < r1 and c0 < c1:
        best, best_index = x[n, r0, c0, c], r0 * x.shape[2] + c0
    # As NumPy's argmax (the reference): the first NaN wins, else the first largest value.
    for row in range(r0, r1):
        for col in range(c0, c1):
            value = x[n, row, col, c]
            if value > best or (math.isnan(value) and not math.isnan(best)):
                best, best_index = value, row * x.shape[2] + col
    y[n, oh, ow, c] = best
    argmax[n, oh, ow, c] = best_index


@cuda.jit
def _max_unpool_kernel(grad_out, argmax, grad_x, errors):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = grad_out.shape
    if index >= grad_out.size:
        return
    n, oh, ow, c = _nhwc_index(index, out_h, out_w, channels)
    winner = argmax[n, oh, ow, c]
    if winner < 0 or winner >= grad_x.shape[1] * grad_x.shape[2]:
        cuda.atomic.add(errors, 0, 1)
        return
    cuda.atomic.add(grad_x, (n, winner // grad_x.shape[2], winner % grad_x.shape[2], c), grad_out[n, oh, ow, c])


@cuda.jit
def _avg_pool_kernel(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = y.shape
    if index >= y.size:
        return
    n, oh, ow, c = _nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, x.shape[1], x.shape[2])
    # Each pixel scaled before it is added: the mean of finite values stays finite.
    scale = float32(1.0 / max((r1 - r0) * (c1 - c0), 1))
    total = float32(0.0)
    for row in range(r0, r1):
        for col in range(c0, c1):
            total += x[n, row, col, c] * scale
    y[n, oh, ow, c] = total


@cuda.jit
def _avg_unpool_kernel(grad_out, grad_x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    batch, out_h, out_w, channels = grad_out.shape
    if index >= grad_out.size:
        return
    n, oh, ow, c = _nhwc_index(index, out_h, out_w, channels)
    r0, r1, c0, c1 = _window(oh, ow, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, grad_x.shape[1], grad_x.shape[2])
    share = grad_out[n, oh, ow, c] / max((r1 - r0) * (c1 - c0), 1)
    for row in range(r0, r1):
        for col in range(c0, c1):
            cuda.atomic.add(grad_x, (n, row, col, c), share)


def max_pool2d_forward(x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    _max_pool_kernel[_blocks(y.size), THREADS](x, y, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def max_pool2d_backward(grad_out, argmax, grad_x):
    fill(grad_x, 0.0)
    errors = cuda.to_device(np.zeros(1, dtype=np.int32))
    _max_unpool_kernel[_blocks(grad_out.size), THREADS](grad_out, argmax, grad_x, errors)
    bad = int(errors.copy_to_host()[0])
    if bad:
        raise ValueError(f"max_pool2d_backward: {bad} argmax indices fall outside the input plane")


def avg_pool2d_forward(x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    _avg_pool_kernel[_blocks(y.size), THREADS](x, y, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def avg_pool2d_backward(grad_out, grad_x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    fill(grad_x, 0.0)
    _avg_unpool_kernel[_blocks(grad_out.size), THREADS](grad_out, grad_x, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


# --- dense ------------------------------------------------------------------------


def dense_forward(x, kernel, bias, y, threads):
    """y = x @ kernel + bias (bias in the GEMM's epilogue)."""
    gemm(x, kernel, y, bias=bias)


def dense_backward(grad_out, x, kernel, grad_x, grad_kernel, grad_bias, threads):
    gemm(grad_out, kernel, grad_x, transpose_b=True)
    gemm(x, grad_out, grad_kernel, transpose_a=True)
    if grad_bias.shape[0] > 0:
        _column_sums(grad_out, grad_bias)


# --- element-wise, softmax, losses, optimizer updates ---------------------------------


@cuda.jit
def _relu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = 0.0 if x[i] <= 0 else x[i]  # NaN stays NaN


@cuda.jit
def _relu_backward_kernel(grad_out, y, grad_x):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_x[i] = grad_out[i] if y[i] > 0 else 0.0


@cuda.jit
def _sigmoid_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = 1.0 / (1.0 + math.exp(-x[i]))


@cuda.jit
def _sigmoid_backward_kernel(grad_out, y, grad_x):
    i = cuda.grid(1)
    if i < y.shape[0]:
        grad_x[i] = grad_out[i] * y[i] * (1.0 - y[i])


@cuda.jit
def _multiply_kernel(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] * b[i]


def relu_forward(x, y):
    _relu_kernel[_blocks(x.shape[0]), THREADS](x, y)


def relu_backward(grad_out, y, grad_x):
    _relu_backward_kernel[_blocks(y.shape[0]), THREADS](grad_out, y, grad_x)


def sigmoid_forward(x, y):
    _sigmoid_kernel[_blocks(x.shape[0]), THREADS](x, y)


def sigmoid_backward(grad_out, y, grad_x):
    _sigmoid_backward_kernel[_blocks(y.shape[0]), THREADS](grad_out, y, grad_x)


def multiply(a, b, out):
    _multiply_kernel[_blocks(a.shape[0]), THREADS](a, b, out)


@cuda.jit
def _softmax_kernel(x, y):
    n = cuda.grid(1)
    if n < x.shape[0]:
        peak = x[n, 0]
        for k in range(1, x.shape[1]):
            peak = max(peak, x[n, k])
        total = float64(0.0)
        for k in range(x.shape[1]):
            y[n, k] = math.exp(x[n, k] - peak)
            total += y[n, k]
        for k in range(x.shape[1]):
            y[n, k] = y[n, k] / total


@cuda.jit
def _softmax_backward_kernel(grad_out, y, grad_x):
    n = cuda.grid(1)
    if n < y.shape[0]:
        dot = float64(0.0)
        for k in range(y.shape[1]):
            dot += float64(grad_out[n, k]) * y[n, k]
        for k in range(y.shape[1]):
            grad_x[n, k] = y[n, k] * (grad_out[n, k] - dot)


@cuda.jit
def _softmax_cross_entropy_kernel(logits, targets, grad, row_loss):
    """Per row, in float64: loss -sum t log softmax(z); grad (softmax * sum t - t) / N."""
    n = cuda.grid(1)
    batch, classes = logits.shape
    if n < batch:
        peak = float64(logits[n, 0])
        for k in range(1, classes):
            peak = max(peak, float64(logits[n, k]))
        total, mass = float64(0.0), float64(0.0)
        for k in range(classes):
            total += math.exp(float64(logits[n, k]) - peak)
            mass += targets[n, k]
        log_total = math.log(total)
        loss = float64(0.0)
        for k in range(classes):
            log_prob = float64(logits[n, k]) - peak - log_total
            loss -= targets[n, k] * log_prob
            grad[n, k] = (math.exp(log_prob) * mass - targets[n, k]) / batch
        row_loss[n] = loss


@cuda.jit
def _sigmoid_cross_entropy_kernel(logits, targets, grad, row_loss):
    n = cuda.grid(1)
    batch, classes = logits.shape
    if n < batch:
        loss = float64(0.0)
        for k in range(classes):
            z, t = float64(logits[n, k]), float64(targets[n, k])
            loss += max(z, 0.0) - z * t + math.log1p(math.exp(-abs(z)))
            grad[n, k] = (1.0 / (1.0 + math.exp(-z)) - t) / (batch * classes)
        row_loss[n] = loss


def softmax_forward(x, y):
    _softmax_kernel[_blocks(x.shape[0]), THREADS](x, y)


def softmax_backward(grad_out, y, grad_x):
    _softmax_backward_kernel[_blocks(y.shape[0]), THREADS](grad_out, y, grad_x)


def _row_losses(kernel, logits, targets, grad):
    row_loss = cuda.device_array(logits.shape[0], dtype=np.float64)
    kernel[_blocks(logits.shape[0]), THREADS](logits, targets, grad, row_loss)
    return row_loss.copy_to_host().sum()  # N numbers come back, not the gradient


def softmax_cross_entropy(logits, targets, grad):
    return _row_losses(_softmax_cross_entropy_kernel, logits, targets, grad) / logits.shape[0]


def sigmoid_binary_cross_entropy(logits, targets, grad):
    return _row_losses(_sigmoid_cross_entropy_kernel, logits, targets, grad) / logits.size


@cuda.jit
def _sgd_kernel(weight, grad, velocity, learning_rate, momentum, nesterov):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        if momentum == 0.0:
            weight[i] -= learning_rate * grad[i]
        else:
            velocity[i] = momentum * velocity[i] - learning_rate * grad[i]
            weight[i] += momentum * velocity[i] - learning_rate * grad[i] if nesterov else velocity[i]


@cuda.jit
def _rmsprop_kernel(weight, grad, mean_square, learning_rate, rho, epsilon):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        mean_square[i] = rho * mean_square[i] + (1.0 - rho) * grad[i] * grad[i]
        weight[i] -= learning_rate * grad[i] / math.sqrt(mean_square[i] + epsilon)


@cuda.jit
def _adam_kernel(weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
    i = cuda.grid(1)
    if i < weight.shape[0]:
        first[i] += (1.0 - beta_1) * (grad[i] - first[i])
        second[i] += (1.0 - beta_2) * (grad[i] * grad[i] - second[i])
        weight[i] -= step_size * first[i] / (math.sqrt(second[i]) + epsilon)


def sgd_update(weight, grad, velocity, learning_rate, momentum, nesterov):
    velocity = velocity if velocity.size else weight  # unused without momentum
    _sgd_kernel[_blocks(weight.shape[0]), THREADS](weight, grad, velocity, learning_rate, momentum, nesterov)


def rmsprop_update(weight, grad, mean_square, learning_rate, rho, epsilon):
    _rmsprop_kernel[_blocks(weight.shape[0]), THREADS](weight, grad, mean_square, learning_rate, rho, epsilon)


def adam_update(weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
    _adam_kernel[_blocks(weight.shape[0]), THREADS](weight, grad, first, second, step_size, beta_1, beta_2, epsilon)
