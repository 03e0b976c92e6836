"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk, one module per op family."""

import os
import sys
from pathlib import Path

import numba

from fastconv.backends import compile_time, threads
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import collect_kernels
from fastconv.backends.numba import activations, conv, dense, losses, pool, winograd

CACHE_FOLDER = Path(__file__).resolve().parent / "__pycache__"


def cached_kernel_count(folder=CACHE_FOLDER):
    """How many compiled kernels Numba has cached for this backend (0: its first use compiles them)."""
    return len(list(Path(folder).glob("*.nbc"))) if Path(folder).is_dir() else 0


def first_use_notice(folder=CACHE_FOLDER, environment=os.environ):
    """The line to print when this backend loads with nothing compiled yet (so that the wait is not silent), or None."""
    if environment.get("NUMBA_CACHE_DIR") or cached_kernel_count(folder):
        return None
    return (
        f"fastconv: the numba backend compiles its kernels on first use, once (about a minute on a 2-core machine); "
        f"later runs load them from {folder}"
    )


threads.set_openmp_waiting()  # Numba's 'omp' threading layer loads libgomp at its first parallel loop
compile_time.track()
_notice = first_use_notice()
if _notice:
    print(_notice, file=sys.stderr)


def _set_default_threads(count):
    """Numba's prange loops, started from the calling thread, on ``count`` threads (at most the pool it started)."""
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))


backend = CompiledBackend("numba", collect_kernels("numba", (conv, winograd, pool, dense, activations, losses)), _set_default_threads)
