"""The cuda backend: the kernel suite under Numba's CUDA simulator, and device-resident training.

In the ordinary run (no GPU here, none in CI) the first test runs the kernel, bad-input, gradient, NaN/inf and resume tests
and this module again in a subprocess with NUMBA_ENABLE_CUDASIM=1, where the backend fixtures of conftest.py give
cuda alone, on small shapes. On a machine with a GPU the same fixtures add cuda to every per-backend test.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from conftest import COMPILED_BACKENDS, CUDA_SIMULATOR, RTOL, assert_matches
from fastconv import layers, models, optimizers
from fastconv.backends import checks
from fastconv.utils import set_random_seed, to_categorical

needs_cuda = pytest.mark.skipif("cuda" not in COMPILED_BACKENDS, reason="no GPU here and not under the CUDA simulator")


@pytest.mark.skipif(CUDA_SIMULATOR, reason="already running under the simulator")
def test_kernel_suite_under_the_cuda_simulator():
    tests = Path(__file__).parent
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(tests / name) for name in ("test_kernels.py", "test_bad_inputs.py", "test_gradients.py", "test_model_gradients.py", "test_nan_and_inf.py", "test_resume.py", "test_cuda.py"))],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.skipif(CUDA_SIMULATOR or "cuda" in COMPILED_BACKENDS, reason="a GPU (or the simulator) is present")
def test_cuda_without_a_gpu_says_why():
    with pytest.raises(ImportError, match="fastconv backend 'cuda' cannot be loaded: no CUDA GPU is usable here"):
        fastconv.set_backend("cuda")
    assert fastconv.get_backend().name == "cython"  # never a silent fallback, never a changed backend


def _small_model(dropout=0.0):
    model = models.Sequential(
        [
            layers.Conv2D(2, (3, 3), activation="relu", padding="same", input_shape=(4, 4, 1)),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dropout(dropout, seed=3),  # seeded: the same masks (drawn on the host) on every backend
            layers.Dense(3, activation="softmax"),
        ]
    )
    return model


def _data(n=4, seed=0):
    """Tiny on purpose: under the simulator every GPU thread is a Python thread."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 4, 1)).astype(np.float32)
    return x, to_categorical(rng.integers(0, 3, n), 3)


@needs_cuda
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("optimizer", [lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), optimizers.RMSprop, optimizers.Adam])
def test_training_steps_on_the_device_match_the_cpu(optimizer, dropout):
    x, y = _data()
    weights = {}
    for name in ("cython", "cuda"):
        fastconv.clear_session()
        set_random_seed(0)
        with fastconv.use_backend(name):
            model = _small_model(dropout)
            model.compile(optimizer=optimizer(), loss="categorical_crossentropy", metrics=["accuracy"])
            for _ in range(2):
                logs = model.train_on_batch(x, y, return_dict=True)
            if name == "cuda":
                assert all(checks.is_device_array(w.value) for w in model.weights), "weights left the device"
            weights[name] = model.get_weights()
            assert all(isinstance(w, np.ndarray) for w in weights[name])
            assert np.isfinite(logs["loss"])
    for cpu, gpu in zip(weights["cython"], weights["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_fit_predict_evaluate_on_the_device():
    x, y = _data(8)
    set_random_seed(1)
    with fastconv.use_backend("cuda"):
        model = _small_model()
        model.compile(optimizer=optimizers.Adam(learning_rate=0.05), loss="categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
        predictions = model.predict(x, batch_size=4)
        loss, accuracy = model.evaluate(x, y, batch_size=8, verbose=0)
    assert isinstance(predictions, np.ndarray) and predictions.shape == (8, 3)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert 0.0 <= accuracy <= 1.0 and np.isfinite(loss)


@needs_cuda
def test_nan_on_the_device_gives_a_nan_loss_and_fit_stops():
    backend = fastconv.backends.load_backend("cuda")
    logits = np.ones((2, 3), np.float32)
    logits[1, 2] = np.nan
    loss, _ = backend.softmax_cross_entropy(logits, np.eye(3, dtype=np.float32)[[0, 1]])
    assert np.isnan(loss)
    x, y = _data(4)
    with fastconv.use_backend("cuda"):
        model = _small_model()
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        kernel = model.layers[0].get_weights()
        model.layers[0].set_weights([np.full_like(kernel[0], np.nan), kernel[1]])
        before = model.get_weights()
        with pytest.raises(models.NonFiniteLoss, match=r"epoch 1/1, step 1/1: the loss is nan"):
            model.fit(x, y, epochs=1, batch_size=4, verbose=0)
        for kept, now in zip(before, model.get_weights()):
            np.testing.assert_array_equal(kept, now)


# (m, n, k): one output tile and a long depth (split), many tiles (not split), and a depth that is no multiple of
# the slice (the last slice short). On a GPU, also the kernel gradient of cats vs dogs' conv1 (27 x 32 over 20k
# pixels of one sample) and a product with more tiles than the GPU has blocks.
GEMM_SHAPES = [(5, 3, 100), (20, 17, 9), (9, 11, 37)] + ([] if CUDA_SIMULATOR else [(27, 32, 21904), (700, 300, 50)])


@needs_cuda
@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("beta, with_bias", [(0.0, False), (1.0, True)])
def test_the_gemm_split_along_its_depth_or_not_matches_float64(m, n, k, transpose_a, transpose_b, beta, with_bias):
    from numba import cuda

    from fastconv.backends.cuda.gemm import gemm

    rng = np.random.default_rng(m * n * k)
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else np.zeros(n, np.float32)
    op_a, op_b = (a.T if transpose_a else a).astype(np.float64), (b.T if transpose_b else b).astype(np.float64)
    expected = op_a @ op_b + beta * c + bias
    magnitude = np.abs(op_a) @ np.abs(op_b) + np.abs(beta * c) + np.abs(bias)  # as check_op's sums of products
    c_device = cuda.to_device(c)
    gemm(cuda.to_device(a), cuda.to_device(b), c_device, transpose_a, transpose_b, beta, cuda.to_device(bias) if with_bias else None)
    assert_matches(c_device.copy_to_host(), expected, f"gemm {m}x{n}x{k}", RTOL, magnitude)


@needs_cuda
def test_a_long_product_with_few_output_tiles_is_split_and_a_wide_one_is_not():
    from fastconv.backends.cuda.gemm import depth_slices

    assert depth_slices(5, 3, 100) > 1
    assert depth_slices(5, 3, 4) == 1
    assert depth_slices(10_000, 10_000, 100_000) == 1


@needs_cuda
@pytest.mark.parametrize("rows, columns", [(0, 3), (1, 1), (9, 5), (37, 2)] + ([] if CUDA_SIMULATOR else [(700_000, 32)]))
def test_column_sums_in_parts_match_float64(rows, columns):
    from numba import cuda

    from fastconv.backends.cuda._common import column_sums

    matrix = np.random.default_rng(rows).standard_normal((rows, columns)).astype(np.float32)
    sums = cuda.device_array(columns, dtype=np.float32)
    column_sums(cuda.to_device(matrix), sums)
    # summed in float64: the float64 sum rounded to float32, to an ulp (the atol covers sums that cancel to ~0)
    expected = matrix.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(sums.copy_to_host(), expected, rtol=2**-23, atol=1e-12 * max(1, rows))
