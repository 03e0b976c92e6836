"""Every kernel of every compiled backend against the float64 reference.

Shapes, strides, paddings and seeds are drawn by hypothesis; the data are
standard-normal float32 (never zeros). Each kernel's result must lie within
1e-5 of the reference, relative to the reference's largest value.
"""

import numpy as np
import pytest

import fastconv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CUDA_SIMULATOR, HYPOTHESIS_EXAMPLES, MAX_SIZES, assert_matches, check_op, random_array
from fastconv.backends import algorithms, checks, compiled, host_ops, winograd_tiles

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


@st.composite
def winograd_cases(draw):
    """Winograd's case, 3x3 stride 1, with odd and even output sizes (a last tile half outside the output)."""
    padding = draw(paddings)
    low = 1 if padding == "same" else 3
    spatial = MAX_SIZES["spatial"] + 2
    x_shape = (draw(st.integers(1, MAX_SIZES["batch"])), draw(st.integers(low, spatial)), draw(st.integers(low, spatial)), draw(st.integers(1, MAX_SIZES["channels"])))
    kernel_shape = (3, 3, x_shape[3], draw(st.integers(1, MAX_SIZES["filters"])))
    return x_shape, kernel_shape, (1, 1), padding, draw(st.booleans()), draw(seeds)


@examples
@given(case=conv_cases())
def test_conv2d(backend, chunking, conv_algorithm, case):
    _check_conv2d(backend, case)


@examples
@given(case=winograd_cases())
def test_conv2d_3x3_stride_1(backend, chunking, conv_algorithm, case):
    _check_conv2d(backend, case)


def _check_conv2d(backend, case):
    x_shape, kernel_shape, strides, padding, use_bias, seed = case
    rng = np.random.default_rng(seed)
    x, kernel = random_array(rng, x_shape), random_array(rng, kernel_shape)
    bias = random_array(rng, kernel_shape[3]) if use_bias else None
    where = f"x {x_shape}, kernel {kernel_shape}, strides {strides}, {padding}"
    y = check_op(backend, "conv2d_forward", x, kernel, bias, strides, padding, sums=True, where=where)
    check_op(backend, "conv2d_forward", x, kernel, bias, strides, padding, True, sums=True, where=f"{where}, relu")
    grad_out = random_array(rng, y.shape)
    check_op(backend, "conv2d_backward_input", grad_out, kernel, x_shape, strides, padding, sums=True, where=where)
    check_op(backend, "conv2d_backward_kernel", x, grad_out, kernel_shape, strides, padding, use_bias, sums=True, where=where)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, padding",
    [((3, 9, 10, 1), (3, 3, 1, 8), (1, 1), "valid"), ((2, 12, 11, 3), (3, 3, 3, 16), (1, 1), "same"),
     ((5, 8, 9, 1), (5, 5, 1, 24), (2, 1), "same"), ((2, 7, 7, 3), (3, 3, 3, 32), (1, 2), "valid"),
     ((3, 6, 5, 2), (1, 1, 2, 40), (1, 1), "valid"), ((1, 9, 9, 4), (2, 4, 4, 8), (1, 1), "same")],
    ids=["K9-F8", "K27-F16-same", "K25-F24-strided", "K27-F32", "pointwise-F40", "K32-F8"],
)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.skipif(CUDA_SIMULATOR, reason="too large for the CUDA simulator")
def test_conv2d_short_patches(backend, chunking, x_shape, kernel_shape, strides, padding, use_bias):
    """A first layer's patches (KH*KW*C <= 32) with filters in eights: the Cython kernels' register-blocked product
    instead of BLAS (src_ext/_small_patch.pxd), with row counts that leave tails of 4 rows and of 64."""
    _check_conv2d(backend, (x_shape, kernel_shape, strides, padding, use_bias, sum(x_shape) + kernel_shape[3]))


