"""One build for every x86-64 (issue 15): the kernels are compiled per SIMD level, the import picks the widest level
this CPU runs, ``FASTCONV_SIMD`` forces one, and every level the build ships passes the kernel suite against the
float64 reference."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastconv import _ext
from fastconv import simd_levels as levels

X86_64 = levels.is_x86_64()
AVX2 = ["AVX", "F16C", "FMA3", "AVX2"]
AVX512 = AVX2 + ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"]
SHIPPED = {"baseline": [], "avx2": AVX2, "avx512": AVX512}


def test_the_widest_level_the_cpu_runs_is_chosen():
    assert levels.choose(SHIPPED, set(AVX512) | {"SSE3"}) == "avx512"
    assert levels.choose(SHIPPED, set(AVX2)) == "avx2"
    assert levels.choose(SHIPPED, set(AVX2) - {"FMA3"}) == "baseline"  # AVX2 without FMA: a few VMs mask it
    assert levels.choose(SHIPPED, set()) == "baseline"
    assert levels.choose({"baseline": [], "avx2": AVX2}, set(AVX512)) == "avx2"  # what was built, not what the CPU has


def test_the_native_level_is_preferred_only_on_a_cpu_with_every_feature_of_the_building_one():
    built = dict(SHIPPED, native=AVX512 + ["AVX512VNNI"])
    assert levels.choose(built, set(AVX512) | {"AVX512VNNI"}) == "native"
    assert levels.choose(built, set(AVX512)) == "avx512"


def test_a_forced_level_is_used_and_a_forced_level_that_cannot_run_says_why():
    assert levels.choose(SHIPPED, set(AVX512), forced="baseline") == "baseline"
    with pytest.raises(ImportError, match=r"FASTCONV_SIMD=avx512: this CPU lacks AVX512BW, AVX512CD, AVX512DQ, AVX512F, AVX512VL"):
        levels.choose(SHIPPED, set(AVX2), forced="avx512")
    with pytest.raises(ImportError, match=r"FASTCONV_SIMD=native: .* not built for that level; built: baseline, avx2, avx512"):
        levels.choose(SHIPPED, set(AVX512), forced="native")
    with pytest.raises(ImportError, match="none of the built SIMD levels"):
        levels.choose({}, set(AVX512))


@pytest.mark.skipif(not X86_64, reason="one plain build off x86-64")
def test_this_build_ships_every_x86_64_level_and_loads_the_best_this_cpu_runs():
    assert {"baseline", "avx2", "avx512"} <= set(_ext.BUILT)
    assert _ext.BUILT["avx2"] == AVX2 and _ext.BUILT["avx512"] == AVX512 and _ext.BUILT["baseline"] == []
    features = levels.cpu_features()
    best = max((name for name, needed in SHIPPED.items() if set(needed) <= features), key=levels.preference)
    if "native" in _ext.BUILT and set(_ext.BUILT["native"]) <= features:
        best = "native"
    if not os.environ.get(levels.ENVIRONMENT_VARIABLE):
        assert _ext.LEVEL == best
    assert Path(_ext.conv.__file__).parent.name == _ext.LEVEL


@pytest.mark.skipif(not X86_64, reason="one plain build off x86-64")
def test_each_level_was_compiled_for_its_instructions():
    """The compiler's own macros, read back from each level's build_info: the flags reached the compiler. Only the
    levels this CPU runs are loaded (an AVX-512 module may use AVX-512 from its first instruction)."""
    macros = {"baseline": "x86-64 baseline (sse2)", "avx2": "avx2+fma", "avx512": "avx512f"}
    features = levels.cpu_features()
    runs_here = levels.runnable(SHIPPED, features)
    assert "baseline" in runs_here
    for name in runs_here:
        assert _ext.load_level(name).build_info.simd_level() == macros[name]


RUNNABLE = levels.runnable(_ext.BUILT)


@pytest.mark.parametrize("level", RUNNABLE)
def test_every_level_passes_the_kernel_suite(level):
    """The kernel and gradient tests of the cython backend, in a process with ``FASTCONV_SIMD=<level>`` (the
    report header says which level ran)."""
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", "cython",
         str(tests / "test_kernels.py"), str(tests / "test_gradients.py")],
        env=dict(os.environ, FASTCONV_SIMD=level), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert f"fastconv: cython kernels at SIMD level {level} " in result.stdout, result.stdout[-3000:]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1] and " failed" not in result.stdout.splitlines()[-1]


def test_loading_a_level_this_cpu_cannot_run_is_refused_before_its_code_runs():
    with pytest.raises(ImportError, match=r"load_level\('avx1024'\): fastconv's kernels are not built for that level"):
        _ext.load_level("avx1024")
    lacking = sorted(set(_ext.BUILT) - set(RUNNABLE))
    for name in lacking:
        with pytest.raises(ImportError, match=rf"load_level\('{name}'\): this CPU lacks"):
            _ext.load_level(name)


def test_forcing_a_level_the_build_lacks_fails_with_the_reason():
    result = subprocess.run(
        [sys.executable, "-c", "import fastconv; fastconv.set_backend('cython')"],
        env=dict(os.environ, FASTCONV_SIMD="avx1024"), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "FASTCONV_SIMD=avx1024: fastconv's kernels are not built for that level; built: " in result.stderr
