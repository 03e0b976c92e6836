"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk."""

import functools
from types import SimpleNamespace

from numba import cfunc, types

from fastconv.backends import numba_kernels
from fastconv.backends.blas_threads import set_blas_threads_function
from fastconv.backends.compiled import CompiledBackend


@cfunc(types.int32(types.int32), cache=True)
def _keep_blas_threads(threads):
    """Stands in for OpenBLAS' thread-count setter when SciPy's BLAS has none: BLAS keeps its threads."""
    return 0


_set_blas_threads = set_blas_threads_function() or _keep_blas_threads.ctypes
_BLAS_KERNELS = ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel", "dense_forward", "dense_backward")

kernels = SimpleNamespace(
    **{
        name: functools.partial(kernel, set_blas_threads=_set_blas_threads) if name in _BLAS_KERNELS else kernel
        for name, kernel in vars(numba_kernels).items()
        if not name.startswith("_") and callable(kernel) and name not in ("njit", "prange")
    }
)

backend = CompiledBackend("numba", kernels)