@pytest.mark.skipif(CUDA_SIMULATOR, reason="too large for the CUDA simulator")
@pytest.mark.parametrize(
    "x_shape, kernel_shape",
    [((3, 28, 28, 1), (3, 3, 1, 32)), ((2, 13, 13, 32), (3, 3, 32, 64)), ((2, 36, 36, 64), (3, 3, 64, 128))],
    ids=["mnist-conv1", "mnist-conv2", "catsdogs-conv3"],
)
def test_conv2d_network_shapes(backend, conv_algorithm, x_shape, kernel_shape):
    """The notes' layer shapes, where the patch rows are long and BLAS blocks its products."""
    rng = np.random.default_rng(sum(x_shape))
    x, kernel, bias = random_array(rng, x_shape), random_array(rng, kernel_shape), random_array(rng, kernel_shape[3])
    y = check_op(backend, "conv2d_forward", x, kernel, bias)
    grad_out = random_array(rng, y.shape)
    check_op(backend, "conv2d_backward_input", grad_out, kernel, x_shape)
    check_op(backend, "conv2d_backward_kernel", x, grad_out, kernel_shape)


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
def test_max_pool2d(backend, case):
    x_shape, pool, strides, padding, seed = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape)
    where = f"x {x_shape}, pool {pool}, strides {strides}, {padding}"
    y, argmax = check_op(backend, "max_pool2d_forward", x, pool, strides, padding, where=where)
    grad_out = random_array(rng, y.shape)
    check_op(backend, "max_pool2d_backward", grad_out, argmax, x_shape, where=where)
    # the window given (the compiled kernels then write non-overlapping windows directly), with and without the mask
    # of a ReLU before the pool (y has negative values, so the mask drops some)
    for pooled_relu in (None, y):
        check_op(backend, "max_pool2d_backward", grad_out, argmax, x_shape, pooled_relu, pool, strides, padding,
                 where=f"{where}, window given, {'masked' if pooled_relu is not None else 'unmasked'}")


@pytest.mark.parametrize("pool, strides", [((2, 2), None), ((2, 3), (3, 3)), ((3, 3), (2, 2))])
def test_max_pool2d_backward_routes_an_index_outside_its_own_window_as_the_reference(backend, pool, strides):
    """argmax is the caller's: an index inside the plane but outside its window (not what the forward pass gives)
    still goes where it points, the window given or not, with NaN and 0 in the ReLU mask."""
    rng = np.random.default_rng(7)
    x_shape = (2, 7, 8, 5)
    y, argmax = backend.max_pool2d_forward(random_array(rng, x_shape), pool, strides)
    argmax = checks.host_array(argmax).copy()
    argmax[0, 0, 0, 1] = 7 * 8 - 1  # the last pixel of the plane
    argmax[1, -1, -1, 4] = 0
    pooled_relu = random_array(rng, y.shape)
    pooled_relu[0, 0, 0, :2] = np.nan, 0.0
    grad_out = random_array(rng, y.shape)
    check_op(backend, "max_pool2d_backward", grad_out, argmax, x_shape, None, pool, strides, "valid")
    check_op(backend, "max_pool2d_backward", grad_out, argmax, x_shape, pooled_relu, pool, strides, "valid")


@examples
@given(case=pool_cases())
def test_avg_pool2d(backend, case):
    x_shape, pool, strides, padding, seed = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape)
    where = f"x {x_shape}, pool {pool}, strides {strides}, {padding}"
    y = check_op(backend, "avg_pool2d_forward", x, pool, strides, padding, where=where)
    check_op(backend, "avg_pool2d_backward", random_array(rng, y.shape), x_shape, pool, strides, padding, where=where)


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
def test_dense(backend, batch, features, units, use_bias, seed):
    rng = np.random.default_rng(seed)
    x, kernel = random_array(rng, (batch, features)), random_array(rng, (features, units))
    bias = random_array(rng, units) if use_bias else None
    check_op(backend, "dense_forward", x, kernel, bias, sums=True)
    check_op(backend, "dense_backward", random_array(rng, (batch, units)), x, kernel, use_bias, sums=True)


