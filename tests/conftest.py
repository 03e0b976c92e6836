"""Shared fixtures: the backends under test, and one helper that runs a kernel on a backend and on the reference."""

import contextlib
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends import checks, load_backend

# Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, run by tests/test_cuda.py in a subprocess) the
# kernel suite runs on the cuda backend alone, with few examples: simulated GPU threads are Python threads.
CUDA_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _real_gpu():
    try:
        load_backend("cuda")
    except ImportError:
        return False
    return True


# The one list of backends under test: every test that runs per backend takes one of the fixtures below, so on a
# machine with a GPU (or under the simulator) each of them runs on cuda too.
COMPILED_BACKENDS = ("cuda",) if CUDA_SIMULATOR else ("cython", "numba") + (("cuda",) if _real_gpu() else ())
EVERY_BACKEND = COMPILED_BACKENDS + ("reference",)
HYPOTHESIS_EXAMPLES = 10 if CUDA_SIMULATOR else 30
# Largest drawn sizes: batch, height/width, channels, filters, kernel side.
MAX_SIZES = dict(batch=2, spatial=5, channels=2, filters=3, kernel=3) if CUDA_SIMULATOR else dict(batch=4, spatial=11, channels=6, filters=7, kernel=5)
# float32 kernels against the float64 reference, error relative to the largest reference value.
RTOL = 1e-5


@pytest.fixture(params=COMPILED_BACKENDS)
def backend_name(request):
    """The name of each compiled backend in turn (for ``fastconv.use_backend``)."""
    return request.param


@pytest.fixture
def backend(backend_name):
    """Each compiled backend in turn."""
    return load_backend(backend_name)


@pytest.fixture(params=EVERY_BACKEND)
def any_backend_name(request):
    """The name of each backend in turn, the float64 reference included."""
    return request.param


@pytest.fixture
def any_backend(any_backend_name):
    """Each backend in turn, the float64 reference included."""
    return load_backend(any_backend_name)


@pytest.fixture
def fresh_names():
    """Default layer names restart at conv2d, dense, ... and the seed at 0, as after keras.backend.clear_session()
    (API tests use it: ``pytestmark = pytest.mark.usefixtures("fresh_names")``)."""
    import fastconv

    fastconv.clear_session()
    fastconv.utils.set_random_seed(0)


@pytest.fixture(params=["gemm"] if CUDA_SIMULATOR else ["gemm", "winograd_2x2", "winograd_4x4"])
def conv_algorithm(request, monkeypatch):
    """Run a convolution test with each algorithm forced (Winograd F(2x2) or F(4x4) where it applies: 3x3, stride 1)."""
    from fastconv.backends import algorithms

    monkeypatch.setattr(algorithms, "_chosen", algorithms.ConvAlgorithm(request.param))
    return request.param


@pytest.fixture(scope="session")
def reference():
    return load_backend("reference")


def random_array(rng, shape):
    """Standard-normal float32 values: never zeros, never all alike."""
    return rng.standard_normal(shape).astype(np.float32)


def relative_error(actual, expected, magnitude=None):
    """max |actual - expected| / max |magnitude|, the magnitude being ``expected`` unless given.

    For sums of products (convolution, dense) pass as ``magnitude`` the same
    operation on absolute values: float32 rounding is bounded relative to that,
    and a sum that cancels to nearly zero would otherwise demand more accuracy
    than float32 has. The magnitude is at least float32's smallest normal number: below it a float32 result cannot
    hold a relative accuracy at all (a sigmoid cross-entropy gradient of 7e-56 is 0 in float32).
    """
    expected = np.asarray(expected, dtype=np.float64)
    scale_of = expected if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    scale = max(np.abs(scale_of).max(), float(np.finfo(np.float32).tiny))
    return np.abs(np.asarray(actual, dtype=np.float64) - expected).max() / scale


