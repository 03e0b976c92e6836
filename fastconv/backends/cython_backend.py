"""The ``cython`` backend (the default): the compiled kernels of src_ext/."""

from types import SimpleNamespace

from fastconv._ext import activations, conv, dense, pool
from fastconv.backends.blas_threads import set_blas_threads_address
from fastconv.backends.compiled import CompiledBackend

for _module in (conv, dense):
    _module.set_blas_thread_control(set_blas_threads_address())

kernels = SimpleNamespace(
    **{
        name: getattr(module, name)
        for module in (conv, pool, dense, activations)
        for name in dir(module)
        if not name.startswith(("_", "set_")) and callable(getattr(module, name))
    }
)

backend = CompiledBackend("cython", kernels)