array_shapes = st.lists(st.integers(1, 4 if CUDA_SIMULATOR else 7), min_size=1, max_size=3 if CUDA_SIMULATOR else 4).map(tuple)


@examples
@given(shape=array_shapes, seed=seeds, name=st.sampled_from(["relu", "sigmoid"]))
def test_elementwise_activations(backend, shape, seed, name):
    rng = np.random.default_rng(seed)
    y = check_op(backend, f"{name}_forward", random_array(rng, shape) * 4)
    check_op(backend, f"{name}_backward", random_array(rng, shape), y)


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 12), seed=seeds)
def test_softmax(backend, batch, classes, seed):
    rng = np.random.default_rng(seed)
    y = check_op(backend, "softmax_forward", random_array(rng, (batch, classes)) * 5)
    check_op(backend, "softmax_backward", random_array(rng, (batch, classes)), y)


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 12), seed=seeds, one_hot=st.booleans(), scale=st.sampled_from([1.0, 8.0, 30.0]))
def test_softmax_cross_entropy(backend, batch, classes, seed, one_hot, scale):
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (batch, classes)) * scale
    if one_hot:
        targets = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    else:
        targets = rng.dirichlet(np.ones(classes), batch).astype(np.float32)
    check_op(backend, "softmax_cross_entropy", logits, targets)


@examples
@given(batch=st.integers(1, 9), classes=st.integers(1, 4), seed=seeds, scale=st.sampled_from([1.0, 12.0, 50.0]))
def test_sigmoid_binary_cross_entropy(backend, batch, classes, seed, scale):
    """Large logits (scale 50) would overflow a naive log(sigmoid(z))."""
    rng = np.random.default_rng(seed)
    logits = random_array(rng, (batch, classes)) * scale
    targets = rng.integers(0, 2, (batch, classes)).astype(np.float32)
    loss, _ = check_op(backend, "sigmoid_binary_cross_entropy", logits, targets)
    assert np.isfinite(loss)


UPDATE_CASES = ["sgd", "sgd momentum", "sgd nesterov", "rmsprop", "adam"]


def _check_update(backend, rng, shape, case, nan):
    """One optimizer update in place on ``backend`` against host_ops' formula in float64 (the reference's); a NaN in
    the gradient makes its weight and state NaN there, as in the reference, and leaves the rest alone."""
    weight, grad = random_array(rng, shape), random_array(rng, shape)
    if nan:
        grad.reshape(-1)[rng.integers(grad.size)] = np.nan
    learning_rate = float(rng.uniform(0.1, 1.0))  # steps as large as the weights: a wrong term shows above 1e-5
    if case.startswith("sgd"):
        momentum = 0.0 if case == "sgd" else float(rng.uniform(0.5, 0.99))
        state = [random_array(rng, shape) if momentum else np.zeros(0, np.float32)]
        op, settings = "sgd_update", (learning_rate, momentum, case == "sgd nesterov")
    elif case == "rmsprop":
        state = [np.abs(random_array(rng, shape))]
        op, settings = "rmsprop_update", (learning_rate, float(rng.uniform(0.5, 0.99)), 1e-7)
    else:
        state = [random_array(rng, shape), np.abs(random_array(rng, shape))]
        op, settings = "adam_update", (learning_rate, 0.9, 0.999, 1e-7)
    expected = [array.astype(np.float64) for array in (weight, *state)]
    getattr(host_ops, op)(expected[0], grad.astype(np.float64), *expected[1:], *settings)
    arrays = [backend.to_device(array) for array in (weight, *state)]
    getattr(backend, op)(arrays[0], backend.to_device(grad), *arrays[1:], *settings)
    for name, got, want in zip(["weight", "first state", "second state"], arrays, expected):
        got, what = checks.host_array(got), f"{op} ({case}) {name} on {backend.name}, shape {shape}"
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
        if want.size and not np.isnan(want).all():
            assert_matches(np.where(np.isnan(got), 0, got), np.where(np.isnan(want), 0, want), what)


