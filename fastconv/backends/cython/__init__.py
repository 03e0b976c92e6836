"""The ``cython`` backend (the default): the compiled kernels of src_ext/ (``conv.pyx``, ``pool.pyx``, ``dense.pyx``,
``activations.pyx``, ``losses.pyx``), built into ``fastconv._ext``."""

from fastconv._ext import activations, conv, dense, losses, pool
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import collect_kernels

backend = CompiledBackend("cython", collect_kernels("cython", (conv, pool, dense, activations, losses)))
