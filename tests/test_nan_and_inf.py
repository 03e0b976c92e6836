"""NaN and ±inf through every kernel of every backend, forward and backward, as the float64 reference has them."""

import numpy as np
import pytest

from conftest import CUDA_SIMULATOR, RTOL, assert_matches, of_magnitudes
from fastconv.backends import checks

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN arithmetic in the reference, on purpose
# Under the CUDA simulator every GPU thread is a Python thread: one seed and small shapes there.
SEEDS = [0] if CUDA_SIMULATOR else [0, 1, 2]
# (x, kernel): a general patch, and a short one (KH*KW*C <= 32, filters in eights: the Cython kernels' own product)
CONV_SHAPES = [((1, 4, 4, 2), (3, 3, 2, 2))] if CUDA_SIMULATOR else [((2, 7, 6, 3), (3, 3, 3, 4)), ((2, 7, 6, 3), (3, 3, 3, 16))]


def sprinkle(rng, array, count=2):
    """A copy of ``array`` with ``count`` NaN, ``count`` +inf and ``count`` -inf at random places."""
    array = array.copy()
    flat = array.reshape(-1)
    places = rng.choice(flat.size, size=min(3 * count, flat.size), replace=False)
    for value, chunk in zip((np.nan, np.inf, -np.inf), np.array_split(places, 3)):
        flat[chunk] = value
    return array


def finite_part(array):
    return np.where(np.isfinite(array), array, 0).astype(array.dtype)


