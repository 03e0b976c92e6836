"""The ``cython`` backend (the default): the compiled kernels of src_ext/ (``conv.pyx`` and, for 3x3 stride-1
convolutions, ``winograd.pyx``; ``pool.pyx``, ``dense.pyx``, ``activations.pyx``, ``losses.pyx``), built into
``fastconv._ext``."""

from fastconv._ext import activations, conv, dense, losses, pool, winograd
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import collect_kernels

backend = CompiledBackend("cython", collect_kernels("cython", (conv, winograd, pool, dense, activations, losses)))
