"""The ``numba`` backend: ``@njit`` kernels compiled on first use and cached on disk, one module per op family."""

from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import collect_kernels
from fastconv.backends.numba import activations, conv, dense, losses, pool, winograd

backend = CompiledBackend("numba", collect_kernels("numba", (conv, winograd, pool, dense, activations, losses)))
