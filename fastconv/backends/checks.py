"""Argument checks shared by every backend.

Each ``check_*`` function validates the arguments of one kernel family and
returns what the kernel needs (normalised strides, padding, geometry). The
messages name the argument and quote the shapes, so that a user sees
``conv2d_forward: x has 3 channels but the kernel expects 1 (x (64, 28, 28, 3),
kernel (3, 3, 1, 32))`` rather than a broadcasting error or a crash.

``strict=True`` is the compiled backends' contract: float32, C-contiguous
arrays only (their code reads raw memory). The reference backend calls with
``strict=False`` and accepts any real floating array.
"""

import numpy as np

from fastconv.shapes import normalize_pair, normalize_padding, window_geometry


def is_device_array(array):
    """A GPU array: Numba's device arrays (and the simulator's stand-ins), which copy back with ``copy_to_host``."""
    return hasattr(array, "copy_to_host") and not isinstance(array, np.ndarray)


def host_array(array):
    """``array`` as a NumPy array: device arrays are copied back, anything else is returned as it is."""
    return array.copy_to_host() if is_device_array(array) else array


_REAL_KINDS = "fiub"  # floating, signed and unsigned integers, booleans


def as_real_float32(data, what):
    """``data`` (an array or nested lists) as a C-contiguous float32 array; TypeError naming ``what`` for complex
    numbers, strings, objects or dates, which a cast would silently change (drop the imaginary part, parse text)."""
    array = np.asarray(data)
    if array.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{what} of shape {array.shape} has dtype {array.dtype}; fastconv takes real numbers (floats, ints or bools)")
    return np.ascontiguousarray(array, dtype=np.float32)


def _is_c_contiguous(array):
    return array.flags.c_contiguous if isinstance(array, np.ndarray) else array.is_c_contiguous()


def check_array(op, name, array, rank, strict):
    """Check one array argument: an ndarray (or device array) of the given rank (None: any); float32, contiguous if strict."""
    if not isinstance(array, np.ndarray) and not is_device_array(array):
        raise TypeError(f"{op}: {name} must be a numpy array, got {type(array).__name__}")
    if rank is not None and array.ndim != rank:
        raise ValueError(f"{op}: {name} must have rank {rank}, got shape {array.shape}")
    if strict:
        if array.dtype != np.float32:
            raise TypeError(f"{op}: {name} must be float32, got {array.dtype} (shape {array.shape})")
        if not _is_c_contiguous(array):
            raise ValueError(f"{op}: {name} must be C-contiguous (shape {array.shape}); use np.ascontiguousarray")
    elif not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be a floating array, got {array.dtype} (shape {array.shape})")
    if array.size == 0:
        raise ValueError(f"{op}: {name} is empty (shape {array.shape})")


def check_shape(op, name, shape, rank):
    """Check a shape argument (a tuple of ``rank`` positive ints); return it as a tuple."""
    shape = tuple(shape)
    if len(shape) != rank or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"{op}: {name} must be {rank} positive ints, got {shape}")
    return tuple(int(d) for d in shape)


def _conv_geometry(op, input_shape, kernel_shape, strides, padding):
    strides = normalize_pair(strides, "strides")
    padding = normalize_padding(padding)
    try:
        geometry = window_geometry(input_shape[1:3], kernel_shape[:2], strides, padding)
    except ValueError as error:
        raise ValueError(f"{op}: kernel {kernel_shape} does not fit input {input_shape}: {error}") from None
    return strides, padding, geometry


