"""The CPU backends' buffer pool: memory reused across steps, never while any array still views it."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv.backends import buffers, load_backend

LARGE = (512, 1024)  # 2 MiB of float32, above buffers.SMALL_BYTES


def test_an_array_from_the_pool_is_an_ordinary_writable_aligned_array():
    pool = buffers.BufferPool(64 << 20)
    for shape, dtype in [(LARGE, np.float32), ((3, 512, 256), np.int32), ((7,), np.float32)]:
        array = pool.empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.nbytes < buffers.SMALL_BYTES or array.ctypes.data % 64 == 0
        array[...] = 1
        assert array.sum() == array.size


def test_memory_is_reused_only_once_nothing_views_it():
    pool = buffers.BufferPool(64 << 20)
    first = pool.empty(LARGE)
    address = first.ctypes.data
    second = pool.empty(LARGE)
    assert not np.shares_memory(first, second)
    row = first[3]  # a view keeps the block busy after its array is gone
    del first
    third = pool.empty(LARGE)
    assert not np.shares_memory(third, row) and not np.shares_memory(third, second)
    del row
    assert pool.empty(LARGE).ctypes.data == address
    assert pool.held_bytes == 3 * LARGE[0] * LARGE[1] * 4


def test_the_pool_holds_no_more_than_its_limit_and_gives_back_unused_blocks():
    block_bytes = LARGE[0] * LARGE[1] * 4
    pool = buffers.BufferPool(2 * block_bytes)
    kept = [pool.empty(LARGE), pool.empty(LARGE)]
    beyond = pool.empty(LARGE)  # over the limit: a plain array, not held
    assert pool.held_bytes == 2 * block_bytes
    assert not any(np.shares_memory(beyond, array) for array in kept)
    del kept[0]
    other = pool.empty((LARGE[0] // 2, LARGE[1]))  # another size: the free block of the old one is given back
    assert pool.held_bytes == block_bytes + other.nbytes
    assert not np.shares_memory(other, kept[0])


def test_a_limit_of_zero_turns_the_pool_off(monkeypatch):
    monkeypatch.setenv("FASTCONV_BUFFER_POOL_BYTES", "0")
    pool = buffers.BufferPool()
    pool.empty(LARGE)
    assert pool.held_bytes == 0
    monkeypatch.setenv("FASTCONV_BUFFER_POOL_BYTES", "a lot")
    with pytest.raises(ValueError, match="FASTCONV_BUFFER_POOL_BYTES"):
        buffers.BufferPool()


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_outputs_a_caller_keeps_are_never_overwritten_by_later_calls(backend_name):
    backend = load_backend(backend_name)
    rng = np.random.default_rng(0)
    x_nhwc = rng.standard_normal((8, 64, 64, 16)).astype(np.float32)
    first = backend.relu_forward(x_nhwc)
    kept = first.copy()
    for _ in range(3):
        later = backend.relu_forward(-x_nhwc)
        assert not np.shares_memory(later, first)
    np.testing.assert_array_equal(first, kept)


ONE_OFF_CALL = """
import os
import numpy as np
from fastconv.backends import load_backend
from fastconv.backends import cython as cython_backend

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

backend = load_backend("cython")
rng = np.random.default_rng(0)
grad_out = rng.standard_normal((2, 256, 256, 8)).astype(np.float32)  # 'same' 5x5: 2 x 256 MiB of patches
kernel = rng.standard_normal((5, 5, 32, 8)).astype(np.float32)
before = rss_mib()
grad_x = backend.conv2d_backward_input(grad_out, kernel, (2, 256, 256, 32), (1, 1), "same")
del grad_x
held, limit = cython_backend.scratch_bytes()
print(round(rss_mib() - before), held // 2**20, limit // 2**20)
"""


def test_scratch_of_a_one_off_large_call_is_given_back_within_the_budget():
    """The input gradient of a 256x256 batch with a 5x5 kernel needs 256 MiB of patches per thread; a budget of
    96 MiB (a third of it for the scratch) must leave at most that much behind."""
    env = dict(os.environ, FASTCONV_BUFFER_POOL_BYTES=str(96 * 2**20), OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", ONE_OFF_CALL], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grown_mib, held_mib, limit_mib = map(int, out.stdout.split())
    assert limit_mib == 32
    assert held_mib <= limit_mib
    assert grown_mib < 96, f"the process kept {grown_mib} MiB after the call"
