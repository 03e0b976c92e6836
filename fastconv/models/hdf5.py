"""HDF5 files made safe to write and to read: atomic saves, and reads that never leave the file.

Writing: :func:`atomic_file` writes through :func:`fastconv.models.atomic.atomic_path`:
a kill, a Ctrl-C or an error during a save leaves the old file as it was.

Reading: a model file may come from someone else. HDF5 can point outside the
file it is read from — external links to other files, datasets whose bytes
live in external raw files, virtual datasets mapping other files — so a
crafted ``.h5`` could make ``load_model`` read any local file. :func:`node`
walks a path one link at a time and refuses external links (soft links are
followed inside the file, with the same checks); :func:`read_array` refuses
external storage, virtual datasets and unexpected dtypes or shapes, before
reading a byte. Every refusal is a ``ValueError`` naming the file and the
dataset.
"""

import contextlib
from pathlib import Path

import h5py
import numpy as np

from fastconv.models import atomic

_MAX_SOFT_LINKS = 32


@contextlib.contextmanager
def atomic_file(path):
    """``with atomic_file(path) as file:`` write an ``h5py.File``; ``path`` changes only if the block completes."""
    with atomic.atomic_path(path) as temporary:
        with h5py.File(temporary, "x") as file:
            yield file


def check_readable(filepath, what):
    """``filepath`` as a Path to an existing file; FileNotFoundError or ValueError naming ``what`` and the path."""
    path = Path(filepath)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a file")
    return path


def open_file(filepath, what="weights file"):
    """An ``h5py.File`` open for reading; FileNotFoundError or ValueError (not HDF5) naming the file."""
    path = check_readable(filepath, what)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not an HDF5 {what} (nor a Keras .keras archive): {error}") from None


@contextlib.contextmanager
def errors_named(path):
    """Inside the block, what a damaged or crafted file makes h5py, JSON or the config readers raise becomes a
    ValueError naming ``path``: h5py's KeyError, RuntimeError and OSError for broken headers, a TypeError or
    IndexError for a config of the wrong shape, a ValueError (UnicodeDecodeError included) without the file's name."""
    try:
        yield
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: {error}") from error
    except (KeyError, RuntimeError, OSError, TypeError, AttributeError, IndexError, RecursionError, OverflowError) as error:
        raise ValueError(f"{path}: the file is damaged, or was not written by Keras: {type(error).__name__}: {error}") from error


def has(group, name):
    """Whether ``group`` has a link called ``name``, without following it (``name in group`` would)."""
    return group.get(name, getlink=True) is not None


def node(group, name, what=None):
    """The group or dataset at ``name`` below ``group``, reached through hard and in-file soft links only.

    Missing: ValueError naming the file and ``what`` (default: the path).
    """
    return _walk(group, name, what or name, 0)


def _walk(group, name, what, depth):
    filename = group.file.filename
    current = group.file if name.startswith("/") else group
    for part in [p for p in name.split("/") if p]:
        if not isinstance(current, h5py.Group):
            raise ValueError(f"{filename}: {what}: {current.name} is not a group")
        link = current.get(part, getlink=True)
        if link is None:
            raise ValueError(f"{filename}: {what} is missing (no {part!r} in {current.name})")
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(
                f"{filename}: {what} is an external link to {link.filename}:{link.path}; "
                "fastconv reads nothing outside the file it loads"
            )
        if isinstance(link, h5py.SoftLink):
            if depth >= _MAX_SOFT_LINKS:
                raise ValueError(f"{filename}: {what}: more than {_MAX_SOFT_LINKS} soft links (a loop?)")
            current = _walk(current, link.path, what, depth + 1)
        else:
            current = current[part]
    return current


def read_array(group, name, shape=None, kinds="f", what=None):
    """The dataset ``name`` as a NumPy array, after checking where its bytes live, its dtype and its shape.

    ``kinds``: the NumPy dtype kinds accepted ('f' float, 'i'/'u' integers); ``shape``: the
    expected shape, or None for any.
    """
    what = what or name
    filename = group.file.filename
    dataset = node(group, name, what)
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{filename}: {what} is a group, not a dataset")
    if dataset.is_virtual:
        raise ValueError(f"{filename}: {what} is a virtual dataset (it maps other files); fastconv refuses it")
    if dataset.external:
        files = sorted({str(entry[0]) for entry in dataset.external})
        raise ValueError(f"{filename}: {what} keeps its data in external files {files}; fastconv refuses it")
    if dataset.dtype.kind not in kinds or dataset.dtype.fields is not None:
        raise ValueError(f"{filename}: {what} has dtype {dataset.dtype}; expected {_kind_names(kinds)}")
    if shape is not None and tuple(dataset.shape) != tuple(shape):
        raise ValueError(f"{filename}: {what} has shape {tuple(dataset.shape)}, expected {tuple(shape)}")
    return np.asarray(dataset[()])


def _kind_names(kinds):
    names = {"f": "floating point", "i": "signed integers", "u": "unsigned integers"}
    return " or ".join(names[kind] for kind in kinds)


def decode_names(values):
    """An attribute holding names (bytes or str) as a list of str."""
    return [value.decode() if isinstance(value, bytes) else str(value) for value in np.atleast_1d(values)]
