"""Every kernel of every compiled backend against the float64 reference.

Shapes, strides, paddings and seeds are drawn by hypothesis; the data are
standard-normal float32 (never zeros). Each kernel's result must lie within
1e-5 of the reference, relative to the reference's largest value.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import CUDA_SIMULATOR, HYPOTHESIS_EXAMPLES, MAX_SIZES, assert_matches, of_magnitudes, random_array
from fastconv.backends import compiled

examples = settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
paddings = st.sampled_from(["valid", "same"])
seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_cases(draw):
    kernel_h, kernel_w = draw(st.integers(1, MAX_SIZES["kernel"])), draw(st.integers(1, MAX_SIZES["kernel"]))
    padding = draw(paddings)
    low_h, low_w = (1, 1) if padding == "same" else (kernel_h, kernel_w)
    spatial, channels = MAX_SIZES["spatial"], MAX_SIZES["channels"]
    x_shape = (draw(st.integers(1, MAX_SIZES["batch"])), draw(st.integers(low_h, spatial)), draw(st.integers(low_w, spatial)), draw(st.integers(1, channels)))
    kernel_shape = (kernel_h, kernel_w, x_shape[3], draw(st.integers(1, MAX_SIZES["filters"])))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return x_shape, kernel_shape, strides, padding, draw(st.booleans()), draw(seeds)


@pytest.fixture(params=["default blocks"] if CUDA_SIMULATOR else ["default blocks", "one-row blocks, one thread", "small blocks, three threads"])
def chunking(request, monkeypatch):
    """Run the convolution tests with the default blocking and with many small blocks, serial and threaded."""
    if request.param != "default blocks":
        monkeypatch.setattr(compiled, "_PATCH_BLOCK_BYTES", 1)
        monkeypatch.setattr(compiled, "_MIN_BLOCK_ROWS", 1 if "one-row" in request.param else 5)
        monkeypatch.setattr(compiled, "thread_count", lambda: 1 if "one thread" in request.param else 3)
    return request.param


@examples
@given(case=conv_cases())
def test_conv2d(backend, reference, chunking, case):
    x_shape, kernel_shape, strides, padding, use_bias, seed = case
    rng = np.random.default_rng(seed)
    x, kernel = random_array(rng, x_shape), random_array(rng, kernel_shape)
    bias = random_array(rng, kernel_shape[3]) if use_bias else None
    where = f"x {x_shape}, kernel {kernel_shape}, strides {strides}, {padding}"

    y = backend.conv2d_forward(x, kernel, bias, strides, padding)
    assert backend.to_host(y).dtype == np.float32
    forward_args = (x, kernel, bias, strides, padding)
    assert_matches(y, reference.conv2d_forward(*forward_args), f"forward {where}", magnitude=of_magnitudes(reference.conv2d_forward, *forward_args))

    grad_out = random_array(rng, y.shape)
    grad_x = backend.conv2d_backward_input(grad_out, kernel, x_shape, strides, padding)
    input_args = (grad_out, kernel, x_shape, strides, padding)
    assert_matches(grad_x, reference.conv2d_backward_input(*input_args), f"grad_x {where}", magnitude=of_magnitudes(reference.conv2d_backward_input, *input_args))

    grad_kernel, grad_bias = backend.conv2d_backward_kernel(x, grad_out, kernel_shape, strides, padding, use_bias)
    kernel_args = (x, grad_out, kernel_shape, strides, padding, use_bias)
    expected_kernel, expected_bias = reference.conv2d_backward_kernel(*kernel_args)
    magnitude_kernel, magnitude_bias = of_magnitudes(reference.conv2d_backward_kernel, *kernel_args)
    assert_matches(grad_kernel, expected_kernel, f"grad_kernel {where}", magnitude=magnitude_kernel)
    if use_bias:
        assert_matches(grad_bias, expected_bias, f"grad_bias {where}", magnitude=magnitude_bias)
    else:
        assert grad_bias is None


@pytest.mark.skipif(CUDA_SIMULATOR, reason="too large for the CUDA simulator")
@pytest.mark.parametrize(
    "x_shape, kernel_shape",
    [((3, 28, 28, 1), (3, 3, 1, 32)), ((2, 13, 13, 32), (3, 3, 32, 64)), ((2, 36, 36, 64), (3, 3, 64, 128))],
    ids=["mnist-conv1", "mnist-conv2", "catsdogs-conv3"],
)
def test_conv2d_network_shapes(backend, reference, x_shape, kernel_shape):
    """The notes' layer shapes, where the patch rows are long and BLAS blocks its products."""
    rng = np.random.default_rng(sum(x_shape))
    x, kernel, bias = random_array(rng, x_shape), random_array(rng, kernel_shape), random_array(rng, kernel_shape[3])
    y = backend.conv2d_forward(x, kernel, bias)
    assert_matches(y, reference.conv2d_forward(x, kernel, bias), "forward")
    grad_out = random_array(rng, y.shape)
    assert_matches(backend.conv2d_backward_input(grad_out, kernel, x_shape), reference.conv2d_backward_input(grad_out, kernel, x_shape), "grad_x")
    for got, expected in zip(backend.conv2d_backward_kernel(x, grad_out, kernel_shape), reference.conv2d_backward_kernel(x, grad_out, kernel_shape)):
        assert_matches(got, expected, "grad_kernel / grad_bias")


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, min(4, MAX_SIZES["spatial"]))), draw(st.integers(1, min(4, MAX_SIZES["spatial"]))))
    padding = draw(paddings)
    low_h, low_w = (1, 1) if padding == "same" else pool
    spatial = MAX_SIZES["spatial"] + 1
    x_shape = (draw(st.integers(1, MAX_SIZES["batch"])), draw(st.integers(low_h, spatial)), draw(st.integers(low_w, spatial)), draw(st.integers(1, MAX_SIZES["channels"])))
    strides = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return x_shape, pool, strides, padding, draw(seeds)


