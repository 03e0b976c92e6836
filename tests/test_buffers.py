"""The CPU backends' buffer pool: memory reused across steps, never while any array still views it."""

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
