"""The ``cython`` backend (the default): the compiled kernels of src_ext/."""

from types import SimpleNamespace

from fastconv._ext import activations, conv, dense, pool
from fastconv.backends.compiled import CompiledBackend

kernels = SimpleNamespace(
    **{
        name: getattr(module, name)
        for module in (conv, pool, dense, activations)
        for name in dir(module)
        if not name.startswith("_") and callable(getattr(module, name))
    }
)

backend = CompiledBackend("cython", kernels)