@examples
@given(shape=array_shapes, seed=seeds, case=st.sampled_from(UPDATE_CASES), nan=st.booleans())
def test_optimizer_updates(backend, shape, seed, case, nan):
    _check_update(backend, np.random.default_rng(seed), shape, case, nan)


@pytest.mark.skipif(CUDA_SIMULATOR, reason="too large for the CUDA simulator")
@pytest.mark.parametrize("case", UPDATE_CASES)
def test_optimizer_updates_in_parallel_blocks(backend, case):
    """The cats-vs-dogs dense kernel's size (3.2M weights): the update runs in blocks on every thread."""
    _check_update(backend, np.random.default_rng(7), (6272, 512), case, nan=True)


@pytest.mark.parametrize("op, state", [("sgd_update", 1), ("rmsprop_update", 1), ("adam_update", 2)])
def test_optimizer_updates_refuse_what_they_cannot_change_in_place(backend, op, state):
    settings = {"sgd_update": (0.1, 0.9, False), "rmsprop_update": (0.1, 0.9, 1e-7), "adam_update": (0.1, 0.9, 0.999, 1e-7)}[op]
    weight, grad = np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)
    slots = [np.zeros((3, 4), np.float32) for _ in range(state)]
    with pytest.raises(ValueError, match=rf"{op}: grad \(4, 3\) and weight \(3, 4\) must have the same shape"):
        getattr(backend, op)(backend.to_device(weight), backend.to_device(grad.reshape(4, 3)), *map(backend.to_device, slots), *settings)
    if backend.name != "cuda":
        frozen = weight.copy()
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match=f"{op}: weight is read-only"):
            getattr(backend, op)(frozen, grad, *slots, *settings)
        with pytest.raises(ValueError, match=f"{op}: .*(contiguous|float32)"):
            getattr(backend, op)(np.ones((3, 8), np.float32)[:, ::2], grad, *slots, *settings)
        np.testing.assert_array_equal(frozen, np.ones((3, 4)))
    else:
        with pytest.raises(ValueError, match=f"{op}: weight must be an array of the cuda backend"):
            getattr(backend, op)(weight, backend.to_device(grad), *map(backend.to_device, slots), *settings)


def test_backends_share_one_signature(backend, reference):
    """Every public kernel of the reference exists on the backend with the same parameters."""
    import inspect

    kernels = [name for name, f in vars(reference).items() if inspect.isfunction(f) and not name.startswith("_")]
    assert len(kernels) == 25, kernels  # 17 kernels, to_device/to_host, empty/zeros, multiply, 3 optimizer updates
    for name in kernels:
        expected = list(inspect.signature(getattr(reference, name)).parameters)
        assert list(inspect.signature(getattr(backend, name)).parameters) == expected, name


def test_forcing_winograd_runs_it_where_it_applies_and_the_gemm_elsewhere(backend, monkeypatch):
    """The choice is real: forced Winograd calls the Winograd kernels, with the forced tile, for a 3x3 stride-1 layer
    (forward, input gradient and kernel gradient) and never for a 5x5 or strided one; 'auto' keeps it off layers
    with few channels."""
    if not backend.has_winograd:
        pytest.skip(f"{backend.name} has no Winograd kernels")
    positions = []
    forward, kernel_gradient = backend.low_level.winograd_conv2d_forward, backend.low_level.winograd_conv2d_backward_kernel
    monkeypatch.setattr(backend.low_level, "winograd_conv2d_forward", lambda *args: positions.append(args[1].shape[0]) or forward(*args))
    monkeypatch.setattr(backend.low_level, "winograd_conv2d_backward_kernel", lambda *args: positions.append(-args[2].shape[0]) or kernel_gradient(*args))
    rng = np.random.default_rng(0)
    x = random_array(rng, (2, 12, 12, 16))
    for setting, kernel_shape, strides, expected_positions in [
        ("winograd", (3, 3, 16, 16), (1, 1), [36, 36, -36]), ("winograd_4x4", (3, 3, 16, 16), (1, 1), [36, 36, -36]),
        ("winograd_2x2", (3, 3, 16, 16), (1, 1), [16, 16, -16]), ("winograd", (5, 5, 16, 16), (1, 1), []),
        ("winograd_4x4", (3, 3, 16, 16), (2, 2), []), ("gemm", (3, 3, 16, 16), (1, 1), []),
        ("auto", (3, 3, 16, 16), (1, 1), [36, 36, -36]), ("auto", (3, 3, 16, 1), (1, 1), []),
    ]:  # fmt: skip
        monkeypatch.setattr(algorithms, "_chosen", setting)
        positions.clear()
        kernel = random_array(rng, kernel_shape)
        x_layer = np.ascontiguousarray(x[..., : kernel_shape[2]])
        y = check_op(backend, "conv2d_forward", x_layer, kernel, None, strides, "same", sums=True)
        grad_out = random_array(rng, y.shape)
        check_op(backend, "conv2d_backward_input", grad_out, kernel, x_layer.shape, strides, "same", sums=True)
        check_op(backend, "conv2d_backward_kernel", x_layer, grad_out, kernel_shape, strides, "same", True, sums=True)
        assert positions == expected_positions, (setting, kernel_shape, strides, positions)


