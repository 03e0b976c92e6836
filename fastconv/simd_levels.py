"""The SIMD levels the compiled kernels are built for, and which one this CPU runs (issue 15).

Every kernel module of src_ext/ is compiled once per level into ``fastconv/_ext/<level>/``; at import the widest
level whose instructions this CPU has (as NumPy's CPU dispatcher reports them, OS support included) is chosen, so one
wheel runs on any x86-64 at the speed of its best level. ``FASTCONV_SIMD=<level>`` forces a level (tests, and bug
reports that need the baseline). ``FASTCONV_NATIVE=1`` at build time adds a ``native`` level (``-march=native``): it
needs every CPU feature the building machine had and is preferred where they are all present.

setup.py reads this file by path (the package is not importable while it builds), so it imports nothing at the top
but the standard library.
"""

import os
import platform
from pathlib import Path

ENVIRONMENT_VARIABLE = "FASTCONV_SIMD"
NATIVE = "native"


class Level:
    """One build of the kernels: its name, the compiler flags beyond ``-O3``, and the CPU features they need."""

    def __init__(self, name, flags, features):
        self.name, self.flags, self.features = name, list(flags), list(features)

    def __repr__(self):
        return f"Level({self.name!r}, flags={self.flags}, features={self.features})"


_X86_64 = ["-march=x86-64", "-mtune=generic"]
_AVX2 = ["AVX", "F16C", "FMA3", "AVX2"]
_AVX512 = ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"]

# Narrowest first. The flags enable exactly the features listed (no BMI, MOVBE, ... that -march=x86-64-v3 would
# add and NumPy's dispatcher does not report on every version), so the check at import covers what the code uses.
X86_64_LEVELS = [
    Level("baseline", _X86_64, []),
    Level("avx2", _X86_64 + ["-mavx", "-mf16c", "-mfma", "-mavx2"], _AVX2),
    Level("avx512", _X86_64 + ["-mavx", "-mf16c", "-mfma", "-mavx2", "-mavx512f", "-mavx512cd", "-mavx512bw",
                               "-mavx512dq", "-mavx512vl"], _AVX2 + _AVX512),  # fmt: skip
]
NATIVE_FLAGS = ["-march=native"]


def is_x86_64(machine=None):
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def levels_to_build(environment=None, machine=None):
    """The levels a build makes here: the three x86-64 levels (one plain build elsewhere), plus ``native`` when
    ``FASTCONV_NATIVE=1``; the native level's features are filled in by the build from :func:`cpu_features`."""
    environment = os.environ if environment is None else environment
    levels = list(X86_64_LEVELS) if is_x86_64(machine) else [Level("baseline", [], [])]
    if environment.get("FASTCONV_NATIVE") == "1":
        levels.append(Level(NATIVE, NATIVE_FLAGS, []))
    return levels


def cpu_features():
    """The CPU features NumPy's dispatcher found on this machine (those the OS also enables), as a set of names."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return {name for name, present in __cpu_features__.items() if present}


def built_levels(ext_dir=None):
    """{level name: required features} for every level built in ``ext_dir`` (``fastconv/_ext``), read from the
    ``features.txt`` each level's build writes next to its modules."""
    ext_dir = Path(__file__).parent / "_ext" if ext_dir is None else Path(ext_dir)
    found = {}
    for listing in ext_dir.glob("*/features.txt"):
        found[listing.parent.name] = listing.read_text().split()
    return found


def preference(name):
    """Wider is better; native, made for this machine's exact CPU, first."""
    order = [level.name for level in X86_64_LEVELS] + [NATIVE]
    return order.index(name) if name in order else -1


def runnable(built, features=None):
    """The names of the levels in ``built`` ({name: required features}) whose features this CPU (or ``features``) has,
    narrowest first."""
    features = cpu_features() if features is None else features
    return sorted((name for name, needed in built.items() if set(needed) <= features), key=preference)


def choose(built, features, forced=None, asked_by=None):
    """The level to load: ``forced`` (``FASTCONV_SIMD``) if given, else the most preferred built level whose
    features this CPU has. ``built`` is {name: required features}; raises ImportError with the reason if none fits
    (``asked_by`` names who forced the level in that message; the environment variable by default)."""
    asked_by = asked_by or f"{ENVIRONMENT_VARIABLE}={forced}"
    if forced:
        if forced not in built:
            raise ImportError(
                f"{asked_by}: fastconv's kernels are not built for that level; built: "
                f"{', '.join(sorted(built, key=preference)) or 'none'}"
            )
        missing = sorted(set(built[forced]) - features)
        if missing:
            raise ImportError(f"{asked_by}: this CPU lacks {', '.join(missing)}, which that level needs")
        return forced
    runs_here = runnable(built, features)
    if not runs_here:
        raise ImportError(
            f"none of the built SIMD levels ({', '.join(sorted(built)) or 'none'}) runs on this CPU; rebuild: "
            f"python -m pip install -e ."
        )
    return runs_here[-1]
