"""Compile every CUDA kernel for a real GPU (sm_90 PTX) on a machine without one, before device time is spent.

The simulator (NUMBA_ENABLE_CUDASIM=1) runs the kernels as Python, so it never types them: a kernel that the real
compiler refuses passes every simulator test. This script records the argument types of every kernel launch the
cuda test suites make under the simulator, then compiles each (kernel, types) pair with the real numba-cuda and
NVVM, which need no GPU:

    pip install --target /tmp/cudasite "numba-cuda[cu12]" numba==<this numba> llvmlite==<this llvmlite> numpy==<this numpy>
    python benchmarks/cuda_compile_check.py --site /tmp/cudasite          # ~4 min: the simulator suites, then ~5 s

It prints one line per kernel and signature and exits 1 if any fails to compile.
"""

import argparse
import atexit
import importlib
import os
import pickle
import subprocess
import sys
import time
import types as python_types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("test_kernels.py", "test_bad_inputs.py", "test_gradients.py", "test_model_gradients.py", "test_nan_and_inf.py",
          "test_resume.py", "test_cuda.py")  # fmt: skip
TRACE_ENV = "FASTCONV_CUDA_TRACE"


def _record_launches(trace_path):
    """(As a pytest plugin under the simulator) record every kernel launch's numba argument types at exit."""
    import numpy as np
    from numba import typeof, types
    from numba.cuda.simulator import kernel as simulator_kernel
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    seen = set()

    def numba_type(arg):
        if isinstance(arg, FakeCUDAArray):
            arg = arg._ary
        if isinstance(arg, np.ndarray):  # device arrays are never read-only: type them as the GPU target does
            layout = "C" if arg.flags.c_contiguous else ("F" if arg.flags.f_contiguous else "A")
            return types.Array(typeof(arg).dtype, arg.ndim, layout)
        return typeof(arg)

    launch = simulator_kernel.FakeCUDAKernel.__call__

    def recording_launch(self, *args):
        if not self._device:
            seen.add((self.fn.__module__, self.fn.__name__, tuple(numba_type(arg) for arg in args)))
        return launch(self, *args)

    simulator_kernel.FakeCUDAKernel.__call__ = recording_launch
    atexit.register(lambda: Path(trace_path).write_bytes(pickle.dumps(seen)))


if os.environ.get(TRACE_ENV) and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _record_launches(os.environ[TRACE_ENV])


def trace(trace_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", **{TRACE_ENV: str(trace_path)},
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "cuda_compile_check",
               *(str(ROOT / "tests" / name) for name in SUITES)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:])
    if result.returncode:
        print(result.stdout[-4000:], result.stderr[-2000:])
    return result.returncode


def compile_all(trace_path, cc):
    """(In a process with the real numba-cuda first on the path) compile every traced signature to PTX."""
    from numba import cuda
    from numba.cuda import dispatcher

    class TargetDevice:  # device functions ask the current device for its compute capability
        compute_capability = cc

    dispatcher.get_current_device = lambda: TargetDevice()
    sys.path.insert(0, str(ROOT))
    importlib.import_module("fastconv.backends")  # the package, without its cuda __init__, which looks for a GPU

    package = python_types.ModuleType("fastconv.backends.cuda")
    package.__path__ = [str(ROOT / "fastconv" / "backends" / "cuda")]
    sys.modules["fastconv.backends.cuda"] = package
    failures = 0
    for module, name, argument_types in sorted(pickle.loads(Path(trace_path).read_bytes()), key=str):
        kernel = getattr(importlib.import_module(module), name)
        started = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, argument_types, cc=cc)
            print(f"ok    {module.rsplit('.', 1)[-1]}.{name} {argument_types}: {len(ptx):,} chars of PTX, {time.perf_counter() - started:.2f} s")
        except Exception as error:
            failures += 1
            print(f"FAIL  {module}.{name} {argument_types}: {type(error).__name__}: {error}")
    print(f"{failures} of the traced kernel signatures failed to compile for sm_{cc[0]}{cc[1]}")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True, help="a folder holding numba-cuda and its NVVM / NVRTC wheels")
    parser.add_argument("--trace", default="/tmp/fastconv_cuda_trace.pkl")
    parser.add_argument("--cc", default="9.0", help="compute capability to compile for (9.0: H100 / H200)")
    parser.add_argument("--compile-only", action="store_true", help="reuse the trace of an earlier run")
    args = parser.parse_args()
    cc = tuple(int(part) for part in args.cc.split("."))
    if not args.compile_only and trace(args.trace):
        return 1
    libraries = [str(path) for path in Path(args.site).glob("nvidia/*/lib")]
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join([*libraries, os.environ.get("LD_LIBRARY_PATH", "")]))
    code = f"import site; site.addsitedir({args.site!r}); import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); " \
           f"import cuda_compile_check as check; sys.exit(check.compile_all({args.trace!r}, {cc!r}))"  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
