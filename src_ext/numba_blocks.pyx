# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The driver's entry points for the numba backend (fastconv/backends/numba/_driver.py), as C addresses its compiled
code calls: ``run_blocks`` (src_ext/_driver.pxd) with a Numba ``@cfunc`` block function, and per-thread scratch
(src_ext/_scratch.pxd) for its blocks. Numba's own threads (its 'tbb' layer) spin and yield between loops and got a
fifth of a core beside a busy process, where the driver's helpers sleep between jobs and are kept off their caller's
CPU (docs/performance.md)."""

from _driver cimport fastconv_block_fn, run_blocks, share_driver
from _scratch cimport scratch_state, thread_scratch, trim_scratch

share_driver()  # the same helpers as every Cython module's


cdef void run_numba_blocks(void* block_fn, void* job, Py_ssize_t blocks, int threads) noexcept nogil:
    """block_fn(job, b) for every b in [0, blocks), on up to ``threads`` threads; then the calling thread gives its
    scratch back if this module holds more than it may keep."""
    run_blocks(<fastconv_block_fn>block_fn, job, blocks, threads)
    trim_scratch()


cdef void* numba_thread_scratch(int slot, size_t bytes) noexcept nogil:
    """At least ``bytes`` of the calling thread's own 64-byte aligned memory, kept for its next call (NULL: out of
    memory or a bad slot)."""
    return thread_scratch(slot, bytes)


def addresses():
    """``(run_numba_blocks, numba_thread_scratch)``: the two functions' addresses."""
    return <size_t><void*>run_numba_blocks, <size_t><void*>numba_thread_scratch


def scratch(limit_bytes=None):
    """``(bytes, limit)``: the scratch this module's threads hold now, and what they may keep between calls (set to
    ``limit_bytes`` first, unless None)."""
    return scratch_state(limit_bytes)
