"""Build the Cython kernels in src_ext/ into extension modules fastconv._ext.<level>.<name>, once per SIMD level.

Every ``src_ext/*.pyx`` becomes one module per level of ``fastconv/simd_levels.py`` (x86-64 baseline, AVX2+FMA,
AVX-512; the import picks the widest the CPU has), compiled with -O3 and, where the compiler supports it, OpenMP
(which holds each Python thread's default thread count, read by the loops that name none). Without OpenMP the same
code builds; those loops then run on one thread. Environment switches:
FASTCONV_NO_OPENMP=1; FASTCONV_NATIVE=1 adds a level built with -march=native for this machine alone.

A module whose C source, flags and Python ABI are those of the copy already built in place is copied, not compiled
again (the README's second command then reuses the first one's build); each step says what it does on stderr
(``pip install -v`` shows it).
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
OPENMP_FLAG = "-fopenmp"
# No debug information: it made each level ~8 MB; the kernels are debugged from a developer's own build.
# -fno-math-errno: sqrtf, expf and the like need not set errno (nothing reads it), so that GCC vectorises loops that
# call them: the RMSprop and Adam updates (updates.pyx) ran 5.7x slower than Numba's without it. Results are the same.
COMMON_FLAGS = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-g0"]

OPENMP_PROGRAM = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
PLAIN_PROGRAM = "int main(void) { return 0; }\n"


def _load_levels():
    """fastconv/simd_levels.py, read by path: the package itself cannot be imported while it is being built."""
    spec = importlib.util.spec_from_file_location("fastconv_levels", HERE / "fastconv" / "simd_levels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


levels = _load_levels()


def say(message):
    print(f"fastconv build: {message}", file=sys.stderr, flush=True)


def compiler_accepts(flags, program=PLAIN_PROGRAM):
    """Compile and link a tiny program with ``flags`` using the compiler Python was built with."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(compiler):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text(program)
        result = subprocess.run([compiler, *flags, str(source), "-o", str(Path(tmp, "probe"))], capture_output=True)
    return result.returncode == 0


def _quiet_spawn(command, **_):
    """Run a compiler or linker command without echoing it and its warnings (FASTCONV_BUILD_VERBOSE=1 shows both);
    a failure prints everything the command said."""
    command = [str(part) for part in command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(" ".join(command), result.stdout, result.stderr, sep="\n", file=sys.stderr)
        raise subprocess.CalledProcessError(result.returncode, command)


def _remove_stale_modules(ext_dir):
    """Remove from ``ext_dir`` (``fastconv/_ext`` in place or in the build folder) the modules of levels this build
    does not make (a native level built earlier, the one-level layout of fastconv 0.2) so that the import, and a
    wheel, never take old code."""
    level_names = {level.name for level in LEVELS}
    stale = [path for path in [*ext_dir.glob("*.so"), *ext_dir.glob("*.pyd"), *ext_dir.glob("*/*")]
             if (path.parent == ext_dir or path.parent.name not in level_names)
             and (path.suffix in (".so", ".pyd", ".key") or path.name == "features.txt")]  # fmt: skip
    if stale:
        folders = sorted({str(path.parent.relative_to(ext_dir)) for path in stale})
        say(f"removing {len(stale)} files of earlier builds from {ext_dir} ({', '.join(folders)}): not part of this one")
    for path in stale:
        path.unlink()
    for folder in ext_dir.glob("*/"):
        if folder.name not in level_names and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class CachingBuildExt(build_ext):
    """build_ext that reuses an up-to-date in-place module, says what it builds, and writes each level's
    ``features.txt`` (what the import checks the CPU for)."""

    def finalize_options(self):
        if self.parallel is None:  # compile modules side by side (pip's editable build does not pass -j)
            self.parallel = os.cpu_count() or 1
        super().finalize_options()

    def run(self):
        self.started, self.done, self.reused = time.perf_counter(), 0, 0
        openmp = OPENMP_FLAG in self.extensions[0].extra_compile_args
        say(f"OpenMP {'on' if openmp else 'off: pooling, activations and losses will run on one thread'}")
        say(f"building {len(self.extensions)} modules ({len(self.extensions) // max(len(LEVELS), 1)} kernels x "
            f"{len(LEVELS)} SIMD levels: {', '.join(level.name for level in LEVELS)}); about 25 s of one core per level "
            f"(AMD EPYC, gcc 12)")  # fmt: skip
        super().run()
        ext_dirs = {Path(self.get_ext_fullpath("fastconv._ext.x")).parent, HERE / "fastconv" / "_ext"}
        for ext_dir in ext_dirs:
            _remove_stale_modules(ext_dir)
            for level in LEVELS:
                if (ext_dir / level.name).is_dir():
                    (ext_dir / level.name / "features.txt").write_text(" ".join(level.features) + "\n")
        reused = f"; {self.reused} unchanged since the last build were reused" if self.reused else ""
        say(f"done in {time.perf_counter() - self.started:.0f} s: {len(self.extensions) - self.reused} compiled{reused}")

    def _key(self, ext):
        digest = hashlib.sha256()
        for source in ext.sources:  # the generated C, which holds what the .pyx cimports from .pxd files
            digest.update(Path(source).read_bytes())
        for part in (*ext.extra_compile_args, "|", *ext.extra_link_args, "|", sysconfig.get_config_var("EXT_SUFFIX"),
                     sysconfig.get_config_var("CC") or "", sys.version):  # fmt: skip
            digest.update(part.encode())
        return digest.hexdigest()

    def build_extension(self, ext):
        target = Path(self.get_ext_fullpath(ext.name))
        in_place = HERE.joinpath(*ext.name.split(".")[:-1], target.name)
        stamp = in_place.with_name(in_place.name + ".key")
        key = self._key(ext)
        self.done += 1
        where = f"[{self.done}/{len(self.extensions)}] {ext.name.removeprefix('fastconv._ext.')}"
        if in_place.is_file() and stamp.is_file() and stamp.read_text() == key:
            if target.resolve() != in_place.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(in_place, target)
            self.reused += 1
            return
        started = time.perf_counter()
        if not os.environ.get("FASTCONV_BUILD_VERBOSE"):
            self.compiler.spawn = self.compiler.call = _quiet_spawn  # setuptools < 80 runs commands by spawn, later by call
        super().build_extension(ext)
        if target.resolve() != in_place.resolve():
            in_place.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target, in_place)
        stamp.write_text(key)
        say(f"{where}: compiled in {time.perf_counter() - started:.0f} s")


