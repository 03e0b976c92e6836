"""The public kernel API of a compiled backend (Cython, Numba, and CUDA through its hooks).

A :class:`CompiledBackend` validates every argument in Python, allocates the
outputs and then hands raw float32 buffers to its ``low_level`` kernels, which
only compute (validation and allocation in Python, computation in compiled code). The backends are instances of this class over
kernels with the same low-level signatures (``fastconv.backends.contract``), so
the checks, the allocation and the blocking plan exist once.

Low-level contract (``low_level.<name>``, a :class:`~fastconv.backends.contract.Kernels`): every array float32 (argmax int32)
and C-contiguous, shapes already checked; the outputs, named ``out_*``, come
preallocated after the inputs; convolution and pooling take a
:class:`~fastconv.backends.plans.ConvPlan` / :class:`~fastconv.backends.plans.PoolPlan` last.
"""

import numpy as np

from fastconv.backends import algorithms, buffers, checks, host_ops, winograd_tiles
from fastconv.backends.algorithms import ConvAlgorithm
from fastconv.backends.blas_threads import single_threaded_blas
from fastconv.backends.plans import ConvPlan, PoolPlan
from fastconv.backends.threads import thread_count

# A block of patches of about this many bytes stays in one core's L2 cache
# while its product with the kernel is large enough for BLAS to run at speed.
_PATCH_BLOCK_BYTES = 1 << 20
_MIN_BLOCK_ROWS = 64
_BLOCKS_PER_THREAD = 4
# Work too small to share: a parallel region waits for its slowest thread, and on a busy core that is a time slice
# (milliseconds) for microseconds of work. Element-wise loops (activations, losses, pooling) over fewer elements,
# and dense products of fewer FLOPs per thread, run on one thread (docs/performance.md: MNIST's busy step).
_SMALL_LOOP_ELEMENTS = 1 << 16
_DENSE_FLOPS_PER_THREAD = 1 << 24
# Winograd's blocks of tiles: a^2 products (tiles, C) @ (C, F) each, which BLAS runs at speed from ~128 rows on
# (measured on the VGG16 layers: 64-tile blocks ran block4 2x slower). BLAS packs each U[k] (C, F) anew for every
# block, which costs as much as the product itself once U[k] outgrows the L2 cache and the block is short, so a
# block has at least C * F / _KERNEL_ELEMENTS_PER_TILE tiles (512 for C = F = 512: F(4x4) on block4 1.3x faster).
_WINOGRAD_BLOCK_BYTES = 1 << 21
_WINOGRAD_MIN_TILES = 128
_KERNEL_ELEMENTS_PER_TILE = 512


