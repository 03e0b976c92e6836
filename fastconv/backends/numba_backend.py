"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk."""

from types import SimpleNamespace

from fastconv.backends import numba_kernels
from fastconv.backends.compiled import CompiledBackend

kernels = SimpleNamespace(
    **{
        name: kernel
        for name, kernel in vars(numba_kernels).items()
        if not name.startswith("_") and callable(kernel) and name not in ("njit", "prange")
    }
)

backend = CompiledBackend("numba", kernels)
