"""Bad input raises a clear exception naming the shapes, on every backend; never a crash or a wrong answer."""

import numpy as np
import pytest

from fastconv.backends import load_backend

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
KERNEL = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((X[0], KERNEL, None), ValueError, r"x must have rank 4, got shape \(8, 8, 3\)"),
        ((X, np.ascontiguousarray(KERNEL[:, :, :1]), None), ValueError, r"x has 3 channels but the kernel expects 1 \(x \(2, 8, 8, 3\), kernel \(3, 3, 1, 4\)\)"),
        ((np.ascontiguousarray(X[:, :2, :2]), KERNEL, None), ValueError, r"kernel \(3, 3, 3, 4\) does not fit input \(2, 2, 2, 3\)"),
        ((X, KERNEL, np.ones(5, np.float32)), ValueError, r"bias \(5,\) does not match the kernel's 4 filters"),
        ((X.tolist(), KERNEL, None), TypeError, "x must be a numpy array, got list"),
        ((X[:0], KERNEL, None), ValueError, r"x is empty \(shape \(0, 8, 8, 3\)\)"),
    ],
    ids=["rank", "channels", "kernel-too-large", "bias", "list", "empty"],
)
def test_conv2d_forward_rejects(any_backend, args, error, message):
    with pytest.raises(error, match=message):
        any_backend.conv2d_forward(*args)


def test_compiled_backends_want_float32_contiguous(backend):
    with pytest.raises(TypeError, match=r"x must be float32, got float64 \(shape \(2, 8, 8, 3\)\)"):
        backend.conv2d_forward(X.astype(np.float64), KERNEL, None)
    with pytest.raises(ValueError, match=r"x must be C-contiguous \(shape \(2, 8, 4, 3\)\)"):
        backend.conv2d_forward(X[:, :, ::2], KERNEL, None)
    with pytest.raises(ValueError, match="C-contiguous"):
        backend.dense_forward(np.ones((3, 4), np.float32).T, np.ones((3, 2), np.float32), None)


def test_reference_accepts_float64_and_views():
    reference = load_backend("reference")
    assert reference.conv2d_forward(X[:, :, ::2].astype(np.float64), KERNEL, None).shape == (2, 6, 2, 4)


def test_backward_rejects_mismatched_gradients(any_backend):
    with pytest.raises(ValueError, match=r"grad_out has shape \(2, 5, 5, 4\), expected \(2, 6, 6, 4\)"):
        any_backend.conv2d_backward_input(np.ones((2, 5, 5, 4), np.float32), KERNEL, X.shape)
    with pytest.raises(ValueError, match=r"grad_out has shape \(2, 6, 6, 3\), expected \(2, 6, 6, 4\)"):
        any_backend.conv2d_backward_kernel(X, np.ones((2, 6, 6, 3), np.float32), KERNEL.shape)
    with pytest.raises(ValueError, match=r"input_shape must be 4 positive ints"):
        any_backend.conv2d_backward_input(np.ones((2, 6, 6, 4), np.float32), KERNEL, (2, 8, 8))


def test_pooling_rejects(any_backend):
    with pytest.raises(ValueError, match=r"pool \(3, 3\) does not fit input \(2, 2, 2, 3\)"):
        any_backend.max_pool2d_forward(np.ascontiguousarray(X[:, :2, :2]), (3, 3))
    with pytest.raises(ValueError, match="pool_size must be positive, got 0"):
        any_backend.avg_pool2d_forward(X, 0)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 'full'"):
        any_backend.max_pool2d_forward(X, 2, None, "full")
    y, argmax = any_backend.max_pool2d_forward(X, 2)
    corrupt = argmax.copy()
    corrupt[0, 0, 0, 0] = 64  # one past the 8x8 plane
    with pytest.raises(ValueError, match="outside the 8x8 input plane"):
        any_backend.max_pool2d_backward(np.ones_like(y), corrupt, X.shape)
    corrupt[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="outside the 8x8 input plane"):
        any_backend.max_pool2d_backward(np.ones_like(y), corrupt, X.shape)


def test_dense_rejects(any_backend):
    with pytest.raises(ValueError, match=r"x has 4 features but the kernel expects 3 \(x \(2, 4\), kernel \(3, 5\)\)"):
        any_backend.dense_forward(np.ones((2, 4), np.float32), np.ones((3, 5), np.float32), None)


def test_losses_reject_mismatch(any_backend):
    """(NaN in a loss's inputs is not refused by the kernel: it gives a NaN loss, as the reference
    does, and fit stops on it; tests/test_nan_and_inf.py and tests/test_fit.py check both.)"""
    logits = np.zeros((2, 3), np.float32) + 0.5
    targets = np.eye(3, dtype=np.float32)[[0, 2]]
    with pytest.raises(ValueError, match=r"targets \(2, 2\) and logits \(2, 3\) must have the same shape"):
        any_backend.softmax_cross_entropy(logits, np.ascontiguousarray(targets[:, :2]))


def test_elementwise_shape_mismatch(any_backend):
    with pytest.raises(ValueError, match=r"y \(3,\) and grad_out \(2,\) must have the same shape"):
        any_backend.relu_backward(np.ones(2, np.float32), np.ones(3, np.float32))


def test_compiled_cython_kernels_check_extents_before_releasing_the_gil():
    """The raw compiled entry points refuse inconsistent buffers instead of reading out of range."""
    from fastconv._ext import conv, dense, pool
    from fastconv.backends.plans import ConvPlan, PoolPlan

    y = np.empty((2, 6, 6, 4), np.float32)
    plan = ConvPlan(stride_h=1, stride_w=1, pad_top=0, pad_left=0, kernel_h=3, kernel_w=3, threads=1, block_pixels=16, block_samples=1)
    with pytest.raises(ValueError, match="kernel matrix"):
        conv.conv2d_forward(X, KERNEL.reshape(-1, 4)[:10], np.zeros(4, np.float32), y, plan)
    with pytest.raises(ValueError, match="does not match"):
        conv.conv2d_forward(X, KERNEL.reshape(-1, 4), np.zeros(4, np.float32), y[:1], plan)
    with pytest.raises(ValueError, match="must be positive"):
        conv.conv2d_forward(X, KERNEL.reshape(-1, 4), np.zeros(4, np.float32), y, plan._replace(threads=0))
    with pytest.raises(ValueError, match="must be positive"):
        pool.avg_pool2d_forward(X, np.empty((2, 4, 4, 3), np.float32), PoolPlan(2, 0, 2, 2, 0, 0))
    with pytest.raises(ValueError, match="do not agree"):
        dense.dense_forward(np.ones((2, 4), np.float32), np.ones((3, 5), np.float32), np.ones(5, np.float32), np.empty((2, 5), np.float32), 1)
    argmax = np.full((2, 4, 4, 3), 1000, np.int32)
    for window in (None, PoolPlan(2, 2, 2, 2, 0, 0)):  # scattered, and written window by window
        with pytest.raises(ValueError, match="96 indices outside the 8x8 input plane"):
            pool.max_pool2d_backward(np.ones((2, 4, 4, 3), np.float32), argmax, None, np.empty(X.shape, np.float32), window)


def test_unknown_backend():
    import fastconv

    with pytest.raises(ValueError, match="unknown fastconv backend 'tensorflow'; choose one of cython, numba, reference"):
        fastconv.set_backend("tensorflow")
