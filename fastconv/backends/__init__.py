"""Backends and the one dispatch point between them and everything else.

A backend is an object (or module) exposing the kernel API of
``fastconv.backends.reference`` — the same function names, signatures and
shapes — plus ``name``, ``to_device(array)`` and ``to_host(array)``. CPU
backends work on NumPy arrays and the two conversions are the identity; the
device backend (``cuda``) keeps its arrays on the GPU and converts only at
those two calls, so code written against this API needs no change for it.
:func:`to_numpy` brings an array of any backend back without asking which.

Choose one with :func:`set_backend`, :func:`use_backend` or the environment
variable ``FASTCONV_BACKEND``; :func:`get_backend` returns the current one.
"""

import contextlib
import os

from fastconv.backends.checks import host_array

BACKEND_NAMES = ("cython", "numba", "reference", "cuda")
DEFAULT_BACKEND = "cython"
_loaded = {}
_current = None


def to_numpy(array):
    """``array`` as a NumPy array, whichever backend made it (a GPU array is copied back; anything else is returned)."""
    return host_array(array)


def available_backends():
    """Names that :func:`set_backend` accepts."""
    return BACKEND_NAMES


def _import_backend(name):
    """The backend object of ``name``: one plain import each (as Keras picks its backend), so that grep and an
    editor's "go to definition" reach it; each is imported on first use (numba compiles, cuda needs a GPU)."""
    if name == "cython":
        from fastconv.backends.cython import backend
    elif name == "numba":
        from fastconv.backends.numba import backend
    elif name == "cuda":
        from fastconv.backends.cuda import backend
    else:
        from fastconv.backends import reference as backend
    return backend


def load_backend(name):
    """Return the backend called ``name``, importing it on first use."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown fastconv backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name not in _loaded:
        try:
            _loaded[name] = _import_backend(name)
        except ImportError as error:
            raise ImportError(f"fastconv backend {name!r} cannot be loaded: {error}") from error
    return _loaded[name]


def get_backend():
    """The backend in use: the last :func:`set_backend`, else ``$FASTCONV_BACKEND``, else ``'cython'``."""
    global _current
    if _current is None:
        _current = load_backend(os.environ.get("FASTCONV_BACKEND", DEFAULT_BACKEND).strip().lower())
    return _current


def set_backend(name):
    """Make ``name`` the backend every layer uses; returns it."""
    global _current
    _current = load_backend(name)
    return _current


@contextlib.contextmanager
def use_backend(name):
    """``with use_backend('numba'): ...`` runs the block on that backend, then restores the previous one."""
    global _current
    previous = get_backend()
    _current = load_backend(name)
    try:
        yield _current
    finally:
        _current = previous
