"""Keep BLAS single-threaded while a convolution or dense kernel runs its own threads.

The convolution kernels split their work into blocks of output pixels, each
thread of their team gathering patches and multiplying them in its own
core's cache. A BLAS that spawned its own threads inside each of those calls
would fight the team for the cores (and OpenBLAS warns that it may hang).

OpenBLAS, the BLAS of SciPy's wheels, exports ``openblas_set_num_threads_local``,
which sets its thread count and returns the previous one. Despite the name,
in OpenBLAS' pthreads builds the setting is process-wide. So it is changed
here, once, around every kernel call, under a lock and with a count of the
calls in flight: the first call to enter saves the count and sets 1, the last
to leave restores it. Two Python threads predicting at once therefore leave
BLAS as they found it (a plain save/restore in each call would race, and
could leave the whole process at one BLAS thread). While a kernel runs, BLAS
calls from other Python threads are single-threaded.

We look the symbols up among the libraries that SciPy's ``cython_blas``
loaded. With another BLAS they are absent and the kernels run as they are:
the same results, with BLAS threads competing.
"""

import ctypes
import threading

import scipy.linalg.cython_blas


def _blas_function(*names):
    try:
        library = ctypes.CDLL(scipy.linalg.cython_blas.__file__)
    except OSError:  # pragma: no cover - SciPy without a loadable BLAS
        return None
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            function.restype = ctypes.c_int
            return function
    return None


_set_threads = _blas_function("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local")
if _set_threads is not None:
    _set_threads.argtypes = [ctypes.c_int]
_get_threads = _blas_function("scipy_openblas_get_num_threads", "openblas_get_num_threads")


def blas_thread_count():
    """OpenBLAS' current thread count, or None when SciPy's BLAS does not say."""
    return None if _get_threads is None else int(_get_threads())


class _SingleThreadedBlas:
    """Context manager: BLAS at one thread from the first entry in flight to the last exit."""

    def __init__(self, set_threads):
        self._set_threads = set_threads
        self._lock = threading.Lock()
        self._in_flight = 0
        self._saved = None

    def __enter__(self):
        if self._set_threads is not None:
            with self._lock:
                if self._in_flight == 0:
                    self._saved = self._set_threads(1)
                self._in_flight += 1
        return self

    def __exit__(self, *exc_info):
        if self._set_threads is not None:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._set_threads(self._saved)
        return False


single_threaded_blas = _SingleThreadedBlas(_set_threads)