def conv_blocking(batch, geometry, kernel_shape):
    """(block_pixels, threads): output pixels per block of patches, and threads sharing the blocks.

    Blocks hold about ``_PATCH_BLOCK_BYTES`` of patches, and their count is a
    multiple of the thread count so that every thread gets the same work.
    """
    patch_len = kernel_shape[0] * kernel_shape[1] * kernel_shape[2]
    total_rows = batch * geometry.out_h * geometry.out_w
    return _share_blocks(total_rows, max(_MIN_BLOCK_ROWS, _PATCH_BLOCK_BYTES // (4 * patch_len)), _MIN_BLOCK_ROWS)


def _share_blocks(total, target, least, balance_least=None):
    """(per_block, threads): ``total`` items cut into blocks of about ``target``, their count a multiple of the
    threads, and no thread given fewer than ``least`` items.

    With more than one thread there are at least ``_BLOCKS_PER_THREAD`` blocks per thread (while blocks keep
    ``balance_least`` items, by default ``least``): the kernels hand blocks out as threads come free, so a thread
    that the system preempts (another process on its core) delays a call by one block, not by its whole share."""
    threads = max(1, min(thread_count(), -(-total // least)))
    blocks = -(-total // target)
    if threads > 1:
        blocks = max(blocks, min(_BLOCKS_PER_THREAD * threads, total // (balance_least or least)))
    blocks = -(-blocks // threads) * threads
    return -(-total // blocks), threads


def conv_plan(batch, strides, geometry, kernel_shape, relu=False):
    """The :class:`ConvPlan` of a checked convolution by the GEMM: its geometry, :func:`conv_blocking` and its
    epilogue; the input gradient's blocks hold as many whole samples as fit in one forward block (at least one)."""
    block_pixels, threads = conv_blocking(batch, geometry, kernel_shape)
    return ConvPlan(strides[0], strides[1], geometry.pad_top, geometry.pad_left, kernel_shape[0], kernel_shape[1],
                    threads, block_pixels=block_pixels,
                    block_samples=max(1, block_pixels // max(1, geometry.out_h * geometry.out_w)), relu=relu)


def winograd_plan(batch, out_hw, channels, filters, pad_top, pad_left, tile_side, relu=False):
    """The :class:`ConvPlan` of a Winograd F(m x m, 3x3) convolution, m = ``tile_side``, its ``block_tiles`` set.

    A block's transformed inputs and products (a^2 x tiles x (C + F) floats, a = m + 2) hold about
    ``_WINOGRAD_BLOCK_BYTES``, with no fewer than ``_WINOGRAD_MIN_TILES`` tiles nor than C * F /
    ``_KERNEL_ELEMENTS_PER_TILE``.
    """
    tiles = batch * -(-out_hw[0] // tile_side) * -(-out_hw[1] // tile_side)
    positions = winograd_tiles.positions(tile_side)
    min_tiles = max(1, _MIN_BLOCK_ROWS // tile_side**2)
    target = max(
        _WINOGRAD_MIN_TILES,
        _WINOGRAD_BLOCK_BYTES // (4 * positions * (channels + filters)),
        channels * filters // _KERNEL_ELEMENTS_PER_TILE,
    )
    # A block shorter than C * F / _KERNEL_ELEMENTS_PER_TILE tiles packs each U[k] for too few rows: the extra
    # blocks that balance a busy machine's threads stop there (VGG16's block4 and block5, 9-18 pixel outputs with
    # C = F = 512: 500 and 180 tiles at batch 20, in 2 blocks instead of 8; block4_conv2 108 -> 77 ms quiet).
    block_tiles, threads = _share_blocks(tiles, target, min_tiles, balance_least=max(min_tiles, channels * filters // _KERNEL_ELEMENTS_PER_TILE))
    return ConvPlan(1, 1, pad_top, pad_left, 3, 3, threads, block_tiles=block_tiles, relu=relu)


def pool_plan(pool_size, strides, geometry):
    """The :class:`PoolPlan` of a checked pooling."""
    return PoolPlan(pool_size[0], pool_size[1], strides[0], strides[1], geometry.pad_top, geometry.pad_left)


def dense_threads(batch, kernel_shape):
    """Threads for a dense product: one per core, but none with less than ``_DENSE_FLOPS_PER_THREAD`` of work."""
    flops = 2 * batch * kernel_shape[0] * kernel_shape[1]
    return int(max(1, min(thread_count(), flops // _DENSE_FLOPS_PER_THREAD, kernel_shape[0], kernel_shape[1])))


def _flat(array):
    """A flat (size,) view of a C-contiguous array (NumPy or device)."""
    return array.reshape(array.size)


class CompiledBackend:
    """Kernel API (same names, signatures and shapes as ``fastconv.backends.reference``)."""

    STRICT = True

    def __init__(self, name, low_level, set_default_threads=None):
        """``low_level``: the backend's :class:`~fastconv.backends.contract.Kernels`. ``set_default_threads(n)``: makes the calling thread's parallel loops that name no thread count (the
        activations', losses' and pooling's) run on ``n`` threads; None where there are none (the GPU)."""
        self.name = name
        self.low_level = low_level
        self.has_winograd = low_level.has_winograd
        self._set_default_threads = set_default_threads

    def __repr__(self):
        return f"<fastconv backend {self.name!r}>"

    def to_device(self, array):
        """This backend's arrays are NumPy arrays: device arrays of another backend are copied back."""
        return checks.host_array(array)

    def to_host(self, array):
        """Return ``array`` as a NumPy array (identity on CPU backends)."""
        return checks.host_array(array)

    def empty(self, shape, dtype=np.float32):
        """An uninitialised array of this backend, its memory reused from earlier steps (``buffers.pool``)."""
        return buffers.pool.empty(shape, dtype)

    def zeros(self, shape, dtype=np.float32):
        """A zero-filled array of this backend (optimizer state, absent biases)."""
        return np.zeros(shape, dtype=dtype)

    def adopt(self, *arrays):
        """The hook a device backend overrides: the kernel inputs as arrays it computes on (None stays None).

        On the CPU the inputs are used as they are (the checks that follow refuse what does not fit), and the
        calling thread's parallel loops take fastconv's thread count (``threads.thread_count``).
        """
        if self._set_default_threads is not None:
            # set on every call: Numba's 'omp' layer changes the same per-thread OpenMP setting behind our back
            self._set_default_threads(thread_count())
        return arrays

    def _adopt_elementwise(self, *arrays):
        """:meth:`adopt` for the loops that name no thread count of their own (activations, losses, pooling): work
        too small to share (inputs under ``_SMALL_LOOP_ELEMENTS``) runs on one thread. The kernels that take a
        thread count (convolution, dense) keep theirs: a small input can still mean much work."""
        arrays = self.adopt(*arrays)
        largest = max((getattr(array, "size", 0) for array in arrays), default=0)  # not an array: refused next
        if self._set_default_threads is not None and largest < _SMALL_LOOP_ELEMENTS:
            self._set_default_threads(1)
        return arrays

    # --- convolution -------------------------------------------------------

    def conv2d_forward(self, x_nhwc, kernel, bias, strides=(1, 1), padding="valid", relu=False):
        """x_nhwc: (N, H, W, C); kernel: (KH, KW, C, F); bias: (F,) or None -> y (N, OH, OW, F) float32, with
        max(y, 0) applied as it is written if ``relu``."""
        x_nhwc, kernel, bias = self.adopt(x_nhwc, kernel, bias)
        strides, _, geometry = checks.check_conv2d_forward(x_nhwc, kernel, bias, strides, padding, self.STRICT)
        filters = kernel.shape[3]
        y = self.empty((x_nhwc.shape[0], geometry.out_h, geometry.out_w, filters))
        bias = self.zeros(filters) if bias is None else bias
        algorithm = algorithms.choose(kernel.shape, strides, (geometry.out_h, geometry.out_w), self.has_winograd)
        if algorithm is not ConvAlgorithm.GEMM and self._winograd(x_nhwc, kernel, bias, y, geometry.pad_top, geometry.pad_left, algorithm, relu):
            return y
        plan = conv_plan(x_nhwc.shape[0], strides, geometry, kernel.shape, relu)
        with single_threaded_blas:
            self.low_level.conv2d_forward(x_nhwc, kernel.reshape(-1, filters), bias, y, plan)
        return y

    def _winograd(self, x_nhwc, kernel, bias, y, pad_top, pad_left, algorithm, relu=False):
        """y = conv3x3(x_nhwc, kernel) + bias, stride 1, by Winograd F(m x m, 3x3), m the tile side of ``algorithm``
        (``ConvAlgorithm.WINOGRAD_2X2`` or ``WINOGRAD_4X4``), then max(y, 0) if ``relu``; shapes as in :meth:`conv2d_forward`.

        False, y unusable, when x_nhwc or kernel holds a NaN or +-inf: the transforms would spread it across a
        tile, so the caller computes such a convolution by the direct method, which keeps the reference's NaN/inf.
        """
        tile_side = algorithm.tile_side
        channels, filters = kernel.shape[2], kernel.shape[3]
        transformed = self.empty((winograd_tiles.positions(tile_side), channels, filters))
        plan = winograd_plan(x_nhwc.shape[0], y.shape[1:3], channels, filters, pad_top, pad_left, tile_side, relu)
        with single_threaded_blas:
            return bool(self.low_level.winograd_kernel_transform(kernel, transformed)) and bool(
                self.low_level.winograd_conv2d_forward(x_nhwc, transformed, bias, y, plan)
            )

    def conv2d_backward_input(self, grad_out, kernel, input_shape, strides=(1, 1), padding="valid"):
        """grad_out: (N, OH, OW, F); kernel: (KH, KW, C, F) -> grad_x (N, H, W, C) float32."""
        grad_out, kernel = self.adopt(grad_out, kernel)
        input_shape, (strides, _, geometry) = checks.check_conv2d_backward_input(
            grad_out, kernel, input_shape, strides, padding, self.STRICT
        )
        grad_x = self.empty(input_shape)
        algorithm = algorithms.choose(kernel.shape, strides, (geometry.out_h, geometry.out_w), self.has_winograd, input_gradient=True)
        if algorithm is not ConvAlgorithm.GEMM:
            # grad_x[i] = sum_r grad_out[i + pad_top - r] kernel[r]: a 3x3 stride-1 convolution of grad_out with the
            # kernel rotated by 180 degrees, its channels swapped, and the top/left padding 2 - pad.
            rotated = np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))
            no_bias = self.zeros(input_shape[3])
            if self._winograd(grad_out, rotated, no_bias, grad_x, 2 - geometry.pad_top, 2 - geometry.pad_left, algorithm):
                return grad_x
        plan = conv_plan(input_shape[0], strides, geometry, kernel.shape)
        with single_threaded_blas:
            self.low_level.conv2d_backward_input(grad_out, kernel.reshape(-1, kernel.shape[3]), grad_x, plan)
        return grad_x

    def conv2d_backward_kernel(self, x_nhwc, grad_out, kernel_shape, strides=(1, 1), padding="valid", with_bias=True):
        """x_nhwc: (N, H, W, C); grad_out: (N, OH, OW, F) -> (grad_kernel (KH, KW, C, F), grad_bias (F,) or None)."""
        x_nhwc, grad_out = self.adopt(x_nhwc, grad_out)
        kernel_shape, (strides, _, geometry) = checks.check_conv2d_backward_kernel(
            x_nhwc, grad_out, kernel_shape, strides, padding, self.STRICT
        )
        filters = kernel_shape[3]
        grad_kernel = self.empty(kernel_shape)
        grad_bias = self.empty(filters if with_bias else 0)
        algorithm = algorithms.choose(kernel_shape, strides, (geometry.out_h, geometry.out_w), self.has_winograd)
        if algorithm is not ConvAlgorithm.GEMM and self._winograd_kernel_gradient(x_nhwc, grad_out, grad_kernel, grad_bias, geometry, algorithm):
            return grad_kernel, grad_bias if with_bias else None
        plan = conv_plan(x_nhwc.shape[0], strides, geometry, kernel_shape)
        with single_threaded_blas:
            self.low_level.conv2d_backward_kernel(x_nhwc, grad_out, grad_kernel.reshape(-1, filters), grad_bias, plan)
        return grad_kernel, grad_bias if with_bias else None

    def _winograd_kernel_gradient(self, x_nhwc, grad_out, grad_kernel, grad_bias, geometry, algorithm):
        """grad_kernel (3, 3, C, F) and grad_bias (F,) or (0,) of a 3x3 stride-1 convolution by Winograd F(m x m, 3x3),
        m the tile side of ``algorithm``; False, both unusable, when x_nhwc or grad_out holds a NaN or +-inf (the
        caller then uses the direct method, which keeps the reference's NaN/inf)."""
        tile_side = algorithm.tile_side
        channels, filters = grad_kernel.shape[2], grad_kernel.shape[3]
        grad_transformed = self.empty((winograd_tiles.positions(tile_side), channels, filters))
        plan = winograd_plan(x_nhwc.shape[0], grad_out.shape[1:3], channels, filters, geometry.pad_top, geometry.pad_left, tile_side)
        with single_threaded_blas:
            if not self.low_level.winograd_conv2d_backward_kernel(x_nhwc, grad_out, grad_transformed, grad_bias, plan):
                return False
            self.low_level.winograd_kernel_transform_backward(grad_transformed, grad_kernel)
        return True

    # --- pooling -----------------------------------------------------------

    def max_pool2d_forward(self, x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
        """x_nhwc: (N, H, W, C) -> (y (N, OH, OW, C) float32, argmax (N, OH, OW, C) int32 = row * W + col)."""
        (x_nhwc,) = self._adopt_elementwise(x_nhwc)
        pool, stride, _, geometry = checks.check_pool2d_forward("max_pool2d_forward", x_nhwc, pool_size, strides, padding, self.STRICT)
        out_shape = (x_nhwc.shape[0], geometry.out_h, geometry.out_w, x_nhwc.shape[3])
        y = self.empty(out_shape)
        argmax = self.empty(out_shape, np.int32)
        self.low_level.max_pool2d_forward(x_nhwc, y, argmax, pool_plan(pool, stride, geometry))
        return y, argmax

    def max_pool2d_backward(self, grad_out, argmax, input_shape, pooled_relu=None, pool_size=None, strides=None, padding="valid"):
        """grad_out, argmax: (N, OH, OW, C) -> grad_x (N, H, W, C) float32; with ``pooled_relu`` (the pool's output,
        its input a ReLU's output), the gradient of that ReLU's input (see the reference). ``pool_size``, ``strides``
        and ``padding``, the forward pass's, let the kernel write each window's pixels directly where windows do not
        overlap instead of scattering; the result is the same."""
        if pooled_relu is None:
            grad_out, argmax = self._adopt_elementwise(grad_out, argmax)
        else:
            grad_out, argmax, pooled_relu = self._adopt_elementwise(grad_out, argmax, pooled_relu)
            checks.check_same_shape("max_pool2d_backward", [("grad_out", grad_out), ("pooled_relu", pooled_relu)], 4, self.STRICT)
        # the kernels count an index outside the plane and never write through it (ValueError after the call)
        input_shape = checks.check_max_pool2d_backward(grad_out, argmax, input_shape, self.STRICT, check_indices=False)
        plan = None
        if pool_size is not None:
            _, (pool, stride, _, geometry) = checks.check_pool2d_backward(
                "max_pool2d_backward", grad_out, input_shape, pool_size, strides, padding, self.STRICT
            )
            plan = pool_plan(pool, stride, geometry)
        grad_x = self.empty(input_shape)
        self.low_level.max_pool2d_backward(grad_out, argmax, pooled_relu, grad_x, plan)
        return grad_x

    def avg_pool2d_forward(self, x_nhwc, pool_size=(2, 2), strides=None, padding="valid"):
        """x_nhwc: (N, H, W, C) -> y (N, OH, OW, C) float32, the mean over real (unpadded) inputs."""
        (x_nhwc,) = self._adopt_elementwise(x_nhwc)
        pool, stride, _, geometry = checks.check_pool2d_forward("avg_pool2d_forward", x_nhwc, pool_size, strides, padding, self.STRICT)
        y = self.empty((x_nhwc.shape[0], geometry.out_h, geometry.out_w, x_nhwc.shape[3]))
        self.low_level.avg_pool2d_forward(x_nhwc, y, pool_plan(pool, stride, geometry))
        return y

    def avg_pool2d_backward(self, grad_out, input_shape, pool_size=(2, 2), strides=None, padding="valid"):
        """grad_out: (N, OH, OW, C) -> grad_x (N, H, W, C) float32."""
        (grad_out,) = self._adopt_elementwise(grad_out)
        input_shape, (pool, stride, _, geometry) = checks.check_pool2d_backward(
            "avg_pool2d_backward", grad_out, input_shape, pool_size, strides, padding, self.STRICT
        )
        grad_x = self.empty(input_shape)
        self.low_level.avg_pool2d_backward(grad_out, grad_x, pool_plan(pool, stride, geometry))
        return grad_x

    # --- dense -------------------------------------------------------------

    def dense_forward(self, x, kernel, bias):
        """x: (N, D_in); kernel: (D_in, D_out); bias: (D_out,) or None -> y (N, D_out) float32."""
        x, kernel, bias = self.adopt(x, kernel, bias)
        checks.check_dense_forward(x, kernel, bias, self.STRICT)
        y = self.empty((x.shape[0], kernel.shape[1]))
        bias = self.zeros(kernel.shape[1]) if bias is None else bias
        with single_threaded_blas:
            self.low_level.dense_forward(x, kernel, bias, y, dense_threads(x.shape[0], kernel.shape))
        return y

    def dense_backward(self, grad_out, x, kernel, with_bias=True):
        """-> (grad_x (N, D_in), grad_kernel (D_in, D_out), grad_bias (D_out,) or None), float32."""
        grad_out, x, kernel = self.adopt(grad_out, x, kernel)
        checks.check_dense_backward(grad_out, x, kernel, self.STRICT)
        grad_x = self.empty(x.shape)
        grad_kernel = self.empty(kernel.shape)
        grad_bias = self.empty(kernel.shape[1] if with_bias else 0)
        with single_threaded_blas:
            self.low_level.dense_backward(grad_out, x, kernel, grad_x, grad_kernel, grad_bias, dense_threads(x.shape[0], kernel.shape))
        return grad_x, grad_kernel, grad_bias if with_bias else None

    # --- activations -------------------------------------------------------

    def relu_forward(self, x):
        """max(x, 0), any shape, float32."""
        (x,) = self._adopt_elementwise(x)
        checks.check_array("relu_forward", "x", x, None, self.STRICT)
        y = self.empty(x.shape)
        self.low_level.relu_forward(x.reshape(-1), y.reshape(-1))
        return y

    def relu_backward(self, grad_out, y):
        """grad_out where the forward output y was positive, else 0."""
        grad_out, y = self._adopt_elementwise(grad_out, y)
        checks.check_same_shape("relu_backward", [("grad_out", grad_out), ("y", y)], None, self.STRICT)
        grad_x = self.empty(grad_out.shape)
        self.low_level.relu_backward(grad_out.reshape(-1), y.reshape(-1), grad_x.reshape(-1))
        return grad_x

    def sigmoid_forward(self, x):
        """1 / (1 + exp(-x)), any shape, float32."""
        (x,) = self._adopt_elementwise(x)
        checks.check_array("sigmoid_forward", "x", x, None, self.STRICT)
        y = self.empty(x.shape)
        self.low_level.sigmoid_forward(x.reshape(-1), y.reshape(-1))
        return y

    def sigmoid_backward(self, grad_out, y):
        """grad_out * y * (1 - y), y being the forward output."""
        grad_out, y = self._adopt_elementwise(grad_out, y)
        checks.check_same_shape("sigmoid_backward", [("grad_out", grad_out), ("y", y)], None, self.STRICT)
        grad_x = self.empty(grad_out.shape)
        self.low_level.sigmoid_backward(grad_out.reshape(-1), y.reshape(-1), grad_x.reshape(-1))
        return grad_x

    def softmax_forward(self, x):
        """Row-wise softmax of x: (N, K), float32."""
        (x,) = self._adopt_elementwise(x)
        checks.check_array("softmax_forward", "x", x, 2, self.STRICT)
        y = self.empty(x.shape)
        self.low_level.softmax_forward(x, y)
        return y

    def softmax_backward(self, grad_out, y):
        """y * (grad_out - sum(grad_out * y)) row-wise; grad_out, y: (N, K)."""
        grad_out, y = self._adopt_elementwise(grad_out, y)
        checks.check_same_shape("softmax_backward", [("grad_out", grad_out), ("y", y)], 2, self.STRICT)
        grad_x = self.empty(grad_out.shape)
        self.low_level.softmax_backward(grad_out, y, grad_x)
        return grad_x

    # --- element-wise (NumPy) ----------------------------------------------

    multiply = staticmethod(host_ops.multiply)

    # --- optimizer updates, in place (formulas: fastconv.backends.host_ops) ---------

    def sgd_update(self, weight, grad, velocity, learning_rate, momentum, nesterov):
        """weight, grad: any shape, float32; velocity: the same shape, or (0,) without momentum. Changes weight and
        velocity in place."""
        if momentum:
            weight, grad, velocity = self._adopt_in_place("sgd_update", weight, grad, [("velocity", velocity)])
        else:  # no state: velocity is (0,) and unused
            weight, grad = self._adopt_in_place("sgd_update", weight, grad, [])
        self.low_level.sgd_update(_flat(grad), _flat(weight), _flat(velocity), learning_rate, momentum, nesterov)

    def rmsprop_update(self, weight, grad, mean_square, learning_rate, rho, epsilon):
        """weight, grad, mean_square: one shape, float32; changes weight and mean_square in place."""
        weight, grad, mean_square = self._adopt_in_place("rmsprop_update", weight, grad, [("mean_square", mean_square)])
        self.low_level.rmsprop_update(_flat(grad), _flat(weight), _flat(mean_square), learning_rate, rho, epsilon)

    def adam_update(self, weight, grad, first, second, step_size, beta_1, beta_2, epsilon):
        """weight, grad, first, second: one shape, float32; changes weight, first and second in place."""
        weight, grad, first, second = self._adopt_in_place("adam_update", weight, grad, [("first", first), ("second", second)])
        self.low_level.adam_update(_flat(grad), _flat(weight), _flat(first), _flat(second), step_size, beta_1, beta_2, epsilon)

    def _adopt_in_place(self, op, weight, grad, state):
        """``(weight, grad, *state arrays)``, ``state`` being (name, array) pairs, checked for an update in place: one shape, float32,
        C-contiguous, the weight and its state writable and already this backend's arrays (adopting a copy would
        update the copy and lose the step)."""
        named = [("weight", weight), ("grad", grad), *state]
        arrays = self._adopt_elementwise(*(array for _, array in named))
        for (name, array), adopted in zip(named, arrays):
            if name != "grad" and adopted is not array:
                raise ValueError(f"{op}: {name} must be an array of the {self.name} backend, got {type(array).__name__}")
        checks.check_same_shape(op, named, None, self.STRICT)
        for name, array in named:
            if name != "grad" and not getattr(getattr(array, "flags", None), "writeable", True):
                raise ValueError(f"{op}: {name} is read-only; an update changes it in place")
        return arrays

    # --- fused losses ------------------------------------------------------

    def softmax_cross_entropy(self, logits, targets):
        """logits, targets: (N, K) -> (mean loss float, grad_logits (N, K) float32)."""
        logits, targets = self._adopt_elementwise(logits, targets)
        checks.check_loss_inputs("softmax_cross_entropy", logits, targets, self.STRICT)
        grad = self.empty(logits.shape)
        return float(self.low_level.softmax_cross_entropy(logits, targets, grad)), grad

    def sigmoid_binary_cross_entropy(self, logits, targets):
        """logits, targets: (N, K) -> (mean loss float, grad_logits (N, K) float32)."""
        logits, targets = self._adopt_elementwise(logits, targets)
        checks.check_loss_inputs("sigmoid_binary_cross_entropy", logits, targets, self.STRICT)
        grad = self.empty(logits.shape)
        return float(self.low_level.sigmoid_binary_cross_entropy(logits, targets, grad)), grad
