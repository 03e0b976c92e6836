"""The ``cuda`` backend: numba.cuda kernels, one module per op family, arrays resident on the GPU.

Its arrays are Numba device arrays. ``to_device`` copies a NumPy array to the
GPU (a device array stays), ``to_host`` copies back; kernels also accept
NumPy inputs and copy them over. Weights, optimizer state and activations stay
on the GPU during ``fit``: per step the batch goes in and the loss and the
outputs needed for the metrics come out.

Loading it without a usable GPU raises ImportError saying why; fastconv never
falls back to another backend silently. Under ``NUMBA_ENABLE_CUDASIM=1`` it
runs on Numba's CUDA simulator (slow; for tests on small shapes).
"""

import numpy as np

from fastconv.backends import checks
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import op_family_kernels


def _require_gpu():
    try:
        from numba import cuda
    except Exception as error:  # numba without its CUDA target, or a broken install
        raise ImportError(f"numba.cuda cannot be imported ({error}); install numba-cuda with a CUDA driver") from error
    try:
        available = cuda.is_available()
    except Exception as error:
        raise ImportError(f"numba.cuda cannot reach a GPU: {error}") from error
    if not available:
        raise ImportError(
            "no CUDA GPU is usable here (numba.cuda.is_available() is False: no NVIDIA GPU, no driver, or an "
            "unsupported one); set NUMBA_ENABLE_CUDASIM=1 to run on Numba's simulator"
        )
    return cuda


cuda = _require_gpu()

from fastconv.backends.cuda import activations, conv, dense, losses, pool, updates  # noqa: E402  (after the check)
from fastconv.backends.cuda._common import fill  # noqa: E402
from fastconv.backends import compile_time  # noqa: E402

compile_time.track()


class CudaBackend(CompiledBackend):
    """The kernel API of ``fastconv.backends.reference`` on device arrays: the CPU backends' checks and allocation,
    with device arrays (``empty``, ``zeros``), inputs adopted onto the GPU (``adopt``) and the element-wise product
    on the device; the optimizers' updates are the low-level kernels of ``updates.py``."""

    def __init__(self):
        super().__init__("cuda", op_family_kernels("cuda", conv, pool, dense, activations, losses, updates))

    def to_device(self, array):
        if checks.is_device_array(array):
            return array
        return cuda.to_device(np.ascontiguousarray(array))

    def to_host(self, array):
        return checks.host_array(array)

    def empty(self, shape, dtype=np.float32):
        return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        array = cuda.device_array(shape, dtype=dtype)
        if array.size:
            fill(array, 0)
        return array

    def adopt(self, *arrays):
        """Kernels accept NumPy inputs too: a C-contiguous ndarray is copied to the GPU as it is (its dtype kept).

        Anything else (a list, a strided view) is passed on unchanged, for the shared checks to refuse with the
        CPU backends' message: a device backend coerces nothing the CPU ones would refuse.
        """
        return [self.to_device(array) if isinstance(array, np.ndarray) and array.flags.c_contiguous else array for array in arrays]

    def multiply(self, a, b):
        """a * b, element-wise, same shapes."""
        a, b = self.adopt(a, b)
        if a.shape != b.shape:
            raise ValueError(f"multiply: shapes {a.shape} and {b.shape} differ")
        out = self.empty(a.shape)
        activations.multiply(a.reshape(a.size), b.reshape(b.size), out.reshape(out.size))
        return out


backend = CudaBackend()