@examples
@given(case=pool_cases())
def test_max_pool2d(backend, reference, case):
    x_shape, pool, strides, padding, seed = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape)
    y, argmax = backend.max_pool2d_forward(x, pool, strides, padding)
    expected_y, expected_argmax = reference.max_pool2d_forward(x, pool, strides, padding)
    assert_matches(y, expected_y, "max pool forward")
    np.testing.assert_array_equal(backend.to_host(argmax), expected_argmax)
    grad_out = random_array(rng, y.shape)
    assert_matches(backend.max_pool2d_backward(grad_out, argmax, x_shape), reference.max_pool2d_backward(grad_out, expected_argmax, x_shape), "max pool backward")


@examples
@given(case=pool_cases())
def test_avg_pool2d(backend, reference, case):
    x_shape, pool, strides, padding, seed = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape)
    y = backend.avg_pool2d_forward(x, pool, strides, padding)
    assert_matches(y, reference.avg_pool2d_forward(x, pool, strides, padding), "avg pool forward")
    grad_out = random_array(rng, y.shape)
    assert_matches(
        backend.avg_pool2d_backward(grad_out, x_shape, pool, strides, padding),
        reference.avg_pool2d_backward(grad_out, x_shape, pool, strides, padding),
        "avg pool backward",
    )


def test_avg_pool_same_divides_by_real_pixels_only(backend):
    """Keras' rule: a 2x2 'same' window over the bottom-right corner of a 3x3 input averages one pixel."""
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y = backend.avg_pool2d_forward(x, (2, 2), None, "same")
    np.testing.assert_allclose(backend.to_host(y)[0, :, :, 0], [[3.0, 4.5], [7.5, 9.0]])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_avg_pool_of_values_near_the_float32_limit_stays_finite(backend, reference, sign):
    """The mean of finite values is finite: 4 x 3e38 summed in float32 would be inf before the division."""
    x = np.full((1, 4, 4, 2), sign * 3e38, np.float32)
    x[0, 2:, 2:, 1] = sign * np.finfo(np.float32).max
    y = backend.to_host(backend.avg_pool2d_forward(x, (2, 2), None, "valid"))
    assert np.isfinite(y).all(), y
    assert_matches(y, reference.avg_pool2d_forward(x, (2, 2), None, "valid"), "avg pool forward near the float32 limit")


