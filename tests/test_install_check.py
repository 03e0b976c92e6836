"""What a user is told when fastconv's compiled kernels cannot be imported (issue 15): a source tree that shadows the
installed package, a build that did not run, and built modules that fail to load."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fastconv
from fastconv import install_check

ERROR = ImportError("cannot import name 'activations' from 'fastconv._ext'")


def _package(root, built):
    package = root / "fastconv"
    (package / "_ext" / "avx2").mkdir(parents=True)
    if built:
        (package / "_ext" / "avx2" / "conv.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    return package


def test_a_source_tree_shadowing_a_built_install_is_named_with_both_places(tmp_path):
    clone, site = _package(tmp_path / "clone", built=False), _package(tmp_path / "site", built=True)
    message = install_check.missing_build_message(clone, ERROR, [str(tmp_path / "clone"), str(tmp_path / "site")])
    assert f"imported from {clone.resolve()}" in message and f"shadows the installed fastconv at {site.resolve()}" in message
    assert "Run from another directory, or install the clone in place: python -m pip install -e ." in message


def test_a_build_that_did_not_run_says_how_to_build(tmp_path):
    clone = _package(tmp_path / "clone", built=False)
    message = install_check.missing_build_message(clone, ERROR, [str(tmp_path / "clone")])
    assert message.startswith(f"fastconv's compiled kernels are not built in {clone.resolve()}")
    assert "python -m pip install -e ." in message


def test_built_modules_that_fail_to_load_are_told_apart(tmp_path):
    clone = _package(tmp_path / "clone", built=True)
    message = install_check.missing_build_message(clone, ImportError("undefined symbol: GOMP_parallel"), [])
    assert "are there but do not load (undefined symbol: GOMP_parallel)" in message


def test_running_from_an_unbuilt_source_tree_names_the_shadowed_install(tmp_path):
    """As a user who installed fastconv and then ran Python in a clone's root: the clone (Python files only) comes
    first on sys.path and the cython backend says so, with the installed package this test runs from."""
    installed = Path(fastconv.__file__).resolve().parent
    shutil.copytree(installed, tmp_path / "fastconv", ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.key", "features.txt", "__pycache__"))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PYTHONPATH"] = str(installed.parent)  # where this test's fastconv is, after the clone on sys.path
    result = subprocess.run(
        [sys.executable, "-c", "import fastconv; fastconv.set_backend('cython')"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert f"fastconv was imported from {(tmp_path / 'fastconv').resolve()}" in result.stderr, result.stderr[-2000:]
    assert f"shadows the installed fastconv at {installed}" in result.stderr
