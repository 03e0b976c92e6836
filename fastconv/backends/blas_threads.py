"""Let the Cython convolution run single-threaded BLAS calls inside its own threads.

The convolution kernels split their work into blocks of output pixels, one
team of OpenMP threads gathering patches and multiplying them in the same
core's cache. A BLAS that spawns its own threads inside each of those calls
would fight the team for the cores. OpenBLAS (the BLAS of SciPy's wheels)
exports ``openblas_set_num_threads_local``, which sets the thread count of
the calling thread only; we look it up among the libraries that SciPy's
``cython_blas`` loaded and give its address to the compiled module. With
another BLAS the symbol is absent and the kernels run as they are: correct,
just with BLAS threads competing.
"""

import ctypes

import scipy.linalg.cython_blas


def set_threads_local_function():
    """OpenBLAS' ``openblas_set_num_threads_local`` from SciPy's BLAS as a ctypes function, or None."""
    try:
        function = ctypes.CDLL(scipy.linalg.cython_blas.__file__).openblas_set_num_threads_local
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_int]
    return function


def find_set_threads_local():
    """Address of ``openblas_set_num_threads_local`` in SciPy's BLAS, or 0 when it has none."""
    function = set_threads_local_function()
    return ctypes.cast(function, ctypes.c_void_p).value if function is not None else 0