def assert_matches(actual, expected, what, rtol=RTOL, magnitude=None):
    """Same shape and within ``rtol`` of the reference; the message says what and by how much."""
    actual = checks.host_array(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}"
    error = relative_error(actual, expected, magnitude)
    assert error <= rtol, f"{what}: relative error {error:.2e} > {rtol:.0e}"


def of_magnitudes(kernel, *args, **kwargs):
    """``kernel`` applied to the absolute values of its array arguments (the scale of its rounding error)."""
    return kernel(*(np.abs(a) if isinstance(a, np.ndarray) else a for a in args), **kwargs)


def check_op(backend, op, *args, sums=False, rtol=RTOL, where=""):
    """Run kernel ``op`` on ``backend`` and on the float64 reference with the same arguments and compare every output
    (tinygrad's ``helper_test_op``); returns the backend's outputs.

    Float outputs must be float32 and within ``rtol`` of the reference, relative to its largest value, or, for a
    sum of products (``sums=True``: convolution, dense), to the same op on absolute values; integer outputs (argmax)
    must be equal; a None output (no bias) None on both; a float (a loss) within ``rtol`` of max(|loss|, 1).
    """
    reference = load_backend("reference")
    got = getattr(backend, op)(*args)
    reference_args = [checks.host_array(a) for a in args]
    expected = getattr(reference, op)(*reference_args)
    single = not isinstance(expected, tuple)
    as_tuple = (lambda outputs: (outputs,)) if single else tuple
    scales = as_tuple(of_magnitudes(getattr(reference, op), *reference_args)) if sums else (None,) * len(as_tuple(expected))
    for index, (value, want, scale) in enumerate(zip(as_tuple(got), as_tuple(expected), scales)):
        what = f"{op}{'' if single else f' output {index}'} on {backend.name}, {where}"
        if want is None:
            assert value is None, what
        elif isinstance(want, float):
            assert abs(value - want) <= rtol * max(abs(want), 1.0), f"{what}: {value} != {want}"
        elif np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(checks.host_array(value), want, err_msg=what)
        else:
            assert checks.host_array(value).dtype == np.float32, f"{what}: dtype {checks.host_array(value).dtype}"
            assert_matches(value, want, what, rtol, scale)
    return got


def unfreeze_from(model, first_trainable):
    """Listing 5.22: the model trainable, then every layer frozen up to ``first_trainable`` (which trains on)."""
    model.trainable = True
    set_trainable = False
    for layer in model.layers:
        if layer.name == first_trainable:
            set_trainable = True
        layer.trainable = set_trainable


# The shared data beside the project (../shared/data; CI has it too); tests that need it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = SHARED_DATA / "dogs-vs-cats" / "train"
SMALL = {"train": range(0, 6), "validation": range(6, 8), "test": range(8, 10)}


@pytest.fixture
def small_split(tmp_path):
    """Listing 5.4's split layout on 10 photos per class: 6 train, 2 validation, 2 test."""
    from fastconv.datasets.dogs_vs_cats import make_small_split

    if not PHOTOS.is_dir():
        pytest.skip(f"the shared photos are not at {PHOTOS}")
    originals = tmp_path / "originals"
    originals.mkdir()
    for prefix in ("cat", "dog"):
        for i in range(10):
            shutil.copyfile(PHOTOS / f"{prefix}.{i}.jpg", originals / f"{prefix}.{i}.jpg")
    return make_small_split(originals, tmp_path / "small", splits=SMALL)


def pytest_report_header(config):
    """Say which SIMD level of the compiled kernels the run tests (``FASTCONV_SIMD`` forces one)."""
    try:
        from fastconv import _ext
    except ImportError as error:
        return f"fastconv: the compiled kernels do not load: {error}"
    return (f"fastconv: cython kernels at SIMD level {_ext.LEVEL} (built: {', '.join(sorted(_ext.BUILT))}), from "
            f"{Path(_ext.__file__).parent}")


@contextlib.contextmanager
def within_seconds(seconds):
    """Fail the test, instead of hanging the suite, when the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
