"""Compiled Cython kernels, built from src_ext/*.pyx by ``pip install .`` once per SIMD level into
``fastconv/_ext/<level>/``; importing this package loads the level this CPU runs best (see :mod:`fastconv.simd_levels`).

``activations``, ``build_info``, ``conv``, ``dense``, ``losses``, ``pool`` and ``winograd`` are that level's
modules; ``LEVEL`` names it and ``load_level(name)`` gives another level's modules (the tests compare them).
"""

import importlib
import os
from types import SimpleNamespace

from fastconv import simd_levels as levels
from fastconv.backends import threads

MODULES = ("activations", "build_info", "conv", "dense", "losses", "pool", "winograd")


def load_level(name):
    """The compiled modules of level ``name`` as a namespace (``.conv``, ``.pool``, ...); ImportError, saying why,
    for a level not built or one whose instructions this CPU lacks (its code could die on its first instruction)."""
    levels.choose(levels.built_levels(), levels.cpu_features(), forced=name, asked_by=f"load_level({name!r})")
    return SimpleNamespace(**{module: importlib.import_module(f"{__name__}.{name}.{module}") for module in MODULES})


threads.set_openmp_waiting()  # before the first module loads libgomp
BUILT = levels.built_levels()
LEVEL = levels.choose(BUILT, levels.cpu_features(), os.environ.get(levels.ENVIRONMENT_VARIABLE) or None)
_modules = load_level(LEVEL)
activations, build_info, conv, dense, losses, pool, winograd = (getattr(_modules, module) for module in MODULES)