@examples
@given(batch=st.integers(1, 9), features=st.integers(1, 20 if CUDA_SIMULATOR else 40), units=st.integers(1, 12), use_bias=st.booleans(), seed=seeds)
def test_dense(backend, reference, batch, features, units, use_bias, seed):
    rng = np.random.default_rng(seed)
    x, kernel = random_array(rng, (batch, features)), random_array(rng, (features, units))
    bias = random_array(rng, units) if use_bias else None
    forward_magnitude = of_magnitudes(reference.dense_forward, x, kernel, bias)
    assert_matches(backend.dense_forward(x, kernel, bias), reference.dense_forward(x, kernel, bias), "dense forward", magnitude=forward_magnitude)
    grad_out = random_array(rng, (batch, units))
    got, expected = backend.dense_backward(grad_out, x, kernel, use_bias), reference.dense_backward(grad_out, x, kernel, use_bias)
    magnitudes = of_magnitudes(reference.dense_backward, grad_out, x, kernel, use_bias)
    for name, g, e, m in zip(("grad_x", "grad_kernel", "grad_bias"), got, expected, magnitudes):
        if e is None:
            assert g is None
        else:
            assert_matches(g, e, name, magnitude=m)


array_shapes = st.lists(st.integers(1, 4 if CUDA_SIMULATOR else 7), min_size=1, max_size=3 if CUDA_SIMULATOR else 4).map(tuple)


@examples
@given(shape=array_shapes, seed=seeds, name=st.sampled_from(["relu", "sigmoid"]))
def test_elementwise_activations(backend, reference, shape, seed, name):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape) * 4
    y = getattr(backend, f"{name}_forward")(x)
    assert_matches(y, getattr(reference, f"{name}_forward")(x), f"{name} forward")
    grad_out = random_array(rng, shape)
    assert_matches(getattr(backend, f"{name}_backward")(grad_out, y), getattr(reference, f"{name}_backward")(grad_out, y), f"{name} backward")


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 12), seed=seeds)
def test_softmax(backend, reference, batch, classes, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (batch, classes)) * 5
    y = backend.softmax_forward(x)
    assert_matches(y, reference.softmax_forward(x), "softmax forward")
    grad_out = random_array(rng, (batch, classes))
    assert_matches(backend.softmax_backward(grad_out, y), reference.softmax_backward(grad_out, y), "softmax backward")


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 12), seed=seeds, one_hot=st.booleans(), scale=st.sampled_from([1.0, 8.0, 30.0]))
def test_softmax_cross_entropy(backend, reference, batch, classes, seed, one_hot, scale):
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (batch, classes)) * scale
    if one_hot:
        targets = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    else:
        targets = rng.dirichlet(np.ones(classes), batch).astype(np.float32)
    loss, grad = backend.softmax_cross_entropy(logits, targets)
    expected_loss, expected_grad = reference.softmax_cross_entropy(logits, targets)
    assert abs(loss - expected_loss) <= 1e-5 * max(abs(expected_loss), 1.0)
    assert_matches(grad, expected_grad, "softmax cross-entropy gradient")


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 4), seed=seeds, scale=st.sampled_from([1.0, 12.0, 50.0]))
def test_sigmoid_binary_cross_entropy(backend, reference, batch, classes, seed, scale):
    """Large logits (scale 50) would overflow a naive log(sigmoid(z))."""
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (batch, classes)) * scale
    targets = rng.integers(0, 2, (batch, classes)).astype(np.float32)
    loss, grad = backend.sigmoid_binary_cross_entropy(logits, targets)
    expected_loss, expected_grad = reference.sigmoid_binary_cross_entropy(logits, targets)
    assert np.isfinite(loss)
    assert abs(loss - expected_loss) <= 1e-5 * max(abs(expected_loss), 1.0)
    assert_matches(grad, expected_grad, "binary cross-entropy gradient")


def test_backends_share_one_signature(backend, reference):
    """Every public kernel of the reference exists on the backend with the same parameters."""
    import inspect

    kernels = [name for name, f in vars(reference).items() if inspect.isfunction(f) and not name.startswith("_")]
    assert len(kernels) == 25, kernels  # 17 kernels, to_device/to_host, empty/zeros, multiply, 3 optimizer updates
    for name in kernels:
        expected = list(inspect.signature(getattr(reference, name)).parameters)
        assert list(inspect.signature(getattr(backend, name)).parameters) == expected, name
