"""The self-report: ``python -m fastconv info`` and ``fastconv.show_config()`` (issue 15)."""

import subprocess
import sys

import fastconv
from fastconv import _ext
from fastconv._ext import build_info

SIMD_LEVELS = ("avx512f", "avx2+fma", "avx2", "avx", "sse4.2", "x86-64 baseline (sse2)", "aarch64 (neon)", "unknown")


def test_python_m_fastconv_info_reports_the_installation():
    result = subprocess.run([sys.executable, "-m", "fastconv", "info"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for expected in (
        f"fastconv {fastconv.__version__} at ",
        f"cython (default): loads; SIMD level {_ext.LEVEL} (the widest this CPU runs; compiler macros: "
        f"{build_info.simd_level()})",
        "levels built: ",
        "threads: the kernels use ",
        "BLAS: SciPy's",
        "numba: loads; ",
        "cuda: ",
        "backend in use: ",
        "convolution algorithm: ",
        "distributed training (MPI): ",
        "MNIST (bundled): 4 files in ",
        "VGG16 vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5: ",
    ):
        assert expected in out, (expected, out)


def test_show_config_prints_the_same_report(capsys):
    fastconv.show_config()
    printed = capsys.readouterr().out
    assert printed.startswith(f"fastconv {fastconv.__version__} at ") and "backends:" in printed


def test_the_build_says_what_it_was_compiled_for():
    assert build_info.simd_level() in SIMD_LEVELS
    assert isinstance(build_info.openmp(), bool)


def test_an_unknown_command_prints_the_usage():
    result = subprocess.run([sys.executable, "-m", "fastconv", "help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "usage: python -m fastconv info" in result.stderr


def test_the_numba_backend_says_when_its_first_use_will_compile(tmp_path):
    from fastconv.backends import numba as numba_backend

    notice = numba_backend.first_use_notice(tmp_path / "empty", {})
    assert notice.startswith("fastconv: the numba backend compiles its kernels on first use, once")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "conv._conv2d_forward-1.py311.1.nbc").write_bytes(b"")
    assert numba_backend.cached_kernel_count(tmp_path / "cache") == 1
    assert numba_backend.first_use_notice(tmp_path / "cache", {}) is None
    assert numba_backend.first_use_notice(tmp_path / "empty", {"NUMBA_CACHE_DIR": str(tmp_path)}) is None