def check_conv2d_forward(x_nhwc, kernel, bias, strides, padding, strict):
    """``x_nhwc`` (N, H, W, C), ``kernel`` (KH, KW, C, F), ``bias`` (F,) or None."""
    op = "conv2d_forward"
    check_array(op, "x", x_nhwc, 4, strict)
    check_array(op, "kernel", kernel, 4, strict)
    _check_channels(op, x_nhwc.shape, kernel.shape)
    if bias is not None:
        check_array(op, "bias", bias, 1, strict)
        if bias.shape[0] != kernel.shape[3]:
            raise ValueError(f"{op}: bias {bias.shape} does not match the kernel's {kernel.shape[3]} filters (kernel {kernel.shape})")
    return _conv_geometry(op, x_nhwc.shape, kernel.shape, strides, padding)


def check_conv2d_backward_input(grad_out, kernel, input_shape, strides, padding, strict):
    """``grad_out`` (N, OH, OW, F), ``kernel`` (KH, KW, C, F), ``input_shape`` (N, H, W, C)."""
    op = "conv2d_backward_input"
    check_array(op, "grad_out", grad_out, 4, strict)
    check_array(op, "kernel", kernel, 4, strict)
    input_shape = check_shape(op, "input_shape", input_shape, 4)
    _check_channels(op, input_shape, kernel.shape)
    geometry = _conv_geometry(op, input_shape, kernel.shape, strides, padding)
    _check_grad_out(op, grad_out.shape, input_shape[0], geometry[2], kernel.shape[3])
    return input_shape, geometry


def check_conv2d_backward_kernel(x_nhwc, grad_out, kernel_shape, strides, padding, strict):
    """``x_nhwc`` (N, H, W, C), ``grad_out`` (N, OH, OW, F), ``kernel_shape`` (KH, KW, C, F)."""
    op = "conv2d_backward_kernel"
    check_array(op, "x", x_nhwc, 4, strict)
    check_array(op, "grad_out", grad_out, 4, strict)
    kernel_shape = check_shape(op, "kernel_shape", kernel_shape, 4)
    _check_channels(op, x_nhwc.shape, kernel_shape)
    geometry = _conv_geometry(op, x_nhwc.shape, kernel_shape, strides, padding)
    _check_grad_out(op, grad_out.shape, x_nhwc.shape[0], geometry[2], kernel_shape[3])
    return kernel_shape, geometry


def _check_channels(op, input_shape, kernel_shape):
    if input_shape[3] != kernel_shape[2]:
        raise ValueError(
            f"{op}: x has {input_shape[3]} channels but the kernel expects {kernel_shape[2]} "
            f"(x {tuple(input_shape)}, kernel {tuple(kernel_shape)})"
        )


def _check_grad_out(op, grad_shape, batch, geometry, channels):
    expected = (batch, geometry.out_h, geometry.out_w, channels)
    if tuple(grad_shape) != expected:
        raise ValueError(f"{op}: grad_out has shape {tuple(grad_shape)}, expected {expected}")


def check_pool2d_forward(op, x_nhwc, pool_size, strides, padding, strict):
    """``x_nhwc`` (N, H, W, C); ``strides`` None means ``pool_size`` (Keras' default)."""
    check_array(op, "x", x_nhwc, 4, strict)
    return _pool_geometry(op, x_nhwc.shape, pool_size, strides, padding)


def check_pool2d_backward(op, grad_out, input_shape, pool_size, strides, padding, strict):
    """``grad_out`` (N, OH, OW, C) for an input of ``input_shape`` (N, H, W, C)."""
    check_array(op, "grad_out", grad_out, 4, strict)
    input_shape = check_shape(op, "input_shape", input_shape, 4)
    pool_size, strides, padding, geometry = _pool_geometry(op, input_shape, pool_size, strides, padding)
    _check_grad_out(op, grad_out.shape, input_shape[0], geometry, input_shape[3])
    return input_shape, (pool_size, strides, padding, geometry)


