"""The installed package: compiled modules load, backends are chosen as documented."""

import importlib.machinery
import os
import subprocess
import sys

import numpy as np

import fastconv
from fastconv.backends import load_backend


def test_cython_kernels_are_compiled_extensions():
    from fastconv._ext import activations, conv, dense, pool

    for module in (conv, pool, dense, activations):
        assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__


def test_default_backend_is_cython_and_set_backend_switches():
    previous = fastconv.get_backend()
    try:
        assert fastconv.set_backend("numba").name == "numba"
        assert fastconv.get_backend().name == "numba"
        with fastconv.use_backend("reference") as inner:
            assert inner.name == "reference" and fastconv.get_backend() is inner
        assert fastconv.get_backend().name == "numba"
    finally:
        fastconv.set_backend(previous.name)


def test_environment_variable_chooses_the_backend():
    code = "import fastconv; print(fastconv.get_backend().name)"
    for name, expected in (("numba", "numba"), ("", "cython")):
        env = dict(os.environ, FASTCONV_BACKEND=name) if name else {k: v for k, v in os.environ.items() if k != "FASTCONV_BACKEND"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_cpu_backends_are_host_resident():
    x = np.ones((2, 2), np.float32)
    for name in ("cython", "numba", "reference"):
        backend = load_backend(name)
        assert backend.to_host(backend.to_device(x)) is x
