"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk, one module per op family; the
blocks of its convolutions, max pooling and dense run on the Cython kernels' driver (``_driver``), its other parallel
loops on Numba's threading layer."""

import ctypes
import importlib.metadata
import os
import sys
from pathlib import Path

import numba

from fastconv.backends import compile_time, threads
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import op_family_kernels

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


def load_tbb():
    """Make Numba's 'tbb' threading layer loadable, so that Numba's default choice takes it; True if it is. It runs
    the parallel loops that are not on the driver: activations, losses, optimizers, average pooling, large sums.

    That layer hands a parallel loop's chunks out by work stealing, so a thread that another process keeps off its
    core holds back its current chunk only, where an 'omp' loop waits for every thread of its team: with one of two
    cores busy, the MNIST step ran at ~1,400 samples/s on 'tbb' against ~400 on 'omp' (as fast quiet;
    docs/performance.md). Its library comes from the ``tbb`` wheel (a dependency on Linux x86-64), installed into
    ``<prefix>/lib``, where the dynamic loader does not look: it is loaded here by path. Nothing happens where the
    user chose a layer (``NUMBA_THREADING_LAYER``) or the wheel is absent; Numba then picks as it always does.
    """
    if os.environ.get("NUMBA_THREADING_LAYER", "default").strip().lower() != "default":
        return False
    try:
        files = importlib.metadata.distribution("tbb").files or ()
    except importlib.metadata.PackageNotFoundError:
        return False
    for file in files:
        if file.name == "libtbb.so.12":
            try:
                ctypes.CDLL(str(file.locate()), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return False
            return True
    return False


TBB_LOADED = load_tbb()
threads.set_openmp_waiting()  # Numba's 'omp' threading layer, where it is chosen, loads libgomp at its first parallel loop
compile_time.track()
_notice = first_use_notice()
if _notice:  # before the imports below: their block functions (@cfunc) compile as they load
    print(_notice, file=sys.stderr)

from fastconv.backends.numba import activations, conv, dense, losses, pool, updates, winograd  # noqa: E402


def _set_default_threads(count):
    """Numba's prange loops, started from the calling thread, on ``count`` threads (at most the pool it started)."""
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))


backend = CompiledBackend("numba", op_family_kernels("numba", conv, pool, dense, activations, losses, updates, winograd), _set_default_threads)
