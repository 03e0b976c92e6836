"""Let the convolution kernels make single-threaded BLAS calls inside their own threads.

The convolution kernels split their work into blocks of output pixels, each
thread of their team gathering patches and multiplying them in its own
core's cache. A BLAS that spawned its own threads inside each of those calls
would fight the team for the cores (and OpenBLAS warns that it may hang).

OpenBLAS, the BLAS of SciPy's wheels, exports ``openblas_set_num_threads_local``,
which sets its thread count and returns the previous one. Despite the name,
in OpenBLAS' pthreads builds the setting is process-wide, so the kernels call
it once before their parallel region and once after it, never inside. While a
convolution runs, BLAS calls from other Python threads are single-threaded.

We look the symbol up among the libraries that SciPy's ``cython_blas`` loaded.
With another BLAS it is absent and the kernels run as they are: the same
results, with BLAS threads competing.
"""

import ctypes

import scipy.linalg.cython_blas


def set_blas_threads_function():
    """OpenBLAS' ``openblas_set_num_threads_local`` (int -> previous int) as a ctypes function, or None."""
    try:
        function = ctypes.CDLL(scipy.linalg.cython_blas.__file__).openblas_set_num_threads_local
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_int]
    return function


def set_blas_threads_address():
    """The address of that function, or 0 when SciPy's BLAS has none."""
    function = set_blas_threads_function()
    return ctypes.cast(function, ctypes.c_void_p).value if function is not None else 0
