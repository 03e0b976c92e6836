"""The ``cython`` backend (the default): the compiled kernels of src_ext/ (``conv.pyx`` and, for 3x3 stride-1
convolutions, ``winograd.pyx``; ``pool.pyx``, ``dense.pyx``, ``activations.pyx``, ``losses.pyx``, ``updates.pyx``), built into
``fastconv._ext``."""

from pathlib import Path

from fastconv import install_check
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import op_family_kernels

try:
    from fastconv._ext import activations, build_info, conv, dense, losses, pool, scratch_bytes, updates, winograd
except ImportError as error:  # the tree was not built, or a source tree shadows the installed package
    raise ImportError(install_check.missing_build_message(Path(__file__).resolve().parents[2], error)) from error

backend = CompiledBackend(
    "cython", op_family_kernels("cython", conv, pool, dense, activations, losses, updates, winograd), build_info.set_default_threads
)

__all__ = ["backend", "scratch_bytes"]  # scratch_bytes: fastconv._ext's, for both CPU backends
