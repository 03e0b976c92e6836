"""The dispatched build against ``-march=native``: every conv and pool layer of benchmarks/layers.py (the notes' two
convnets, one training step each), on the cython kernels of each SIMD level built, interleaved in one process.

    FASTCONV_NATIVE=1 python setup.py build_ext --inplace    # adds the native level beside the three shipped ones
    python benchmarks/simd_levels.py [rounds]                # median of the rounds per level; ratios to native

Issue 15's bar: the level the import picks within 5 % of native on the convolution layers.
"""

import sys
import time

import numpy as np

from fastconv import _ext, simd_levels
from fastconv.backends.compiled import CompiledBackend
from fastconv.backends.contract import op_family_kernels
from layers import LAYERS, ConvLayer, make_step


def level_backend(name):
    modules = _ext.load_level(name)
    kernels = op_family_kernels("cython", modules.conv, modules.pool, modules.dense, modules.activations, modules.losses,
                                modules.winograd)  # fmt: skip
    return CompiledBackend(f"cython-{name}", kernels)


def main(rounds=7):
    names = simd_levels.runnable(_ext.BUILT)
    reference = "native" if "native" in names else names[-1]
    # What a wheel (the shipped levels alone) picks on this CPU.
    shipped_levels = {name: needed for name, needed in _ext.BUILT.items() if name != simd_levels.NATIVE}
    shipped = simd_levels.choose(shipped_levels, simd_levels.cpu_features())
    backends = {name: level_backend(name) for name in names}
    print(f"levels: {', '.join(names)} (a wheel picks {shipped}); {rounds} interleaved rounds, median ms")
    print(f"{'layer':34s}" + "".join(f"{name:>10s}" for name in names) + f"   {shipped}/{reference}")
    totals = {name: {"conv": 0.0, "pool": 0.0} for name in names}
    for layer in LAYERS:
        steps = {name: make_step(layer, "cython", backend=backend) for name, backend in backends.items()}
        times = {name: [] for name in names}
        for step in steps.values():
            step()
        for _ in range(rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        medians = {name: float(np.median(values)) * 1e3 for name, values in times.items()}
        kind = "conv" if isinstance(layer, ConvLayer) else "pool"
        for name in names:
            totals[name][kind] += medians[name]
        print(f"{layer.name:34s}" + "".join(f"{medians[name]:10.2f}" for name in names)
              + f"   {medians[shipped] / medians[reference]:.3f}")  # fmt: skip
    for kind in ("conv", "pool"):
        print(f"{'sum of the ' + kind + ' layers':34s}" + "".join(f"{totals[name][kind]:10.1f}" for name in names)
              + f"   {totals[shipped][kind] / totals[reference][kind]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