def check_max_pool2d_backward(grad_out, argmax, input_shape, strict, check_indices=True):
    """``argmax`` (N, OH, OW, C) int32 from the forward pass, same shape as ``grad_out``; every index inside the
    input plane unless ``check_indices`` is False (the compiled kernels count such an index in the same pass as
    they use it, and refuse the call)."""
    op = "max_pool2d_backward"
    check_array(op, "grad_out", grad_out, 4, strict)
    input_shape = check_shape(op, "input_shape", input_shape, 4)
    if getattr(argmax, "dtype", None) != np.int32 or getattr(argmax, "shape", None) != grad_out.shape:
        raise ValueError(
            f"max_pool2d_backward: argmax must be the int32 array the forward pass returned, "
            f"shaped like grad_out {grad_out.shape}; got {getattr(argmax, 'dtype', type(argmax))} "
            f"{getattr(argmax, 'shape', '')}"
        )
    if strict and not _is_c_contiguous(argmax):
        raise ValueError(f"{op}: argmax must be C-contiguous")
    if grad_out.shape[0] != input_shape[0] or grad_out.shape[3] != input_shape[3]:
        raise ValueError(f"{op}: grad_out {grad_out.shape} does not belong to input {input_shape}")
    # A scatter that trusted argmax would write out of bounds through a corrupt index.
    plane = input_shape[1] * input_shape[2]
    if check_indices and not is_device_array(argmax) and argmax.size and (argmax.min() < 0 or argmax.max() >= plane):
        raise ValueError(f"{op}: argmax holds indices outside the {input_shape[1]}x{input_shape[2]} input plane")
    return input_shape


def _pool_geometry(op, input_shape, pool_size, strides, padding):
    pool_size = normalize_pair(pool_size, "pool_size")
    strides = pool_size if strides is None else normalize_pair(strides, "strides")
    padding = normalize_padding(padding)
    try:
        geometry = window_geometry(input_shape[1:3], pool_size, strides, padding)
    except ValueError as error:
        raise ValueError(f"{op}: pool {pool_size} does not fit input {tuple(input_shape)}: {error}") from None
    return pool_size, strides, padding, geometry


def check_dense_forward(x, kernel, bias, strict):
    """``x`` (N, D_in), ``kernel`` (D_in, D_out), ``bias`` (D_out,) or None."""
    op = "dense_forward"
    check_array(op, "x", x, 2, strict)
    check_array(op, "kernel", kernel, 2, strict)
    if x.shape[1] != kernel.shape[0]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but the kernel expects {kernel.shape[0]} (x {x.shape}, kernel {kernel.shape})")
    if bias is not None:
        check_array(op, "bias", bias, 1, strict)
        if bias.shape[0] != kernel.shape[1]:
            raise ValueError(f"{op}: bias {bias.shape} does not match kernel {kernel.shape}")


def check_dense_backward(grad_out, x, kernel, strict):
    """``grad_out`` (N, D_out), ``x`` (N, D_in), ``kernel`` (D_in, D_out)."""
    op = "dense_backward"
    check_array(op, "grad_out", grad_out, 2, strict)
    check_array(op, "x", x, 2, strict)
    check_array(op, "kernel", kernel, 2, strict)
    if x.shape[1] != kernel.shape[0] or grad_out.shape != (x.shape[0], kernel.shape[1]):
        raise ValueError(f"{op}: shapes do not agree: grad_out {grad_out.shape}, x {x.shape}, kernel {kernel.shape}")


def check_same_shape(op, names_arrays, rank, strict):
    """Check arrays that must share one shape (elementwise kernels); rank None means any rank."""
    first_name, first = names_arrays[0]
    for name, array in names_arrays:
        check_array(op, name, array, rank, strict)
        if array.shape != first.shape:
            raise ValueError(f"{op}: {name} {array.shape} and {first_name} {first.shape} must have the same shape")


def check_loss_inputs(op, logits, targets, strict):
    """``logits`` and ``targets`` (N, K). NaN or infinity gives a NaN or infinite loss, as in the reference:
    the training loop, not the kernel, decides what a non-finite loss means."""
    check_same_shape(op, [("logits", logits), ("targets", targets)], 2, strict)
