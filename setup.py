"""Build the Cython kernels in src_ext/ into extension modules fastconv._ext.<name>.

Every ``src_ext/*.pyx`` becomes one module, compiled with -O3, -march=native
and, where the compiler supports it, OpenMP (Cython's ``prange``). Without
OpenMP the same code builds and runs on one thread. Environment switches:
FASTCONV_NO_OPENMP=1, FASTCONV_PORTABLE=1 (no -march=native).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
OPENMP_FLAG = "-fopenmp"
NATIVE_FLAG = "-march=native"


OPENMP_PROGRAM = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
PLAIN_PROGRAM = "int main(void) { return 0; }\n"


def compiler_accepts(flag, program=PLAIN_PROGRAM):
    """Compile and link a tiny program with ``flag`` using the compiler Python was built with."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(compiler):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text(program)
        result = subprocess.run([compiler, flag, str(source), "-o", str(Path(tmp, "probe"))], capture_output=True)
    return result.returncode == 0


def extensions():
    # OpenMP runs Cython's prange loops on every core; without it they run on one.
    openmp = not os.environ.get("FASTCONV_NO_OPENMP") and compiler_accepts(OPENMP_FLAG, OPENMP_PROGRAM)
    # The pooling and gather loops vectorise with the widest SIMD of the building
    # machine (a 4x faster max pool with AVX-512 than with the x86-64 baseline).
    # The build is for this machine; FASTCONV_PORTABLE=1 builds for any x86-64.
    native = not os.environ.get("FASTCONV_PORTABLE") and compiler_accepts(NATIVE_FLAG)
    print(f"fastconv: building with{'' if openmp else 'out'} OpenMP, {'native' if native else 'portable'} SIMD", file=sys.stderr)
    compile_args = ["-O3", "-ffp-contract=fast"] + ([OPENMP_FLAG] if openmp else []) + ([NATIVE_FLAG] if native else [])
    link_args = [OPENMP_FLAG] if openmp else []
    modules = [
        Extension(
            f"fastconv._ext.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
        for pyx in sorted((HERE / "src_ext").glob("*.pyx"))
    ]
    return cythonize(modules, include_path=["src_ext"], compiler_directives={"language_level": 3})


setup(ext_modules=extensions())
