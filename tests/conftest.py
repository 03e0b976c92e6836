"""Shared fixtures: the backends under test and one comparison helper."""

import os
import shutil
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


COMPILED_BACKENDS = ("cuda",) if CUDA_SIMULATOR else ("cython", "numba") + (("cuda",) if _real_gpu() else ())
HYPOTHESIS_EXAMPLES = 10 if CUDA_SIMULATOR else 30
# Largest drawn sizes: batch, height/width, channels, filters, kernel side.
MAX_SIZES = dict(batch=2, spatial=5, channels=2, filters=3, kernel=3) if CUDA_SIMULATOR else dict(batch=4, spatial=11, channels=6, filters=7, kernel=5)
# float32 kernels against the float64 reference, error relative to the largest reference value.
RTOL = 1e-5


@pytest.fixture(params=COMPILED_BACKENDS)
def backend(request):
    """Each compiled backend in turn."""
    return load_backend(request.param)


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
    than float32 has.
    """
    expected = np.asarray(expected, dtype=np.float64)
    scale_of = expected if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    scale = max(np.abs(scale_of).max(), np.finfo(np.float64).tiny)
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
