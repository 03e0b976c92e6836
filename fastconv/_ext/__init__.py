"""Compiled Cython kernels, built from src_ext/*.pyx by ``pip install .`` once per SIMD level into
``fastconv/_ext/<level>/``; importing this package loads the level this CPU runs best (see :mod:`fastconv.simd_levels`).

``activations``, ``build_info``, ``conv``, ``dense``, ``losses``, ``numba_blocks``, ``pool``, ``updates`` and ``winograd``
are that level's modules; ``LEVEL`` names it and ``load_level(name)`` gives another level's modules (the tests compare them).
"""

import os
from types import SimpleNamespace

from fastconv import simd_levels as levels
from fastconv.backends import buffers, threads


def load_level(name):
    """The compiled modules of level ``name`` as a namespace (``.conv``, ``.pool``, ...); ImportError, saying why,
    for a level not built or one whose instructions this CPU lacks (its code could die on its first instruction)."""
    levels.choose(levels.built_levels(), levels.cpu_features(), forced=name, asked_by=f"load_level({name!r})")
    # One plain import per level (as Keras picks its backend), so that grep finds where each module comes from.
    if name == "baseline":
        from fastconv._ext.baseline import activations, build_info, conv, dense, losses, numba_blocks, pool, updates, winograd
    elif name == "avx2":
        from fastconv._ext.avx2 import activations, build_info, conv, dense, losses, numba_blocks, pool, updates, winograd
    elif name == "avx512":
        from fastconv._ext.avx512 import activations, build_info, conv, dense, losses, numba_blocks, pool, updates, winograd
    elif name == levels.NATIVE:
        from fastconv._ext.native import activations, build_info, conv, dense, losses, numba_blocks, pool, updates, winograd
    else:
        raise ImportError(f"load_level({name!r}): fastconv has no such level")
    return SimpleNamespace(activations=activations, build_info=build_info, conv=conv, dense=dense, losses=losses,
                           numba_blocks=numba_blocks, pool=pool, updates=updates, winograd=winograd)  # fmt: skip


threads.set_openmp_waiting()  # before the first module loads libgomp
BUILT = levels.built_levels()
LEVEL = levels.choose(BUILT, levels.cpu_features(), os.environ.get(levels.ENVIRONMENT_VARIABLE) or None)
_modules = load_level(LEVEL)
activations, build_info, conv, dense, losses, numba_blocks, pool, updates, winograd = (
    _modules.activations, _modules.build_info, _modules.conv, _modules.dense, _modules.losses, _modules.numba_blocks,
    _modules.pool, _modules.updates, _modules.winograd,
)  # fmt: skip

# The modules whose threads keep per-thread scratch between calls (src_ext/_scratch.pxd; numba_blocks for the numba
# backend's blocks), and its bound, shared among them so that both CPU backends together keep no more than
# fastconv.backends.buffers.scratch_limit_bytes().
SCRATCH_MODULES = (conv, winograd, numba_blocks)
_limit = buffers.scratch_limit_bytes()
for _index, _module in enumerate(SCRATCH_MODULES):
    _module.scratch(_limit // len(SCRATCH_MODULES) + (_index < _limit % len(SCRATCH_MODULES)))


def scratch_bytes():
    """``(held, limit)``: the bytes of scratch the compiled kernels' threads hold now, and what they may keep."""
    states = [module.scratch() for module in SCRATCH_MODULES]
    return sum(held for held, _ in states), sum(limit for _, limit in states)
