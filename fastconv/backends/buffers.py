"""Reusable memory for the CPU backends' large outputs, so that a training step does not fault its pages in anew.

A training step allocates the same large arrays every step (activations, their gradients, pooling indices) and
frees them by the next. Freshly allocated memory above a few hundred KiB comes from the kernel as untouched pages
(glibc maps it, and returns it when freed), and the first write to each page is a page fault plus zeroing: on
the MNIST convnet that doubled the step time (37 ms against 15 ms with memory kept; docs/performance.md).

:class:`BufferPool` keeps the blocks it hands out. An array it returns is a view of one of its blocks, so the
block is busy for as long as that array or any view of it lives (numpy keeps the block as the views' ``base``);
once the last one is gone, only the pool refers to the block and the next request of that size takes it again.
Nothing is ever handed out twice while in use, and a caller sees an ordinary, writable, C-contiguous array.
Small requests, and any request once the pool holds ``limit_bytes``, get a plain ``np.empty``.
"""

import math
import os
import sys
import threading

import numpy as np

# Below this, glibc serves requests from memory it keeps: nothing to gain.
SMALL_BYTES = 1 << 18
# What fastconv keeps between calls, at most: this pool's blocks and the compiled kernels' per-thread scratch
# (src_ext/_scratch.pxd) share it, SCRATCH_SHARE of it for the scratch. The largest training steps of the notes,
# VGG16 at 150x150 in batches of 20 and the cats-vs-dogs convnet at 32, hold under 1 GiB of outputs at once and
# tens of MiB of scratch per thread. $FASTCONV_BUFFER_POOL_BYTES overrides it; 0 keeps nothing between calls.
DEFAULT_LIMIT_BYTES = 3 << 30
SCRATCH_SHARE = 1 / 3  # by default 2 GiB for the pool, 1 GiB for the scratch
_ALIGNMENT = 64
_GRANULE = 1 << 16


def _references_of_a_free_block():
    """What ``sys.getrefcount`` says of a block only a pool's list holds (2 on CPython 3.11: the list and the call's
    argument), measured the way :meth:`BufferPool._free_block` asks, since interpreters count borrowed arguments
    differently."""
    blocks = [np.empty(1, np.uint8)]
    return sys.getrefcount(blocks[0])


_FREE_REFERENCES = _references_of_a_free_block()


def _is_free(blocks, index):
    """Whether only the pool's list ``blocks`` refers to ``blocks[index]``: no array views it."""
    return sys.getrefcount(blocks[index]) <= _FREE_REFERENCES


def budget_bytes():
    """FASTCONV_BUFFER_POOL_BYTES, or the default: what the pool and the kernels' scratch may keep together."""
    text = os.environ.get("FASTCONV_BUFFER_POOL_BYTES", "").strip()
    if not text:
        return DEFAULT_LIMIT_BYTES
    if not text.isdigit():
        raise ValueError(f"FASTCONV_BUFFER_POOL_BYTES must be a number of bytes (0 turns the pool off), got {text!r}")
    return int(text)


def scratch_limit_bytes():
    """What the compiled kernels' per-thread scratch (Cython's, and the numba backend's blocks') may keep between calls,
    all threads and modules together."""
    return int(budget_bytes() * SCRATCH_SHARE)


def _limit_from_environment():
    return budget_bytes() - scratch_limit_bytes()


class BufferPool:
    """``empty(shape, dtype)`` as ``np.empty``, from blocks reused once every array viewing them is gone."""

    def __init__(self, limit_bytes=None):
        self.limit_bytes = _limit_from_environment() if limit_bytes is None else int(limit_bytes)
        self._blocks = {}  # granule-rounded bytes -> [uint8 arrays of that many bytes + alignment slack]
        self._held_bytes = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self):
        """Bytes of the blocks the pool holds, busy or free."""
        return self._held_bytes

    def empty(self, shape, dtype=np.float32):
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        if not isinstance(shape, tuple):
            shape = tuple(shape) if np.iterable(shape) else (shape,)
        # math.prod, not np.prod: this runs ~30 times a training step, and np.prod costs ~8 us a call
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < SMALL_BYTES or self.limit_bytes <= 0:
            return np.empty(shape, dtype)
        size = -(-nbytes // _GRANULE) * _GRANULE
        with self._lock:
            block = self._free_block(size)
            if block is None:
                if self._held_bytes + size > self.limit_bytes:
                    self._drop_free_blocks()
                if self._held_bytes + size > self.limit_bytes:
                    return np.empty(shape, dtype)
                block = np.empty(size + _ALIGNMENT, np.uint8)
                self._blocks.setdefault(size, []).append(block)
                self._held_bytes += size
            start = -block.ctypes.data % _ALIGNMENT
            return block[start : start + nbytes].view(dtype).reshape(shape)

    def _free_block(self, size):
        blocks = self._blocks.get(size, ())
        for index in range(len(blocks)):
            if _is_free(blocks, index):
                return blocks[index]
        return None

    def _drop_free_blocks(self):
        """Give back the blocks nobody uses (a model of other shapes has taken over)."""
        for size, blocks in list(self._blocks.items()):
            busy = [blocks[index] for index in range(len(blocks)) if not _is_free(blocks, index)]
            self._held_bytes -= size * (len(blocks) - len(busy))
            if busy:
                self._blocks[size] = busy
            else:
                del self._blocks[size]

    def release(self):
        """Forget every block: free ones go back to the system now, busy ones when their arrays are gone."""
        with self._lock:
            self._blocks.clear()
            self._held_bytes = 0


pool = BufferPool()
