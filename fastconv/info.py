"""``python -m fastconv info`` and ``fastconv.show_config()``: what this installation is and can do, for bug reports.

As ``numpy.show_config()`` and PyTorch's ``collect_env``: the version, the compiled kernels (SIMD level, OpenMP), the
threads, the BLAS, which backends load (and why not), the settings in force, and the data and weights found. Nothing
here changes state: a backend that is not loaded yet is imported to see whether it loads, and nothing compiles.
"""

import os
import platform
import sys
from pathlib import Path

import fastconv
from fastconv import install_check
from fastconv import simd_levels as levels
from fastconv.applications.vgg16 import WEIGHTS_FILE, WEIGHTS_FILE_NO_TOP
from fastconv.applications.weights_files import search_folders
from fastconv.backends import algorithms, blas_threads, buffers, load_backend, threads


def _versions():
    versions = {}
    for name in ("numpy", "scipy", "numba", "PIL"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return versions


def _cpu():
    """(model name, SIMD flags of interest) from /proc/cpuinfo, or the platform's words elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == platform.machine():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, [flag for flag in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni") if flag in flags]


def _cython_lines():
    package = Path(fastconv.__file__).resolve().parent
    try:
        from fastconv import _ext
    except ImportError as error:
        return [f"  cython: does not load: {install_check.missing_build_message(package, error)}"]
    load_backend("cython")
    from fastconv.backends import cython as cython_backend

    openmp = "OpenMP" if _ext.build_info.openmp() else "no OpenMP (pooling, activations and losses on one thread)"
    forced = os.environ.get(levels.ENVIRONMENT_VARIABLE)
    why = f"forced by {levels.ENVIRONMENT_VARIABLE}={forced}" if forced else "the widest this CPU runs"
    return [
        f"  cython (default): loads; SIMD level {_ext.LEVEL} ({why}; compiler macros: {_ext.build_info.simd_level()}), "
        f"{openmp}; {package / '_ext' / _ext.LEVEL}",
        f"    levels built: {', '.join(sorted(_ext.BUILT, key=levels.preference))}",
        "    per-thread scratch: holds {:.0f} MiB of the {:.0f} MiB its threads may keep between calls".format(
            *(size / 2**20 for size in cython_backend.scratch_bytes())),
    ]


def _numba_lines():
    try:
        load_backend("numba")
    except ImportError as error:
        return [f"  numba: does not load: {error}"]
    from fastconv.backends import numba as numba_backend

    cache, compiled_files = numba_backend.CACHE_FOLDER, numba_backend.cached_kernel_count()
    state = (f"{compiled_files} compiled kernels cached in {cache}" if compiled_files else
             "not compiled yet: its first use compiles the kernels once (about a minute), then they are cached")
    import numba

    setting = numba.config.THREADING_LAYER
    layer = ("'tbb' (work stealing: a thread kept off its core holds back one chunk)" if numba_backend.TBB_LOADED
             else f"setting {setting!r}" + ("" if setting != "default" else " (the 'tbb' wheel is not installed)"))
    return [f"  numba: loads; {state}; convolutions, max pooling and dense on the Cython kernels' driver, the other loops "
            f"on Numba's threading layer {layer}"]


def _cuda_lines():
    try:
        from numba import cuda
    except ImportError as error:
        return [f"  cuda: unavailable: {error}"]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return ["  cuda: Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): correct but slow, for tests"]
    try:
        available = cuda.is_available()
    except Exception as error:  # noqa: BLE001 - a driver problem is what the report is for
        return [f"  cuda: unavailable: {error}"]
    if not available:
        return ["  cuda: unavailable: no CUDA GPU or driver found (numba.cuda.is_available() is False)"]
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return [f"  cuda: GPU {name}, compute capability {device.compute_capability}"]


def _data_lines():
    mnist = Path(fastconv.__file__).resolve().parent / "datasets" / "data"
    mnist_files = sorted(path.name for path in mnist.glob("*-ubyte.gz"))
    lines = [f"  MNIST (bundled): {'4 files' if len(mnist_files) == 4 else f'{len(mnist_files)} of 4 files'} in {mnist}"]
    home = os.environ.get("FASTCONV_HOME")
    lines.append(f"  FASTCONV_HOME: {home if home else 'not set'}")
    for file_name in (WEIGHTS_FILE_NO_TOP, WEIGHTS_FILE):
        found = next((folder / file_name for folder in search_folders() if (folder / file_name).is_file()), None)
        looked = ", ".join(str(folder) for folder in search_folders())
        lines.append(f"  VGG16 {file_name}: {found if found else f'not found (looked in {looked})'}")
    return lines


def report():
    """The report, as lines of text."""
    model, simd = _cpu()
    versions = _versions()
    blas = blas_threads.blas_thread_count()
    pool = buffers.pool
    lines = [
        f"fastconv {fastconv.__version__} at {Path(fastconv.__file__).resolve().parent}",
        f"Python {platform.python_version()} ({sys.executable}) on {platform.system()} {platform.machine()}",
        "  " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        f"CPU: {model}; SIMD: {', '.join(simd) if simd else 'none of sse4.2/avx/avx2/fma/avx512f reported'}",
        "threads: the kernels use {} ({})".format(*threads.choice()),
        f"BLAS: SciPy's ({'OpenBLAS, ' + str(blas) + ' threads outside the kernels, 1 inside' if blas is not None else 'thread count unknown'}); "
        f"OPENBLAS_CORETYPE {os.environ.get('OPENBLAS_CORETYPE', 'not set')}, OPENBLAS_L2_SIZE {os.environ.get('OPENBLAS_L2_SIZE', 'not set')}",
        "backends:",
        *_cython_lines(),
        *_numba_lines(),
        *_cuda_lines(),
        "  reference: loads (NumPy float64, the specification)",
        f"backend in use: {fastconv.get_backend().name} (FASTCONV_BACKEND {os.environ.get('FASTCONV_BACKEND', 'not set')})",
        f"convolution algorithm: {algorithms.conv_algorithm()} (FASTCONV_CONV_ALGORITHM {os.environ.get('FASTCONV_CONV_ALGORITHM', 'not set')})",
        f"buffer pool: holds {pool.held_bytes / 2**20:.0f} MiB of at most {pool.limit_bytes / 2**30:g} GiB "
        f"(FASTCONV_BUFFER_POOL_BYTES, {buffers.budget_bytes() / 2**30:g} GiB, is shared with the compiled kernels' scratch)",
        _distributed_line(),
        "data and weights:",
        *_data_lines(),
    ]
    return lines


def _distributed_line():
    """What ``fastconv.distribute`` would run on, read from the installed packages (MPI is not started here)."""
    import importlib.metadata
    import shutil

    found = {}
    for package in ("mpi4py", "mpich"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "mpi4py" not in found:
        return 'distributed training (MPI): not installed (python -m pip install -e ".[distributed]")'
    mpiexec = shutil.which("mpiexec") or "no mpiexec on PATH"
    return f"distributed training (MPI): {', '.join(f'{name} {version}' for name, version in found.items())}; {mpiexec}"


def show_config():
    """Print :func:`report`: ``fastconv.show_config()``; ask for it in bug reports."""
    print("\n".join(report()))
