"""Compiled Cython kernels, built from src_ext/*.pyx by ``pip install .``."""