@pytest.mark.parametrize("x_shape", [(1, 1, 1, 1), (1, 1, 6, 2), (2, 5, 1, 1)])
def test_a_one_pixel_wide_same_convolution_is_exact_to_the_taps_it_uses_under_forced_winograd(backend, conv_algorithm, x_shape):
    """'same' on a one-pixel-wide input sums only the kernel's middle row or column; Winograd's rounding is relative
    to all nine taps, so with the middle taps small and the others large (kernel below, as drawn by the kernel suite
    once) a forced F(4x4) missed the contract: input gradient 5.1e-5 on (1, 1, 1, 1). Such a layer takes the GEMM."""
    rng = np.random.default_rng(4)
    kernel = random_array(rng, (3, 3, x_shape[3], 2))
    kernel[1, :] *= 0.003  # the middle row and column: the only taps a one-pixel-wide input meets
    kernel[:, 1] *= 0.003
    x = random_array(rng, x_shape)
    y = check_op(backend, "conv2d_forward", x, kernel, None, (1, 1), "same", sums=True)
    grad_out = random_array(rng, y.shape)
    check_op(backend, "conv2d_backward_input", grad_out, kernel, x_shape, (1, 1), "same", sums=True)
    check_op(backend, "conv2d_backward_kernel", x, grad_out, kernel.shape, (1, 1), "same", True, sums=True)


