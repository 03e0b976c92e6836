"""Why fastconv's compiled kernels cannot be imported, said in words a user can act on.

Two cases cover what users meet (issue 15): the clone's source tree, with no compiled modules in it, shadows an
installed fastconv (running from the clone's root after a non-editable ``pip install .`` puts the current directory
first on ``sys.path``), or the build simply did not run.
"""

import sys
from pathlib import Path

# One of the compiled modules of any SIMD level, as globs: its presence says a fastconv folder was built.
_COMPILED_MODULES = ("*/conv.*.so", "*/conv.*.pyd")


def compiled_modules_in(package_dir):
    """Whether ``package_dir`` (a ``fastconv`` folder) holds built kernels (``_ext/<level>/conv.*.so`` or ``.pyd``)."""
    ext = Path(package_dir) / "_ext"
    return any(any(ext.glob(pattern)) for pattern in _COMPILED_MODULES)


def missing_build_message(package_dir, error, search_path=None):
    """The message for ``error``, an ImportError of ``fastconv._ext`` raised from the package at ``package_dir``.

    ``search_path`` (default ``sys.path``) is where another, built, fastconv may be installed.
    """
    package_dir = Path(package_dir).resolve()
    if compiled_modules_in(package_dir):
        return (
            f"fastconv's compiled kernels in {package_dir / '_ext'} are there but do not load ({error}); rebuild them "
            f"from the root of the clone: python -m pip install -e ."
        )
    built_elsewhere = []
    for entry in sys.path if search_path is None else search_path:
        candidate = Path(entry or ".").resolve() / "fastconv"
        if candidate != package_dir and candidate not in built_elsewhere and compiled_modules_in(candidate):
            built_elsewhere.append(candidate)
    if built_elsewhere:
        return (
            f"fastconv was imported from {package_dir}, a source tree without the compiled kernels, and it shadows "
            f"the installed fastconv at {built_elsewhere[0]} (Python puts the current directory first on sys.path). "
            f"Run from another directory, or install the clone in place: python -m pip install -e ."
        )
    return (
        f"fastconv's compiled kernels are not built in {package_dir}: the build did not run. From the root of the "
        f"clone, run: python -m pip install -e .  (or, for the kernels alone: python setup.py build_ext --inplace)"
    )
