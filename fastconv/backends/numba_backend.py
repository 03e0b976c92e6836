"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk."""

from fastconv.backends import numba_kernels
from fastconv.backends.compiled import CompiledBackend

backend = CompiledBackend("numba", numba_kernels)