def assert_same_values(actual, expected, what, magnitude=None):
    """NaN, +inf and -inf at the same places as the reference; the finite rest within RTOL."""
    actual = np.asarray(checks.host_array(actual), dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    for label, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        wrong = np.flatnonzero(mask(actual) != mask(expected))
        assert wrong.size == 0, f"{what}: {label} differs from the reference at flat positions {wrong[:8]}"
    finite = np.isfinite(expected)
    if finite.any():
        scale = None if magnitude is None else np.asarray(magnitude)[finite]
        assert_matches(actual[finite], expected[finite], what, RTOL, scale)


def _arrays(rng, *shapes):
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _conv(rng, poisoned, shapes):
    x_shape, kernel_shape = shapes
    x, kernel, bias = _arrays(rng, x_shape, kernel_shape, (kernel_shape[3],))
    grad_out = rng.standard_normal((*x_shape[:3], kernel_shape[3])).astype(np.float32)
    args = {"x": x, "kernel": kernel, "bias": bias, "grad_out": grad_out}
    args[poisoned] = sprinkle(rng, args[poisoned], 1)
    return args


CONV_CASES = ["x", "kernel", "bias", "grad_out"]


@pytest.mark.parametrize("shapes", CONV_SHAPES, ids=lambda shapes: f"kernel{shapes[1]}")
@pytest.mark.parametrize("poisoned", CONV_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_carries_nan_and_inf_as_the_reference(backend, reference, conv_algorithm, poisoned, seed, shapes):
    a = _conv(np.random.default_rng(seed), poisoned, shapes)
    x, kernel, bias, grad_out = a["x"], a["kernel"], a["bias"], a["grad_out"]
    finite = [finite_part(v) for v in (x, kernel, bias, grad_out)]
    forward = (x, kernel, bias, (1, 1), "same")
    assert_same_values(backend.conv2d_forward(*forward), reference.conv2d_forward(*forward), f"conv forward ({poisoned})",
                       of_magnitudes(reference.conv2d_forward, finite[0], finite[1], finite[2], (1, 1), "same"))  # fmt: skip
    # the fused ReLU epilogue (each backend's own, the short-patch product's among them): NaN stays NaN, -inf gives 0
    assert_same_values(backend.conv2d_forward(*forward, True), reference.conv2d_forward(*forward, True), f"conv forward + relu ({poisoned})",
                       of_magnitudes(reference.conv2d_forward, finite[0], finite[1], finite[2], (1, 1), "same"))  # fmt: skip
    inputs = (grad_out, kernel, x.shape, (1, 1), "same")
    assert_same_values(backend.conv2d_backward_input(*inputs), reference.conv2d_backward_input(*inputs), f"conv grad_x ({poisoned})",
                       of_magnitudes(reference.conv2d_backward_input, finite[3], finite[1], x.shape, (1, 1), "same"))  # fmt: skip
    kernel_args = (x, grad_out, kernel.shape, (1, 1), "same")
    got = backend.conv2d_backward_kernel(*kernel_args)
    expected = reference.conv2d_backward_kernel(*kernel_args)
    magnitudes = of_magnitudes(reference.conv2d_backward_kernel, finite[0], finite[3], kernel.shape, (1, 1), "same")
    for g, e, m, label in zip(got, expected, magnitudes, ("grad_kernel", "grad_bias")):
        assert_same_values(g, e, f"conv {label} ({poisoned})", m)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_carries_nan_and_inf_as_the_reference(backend, reference, seed, padding):
    rng = np.random.default_rng(seed)
    x = sprinkle(rng, rng.standard_normal((2, 4, 5, 2) if CUDA_SIMULATOR else (2, 5, 6, 3)).astype(np.float32), 3)
    x[0, :2, :2, 0] = np.nan  # a window of NaN alone
    x[1, :2, :2, 1] = -np.inf  # a window of -inf alone: its first pixel wins, as np.argmax says
    y, argmax = backend.max_pool2d_forward(x, (2, 2), None, padding)
    expected_y, expected_argmax = reference.max_pool2d_forward(x, (2, 2), None, padding)
    assert_same_values(y, expected_y, "max pool forward")
    np.testing.assert_array_equal(checks.host_array(argmax), expected_argmax, err_msg="max pool argmax (first NaN, else first max)")
    grad_out = sprinkle(rng, rng.standard_normal(y.shape).astype(np.float32), 1)
    assert_same_values(backend.max_pool2d_backward(grad_out, argmax, x.shape),
                       reference.max_pool2d_backward(grad_out, expected_argmax, x.shape), "max pool backward")  # fmt: skip
    assert_same_values(backend.avg_pool2d_forward(x, (2, 3), (1, 2), padding), reference.avg_pool2d_forward(x, (2, 3), (1, 2), padding), "avg pool forward")
    grad_avg = sprinkle(rng, rng.standard_normal(reference.avg_pool2d_forward(x, (2, 3), (1, 2), padding).shape).astype(np.float32), 1)
    assert_same_values(backend.avg_pool2d_backward(grad_avg, x.shape, (2, 3), (1, 2), padding),
                       reference.avg_pool2d_backward(grad_avg, x.shape, (2, 3), (1, 2), padding), "avg pool backward")  # fmt: skip


@pytest.mark.parametrize("poisoned", ["x", "kernel", "grad_out"])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_dense_carries_nan_and_inf_as_the_reference(backend, reference, poisoned, seed):
    rng = np.random.default_rng(seed)
    args = dict(zip(("x", "kernel", "bias", "grad_out"), _arrays(rng, (5, 7), (7, 4), (4,), (5, 4))))
    args[poisoned] = sprinkle(rng, args[poisoned], 1)
    x, kernel, bias, grad_out = args["x"], args["kernel"], args["bias"], args["grad_out"]
    assert_same_values(backend.dense_forward(x, kernel, bias), reference.dense_forward(x, kernel, bias), f"dense forward ({poisoned})",
                       of_magnitudes(reference.dense_forward, finite_part(x), finite_part(kernel), bias))  # fmt: skip
    got = backend.dense_backward(grad_out, x, kernel)
    expected = reference.dense_backward(grad_out, x, kernel)
    magnitudes = of_magnitudes(reference.dense_backward, finite_part(grad_out), finite_part(x), finite_part(kernel))
    for g, e, m, label in zip(got, expected, magnitudes, ("grad_x", "grad_kernel", "grad_bias")):
        assert_same_values(g, e, f"dense {label} ({poisoned})", m)


@pytest.mark.parametrize("seed", SEEDS)
def test_activations_carry_nan_and_inf_as_the_reference(backend, reference, seed):
    rng = np.random.default_rng(seed)
    x = sprinkle(rng, rng.standard_normal((6, 5)).astype(np.float32), 2)
    grad_out = sprinkle(rng, rng.standard_normal((6, 5)).astype(np.float32), 1)
    for name in ("relu", "sigmoid", "softmax"):
        forward, backward = getattr(backend, f"{name}_forward"), getattr(backend, f"{name}_backward")
        y = forward(x)
        expected_y = getattr(reference, f"{name}_forward")(x)
        assert_same_values(y, expected_y, f"{name} forward")
        y_host = np.ascontiguousarray(checks.host_array(y))
        assert_same_values(backward(grad_out, y_host), getattr(reference, f"{name}_backward")(grad_out, y_host), f"{name} backward")
    assert np.isnan(checks.host_array(backend.relu_forward(np.array([np.nan], np.float32)))[0]), "relu(NaN) must be NaN"


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_losses_carry_nan_and_inf_as_the_reference(backend, reference, seed):
    rng = np.random.default_rng(seed)
    logits = sprinkle(rng, rng.standard_normal((6, 4)).astype(np.float32), 1)
    one_hot = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]
    probabilities = rng.random((6, 4)).astype(np.float32)
    for name, targets in (("softmax_cross_entropy", one_hot), ("sigmoid_binary_cross_entropy", probabilities)):
        loss, grad = getattr(backend, name)(logits, targets)
        expected_loss, expected_grad = getattr(reference, name)(logits, targets)
        assert np.isnan(loss) == np.isnan(expected_loss) and np.isinf(loss) == np.isinf(expected_loss), f"{name}: loss {loss} vs {expected_loss}"
        assert_same_values(grad, expected_grad, f"{name} gradient")