def _level_source(c_source, level_name):
    """A copy of the generated ``c_source`` for one level, under build/sources/<level>/: each level's object file
    then has a path of its own (the same source for three levels compiled side by side wrote one object file three
    times at once, and a module could link a half-written one)."""
    copy = Path("build", "sources", level_name, Path(c_source).name)
    data = (HERE / c_source).read_bytes()
    if not (HERE / copy).is_file() or (HERE / copy).read_bytes() != data:
        (HERE / copy).parent.mkdir(parents=True, exist_ok=True)
        (HERE / copy).write_bytes(data)
    return str(copy)


def extensions():
    # OpenMP keeps each thread's default thread count (pooling, activations, losses); without it those run on one.
    openmp = not os.environ.get("FASTCONV_NO_OPENMP") and compiler_accepts([OPENMP_FLAG], OPENMP_PROGRAM)
    link_args = [OPENMP_FLAG] if openmp else []
    pyx_files = sorted((HERE / "src_ext").glob("*.pyx"))
    c_files = cythonize([str(pyx.relative_to(HERE)) for pyx in pyx_files], include_path=["src_ext"],
                        compiler_directives={"language_level": 3}, quiet=True)  # fmt: skip
    modules = []
    for level in LEVELS:
        for c_module in c_files:
            name = Path(c_module.sources[0]).stem
            modules.append(Extension(
                f"fastconv._ext.{level.name}.{name}", [_level_source(c_module.sources[0], level.name)],
                extra_compile_args=COMMON_FLAGS + ([OPENMP_FLAG] if openmp else []) + level.flags,
                extra_link_args=link_args,
            ))  # fmt: skip
    return modules


def levels_here():
    """The levels to build; the native level needs the features this CPU has, and a level the compiler cannot
    target is left out with a message (the import then uses the widest that was built)."""
    chosen = []
    for level in levels.levels_to_build():
        if level.name == levels.NATIVE:
            level.features = sorted(levels.cpu_features())
        if level.flags and not compiler_accepts(level.flags):
            say(f"the compiler does not accept {' '.join(level.flags)}: no {level.name} level")
            continue
        chosen.append(level)
    return chosen


LEVELS = levels_here()
setup(ext_modules=extensions(), cmdclass={"build_ext": CachingBuildExt})