def test_the_winograd_kernels_refuse_a_transformed_kernel_of_neither_tile(backend):
    """The tile comes from u's a^2 rows; any other count is refused by both backends' low-level kernels, never read
    out of bounds (numba's used to take it for F(4x4))."""
    if not backend.has_winograd:
        pytest.skip(f"{backend.name} has no Winograd kernels")
    kernel = np.ones((3, 3, 2, 2), np.float32)
    u = np.zeros((25, 2, 2), np.float32)
    with pytest.raises(ValueError, match="positions"):
        backend.low_level.winograd_kernel_transform(kernel, u)
    plan = compiled.winograd_plan(1, (4, 4), 2, 2, 0, 0, 2)
    x, y = np.ones((1, 6, 6, 2), np.float32), np.ones((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="positions"):
        backend.low_level.winograd_conv2d_forward(x, u, np.zeros(2, np.float32), y, plan)
    with pytest.raises(ValueError, match="positions"):
        backend.low_level.winograd_conv2d_backward_kernel(x, y, u, np.zeros(2, np.float32), plan)
    with pytest.raises(ValueError, match="positions"):
        backend.low_level.winograd_kernel_transform_backward(u, kernel)


def test_winograd_blocks_balance_threads_but_keep_enough_tiles_to_pack_the_kernel_for(monkeypatch):
    """Blocks of tiles: several per thread where C * F is small (a preempted thread then delays a call by one
    block), but none shorter than C * F / 512 tiles where that cuts the call into more blocks: BLAS packs each
    transformed kernel U[k] once per block (VGG16's block4 in 8 blocks of 63 tiles ran 1.4x slower than in 2)."""
    monkeypatch.setattr(compiled, "thread_count", lambda: 2)
    cats_conv2 = compiled.winograd_plan(32, (72, 72), 32, 64, 0, 0, 4)
    assert cats_conv2.threads == 2 and -(-32 * 18 * 18 // cats_conv2.block_tiles) >= 4 * 2
    for channels, side, tile_side in ((512, 18, 4), (256, 18, 4), (512, 9, 2)):
        plan = compiled.winograd_plan(20, (side, side), channels, 512, 1, 1, tile_side)
        tiles = 20 * (-(-side // tile_side)) ** 2
        assert plan.threads == 2 and plan.block_tiles == -(-tiles // 2), (channels, side, plan)


@pytest.mark.parametrize("tile_side", winograd_tiles.TILE_SIDES)
def test_the_winograd_matrices_compute_the_3x3_correlation_exactly(tile_side):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the m x m correlation of an a x a patch with a 3x3 kernel (float64)."""
    rng = np.random.default_rng(tile_side)
    patch, kernel = rng.standard_normal((tile_side + 2, tile_side + 2)), rng.standard_normal((3, 3))
    input_t, g, output_t = (matrix(tile_side) for matrix in (winograd_tiles.input_matrix, winograd_tiles.kernel_matrix, winograd_tiles.output_matrix))
    winograd = output_t @ ((g @ kernel @ g.T) * (input_t @ patch @ input_t.T)) @ output_t.T
    direct = np.array([[np.sum(patch[i : i + 3, j : j + 3] * kernel) for j in range(tile_side)] for i in range(tile_side)])
    np.testing.assert_allclose(winograd, direct, rtol=0, atol=1e-12)
    size = (tile_side + 2) ** 2
    np.testing.assert_allclose(winograd_tiles.kernel_transform_matrix(tile_side) @ kernel.reshape(9), (g @ kernel @ g.T).reshape(size), rtol=1e-6)
    assert winograd_tiles.tile_side_of(size) == tile_side
    with pytest.raises(ValueError, match="Winograd transformed kernel has 16, 36 positions, got 25"):
        winograd_tiles.tile_side_of(25)


@pytest.mark.parametrize("tile_side", winograd_tiles.TILE_SIDES)
@pytest.mark.parametrize("name", ["B^T", "A^T", "A"])
def test_the_written_out_winograd_lines_apply_winograd_tiles_matrices(tile_side, name):
    """Numba's written-out transforms (numba/winograd.py ``line``), read off unit vectors, are winograd_tiles'
    matrices in float32, and run on strided lines of several values. (The Cython module makes the same check of
    its own at import: a mismatch there is an ImportError, which every Cython test would show.)"""
    from fastconv.backends.numba.winograd import line

    matrix = {"B^T": winograd_tiles.input_matrix, "A^T": winograd_tiles.output_matrix,
              "A": lambda side: winograd_tiles.output_matrix(side).T}[name](tile_side).astype(np.float32)  # fmt: skip
    writes, reads = matrix.shape
    count, src_stride, dst_stride, offset = 5, 7, 6, 3
    rng = np.random.default_rng(tile_side)
    vectors = rng.standard_normal((reads, count)).astype(np.float32)
    src = np.zeros(offset + reads * src_stride, np.float32)
    for k in range(reads):
        src[offset + k * src_stride : offset + k * src_stride + count] = vectors[k]
    dst = np.full(offset + writes * dst_stride, 7.0, np.float32)
    u = np.uint64
    line(matrix, src, u(offset), u(src_stride), dst, u(offset), u(dst_stride), u(count))
    written = np.stack([dst[offset + i * dst_stride : offset + i * dst_stride + count] for i in range(writes)])
    np.testing.assert_allclose(written, matrix.astype(np.float64) @ vectors, rtol=1e-6, atol=1e-6)
    untouched = np.ones_like(dst, bool)
    for i in range(writes):
        untouched[offset + i * dst_stride : offset + i * dst_stride + count] = False
    assert (dst[untouched] == 7.0).all()
    for k in range(reads):  # the matrix itself, exactly
        unit = np.zeros(reads, np.float32)
        unit[k] = 1.0
        column = np.zeros(writes, np.float32)
        line(matrix, unit, u(0), u(1), column, u(0), u(1), u(1))
        np.testing.assert_array_equal(column, matrix[:, k])


def test_numbas_winograd_lines_are_compiled_with_arguments_that_do_not_alias():
    """The mark that lets LLVM vectorise the lines without run-time overlap checks (numba/_common.py NO_ALIAS, a
    ``pipeline_class``) reaches the compiled code: every array's data pointer of a line is ``noalias`` (compiled
    afresh here: Numba does not show the code it loaded from its cache)."""
    from numba import njit

    from fastconv.backends.numba import winograd
    from fastconv.backends.numba._common import NO_ALIAS

    options = {key: value for key, value in NO_ALIAS.items() if key != "cache"}
    fresh = njit(**options)(winograd._input_line_4.py_func)
    flat, u = np.zeros(64, np.float32), np.uint64
    fresh(flat, u(0), u(1), flat.copy(), u(0), u(1), u(1))
    definition = next(line for line in fresh.inspect_llvm(fresh.signatures[0]).splitlines()
                      if line.startswith("define") and "_input_line_4" in line)  # fmt: skip
    assert definition.count("noalias") >= 2 + 2  # the return and exception slots, then src's and dst's pointers
    plain = njit(winograd._input_line_4.py_func)
    plain(flat, u(0), u(1), flat.copy(), u(0), u(1), u(1))
    plain_definition = next(line for line in plain.inspect_llvm(plain.signatures[0]).splitlines()
                            if line.startswith("define") and "_input_line_4" in line)  # fmt: skip
    assert definition.count("noalias") > plain_definition.count("noalias")


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.tuples(*[st.integers(0, 40)] * 3), transposes=st.tuples(st.booleans(), st.booleans()),
       alpha=st.sampled_from([1.0, 0.5]), beta=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_numbas_gemm_adds_the_product_of_strided_blocks_as_a_float64_product_would(sizes, transposes, alpha, beta, seed):
    """numba/_blas.py gemm (the kernel gradients' sums, beta = 1): out_c = alpha op(a) op(b) + beta out_c for
    either transpose, out_c a block of a larger matrix whose other elements stay as they were; beta = 0 overwrites
    even a NaN; empty shapes do nothing or scale; rows that are not contiguous, run backwards or overlap (BLAS
    would read past them) are refused."""
    from fastconv.backends.numba._blas import gemm

    rows, cols, inner = sizes
    a_transposed, b_transposed = transposes
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((inner, rows) if a_transposed else (rows, inner)).astype(np.float32)
    b = rng.standard_normal((cols, inner) if b_transposed else (inner, cols)).astype(np.float32)
    whole = rng.standard_normal((rows + 3, cols + 5)).astype(np.float32)
    if rows and cols and beta == 0.0:
        whole[1, 2] = np.nan
    before = whole.copy()
    out_c = whole[1 : 1 + rows, 2 : 2 + cols]
    product = (a.T if a_transposed else a).astype(np.float64) @ (b.T if b_transposed else b).astype(np.float64)
    expected = alpha * product + (beta * before[1 : 1 + rows, 2 : 2 + cols] if beta else 0.0)
    gemm(alpha, a, a_transposed, b, b_transposed, beta, out_c)
    scale = np.abs(a).max(initial=0) * np.abs(b).max(initial=0) * max(inner, 1) + 1.0
    np.testing.assert_allclose(out_c, expected, rtol=0, atol=1e-6 * scale)
    outside = np.ones(whole.shape, bool)
    outside[1 : 1 + rows, 2 : 2 + cols] = False
    np.testing.assert_array_equal(whole[outside], before[outside])
    if rows > 1 and cols > 1 and inner:
        with pytest.raises(ValueError, match="contiguous rows"):
            gemm(alpha, a, a_transposed, b, b_transposed, beta, np.zeros((rows, 2 * cols), np.float32)[:, ::2])
    if rows > 1 and cols and inner:  # BLAS would read past these: rows backwards, or all one row
        one_row = np.lib.stride_tricks.as_strided(np.zeros(cols, np.float32), shape=(rows, cols), strides=(0, 4))
        for bad_out in (np.zeros((rows, cols), np.float32)[::-1], one_row):
            with pytest.raises(ValueError, match="without overlapping"):
                gemm(alpha, a, a_transposed, b, b_transposed, beta, bad_out)
        if a.shape[0] > 1:
            with pytest.raises(ValueError, match="without overlapping"):
                gemm(alpha, a[::-1], a_transposed, b, b_transposed, beta, out_c)


def test_the_algorithm_setting_is_checked_read_from_the_environment_and_auto_follows_the_shape(monkeypatch):
    monkeypatch.setattr(algorithms, "_chosen", None)
    monkeypatch.setenv("FASTCONV_CONV_ALGORITHM", "GEMM")
    assert algorithms.conv_algorithm() == "gemm"
    monkeypatch.setenv("FASTCONV_CONV_ALGORITHM", "fft")
    with pytest.raises(ValueError, match="FASTCONV_CONV_ALGORITHM: unknown convolution algorithm 'fft'; choose one of auto, gemm, winograd, winograd_2x2, winograd_4x4"):
        algorithms.conv_algorithm()
    with pytest.raises(ValueError, match="set_conv_algorithm: unknown convolution algorithm 'direct'"):
        fastconv.set_conv_algorithm("direct")
    assert fastconv.set_conv_algorithm("winograd") == "winograd" == algorithms.conv_algorithm()
    fastconv.set_conv_algorithm("auto")
    assert algorithms.choose((3, 3, 32, 64), (1, 1), (11, 11), has_winograd=True) == "winograd_4x4"  # MNIST's conv2
    assert algorithms.choose((3, 3, 32, 64), (1, 1), (11, 11), True, input_gradient=True) == "gemm"
    assert algorithms.choose((3, 3, 512, 512), (1, 1), (9, 9), True, input_gradient=True) == "winograd_2x2"  # block5
    assert algorithms.choose((3, 3, 128, 128), (1, 1), (15, 15), has_winograd=True) == "winograd_4x4"  # cats-dogs conv4
    assert algorithms.choose((3, 3, 256, 256), (1, 1), (37, 37), has_winograd=True) == "winograd_4x4"  # VGG16 block3
    assert algorithms.choose((3, 3, 512, 512), (1, 1), (9, 9), has_winograd=True) == "winograd_2x2"  # VGG16 block5
    fastconv.set_conv_algorithm("winograd")
    assert algorithms.choose((3, 3, 4, 4), (1, 1), (2, 40), has_winograd=True) == "winograd_2x2"
    fastconv.set_conv_algorithm("winograd_4x4")
    assert algorithms.choose((3, 3, 4, 4), (1, 1), (2, 40), has_winograd=True) == "winograd_4x4"
    assert algorithms.choose((3, 3, 4, 4), (1, 1), (1, 40), has_winograd=True) == "gemm"  # one pixel wide: see below
    fastconv.set_conv_algorithm("auto")
    assert algorithms.choose((3, 3, 64, 64), (1, 1), (3, 3), has_winograd=True) == "gemm"  # MNIST's conv3
    assert algorithms.choose((3, 3, 3, 32), (1, 1), (148, 148), has_winograd=True) == "gemm"  # an RGB first layer
    assert algorithms.choose((3, 3, 64, 64), (1, 1), (11, 11), has_winograd=False) == "gemm"  # cuda
