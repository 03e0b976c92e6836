"""Build the Cython kernels in src_ext/ into extension modules fastconv._ext.<name>.

Every ``src_ext/*.pyx`` becomes one module, compiled with -O3 and, where the
compiler supports it, OpenMP (Cython's ``prange``). Without OpenMP the same
code builds and runs on one thread.
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


def compiler_supports_openmp():
    """Compile and link a tiny OpenMP program with the compiler Python was built with."""
    if os.environ.get("FASTCONV_NO_OPENMP"):
        return False
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(compiler):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "omp.c")
        source.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        result = subprocess.run(
            [compiler, OPENMP_FLAG, str(source), "-o", str(Path(tmp, "omp"))],
            capture_output=True,
        )
    return result.returncode == 0


def extensions():
    openmp = compiler_supports_openmp()
    print(f"fastconv: building with{'' if openmp else 'out'} OpenMP", file=sys.stderr)
    compile_args = ["-O3", "-ffp-contract=fast"] + ([OPENMP_FLAG] if openmp else [])
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
