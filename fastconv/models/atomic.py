"""Files that change all at once: a save writes a temporary file beside its target, then renames it over.

``with atomic_path(path) as temporary:`` — write ``temporary`` (it does not exist yet); when the block
completes the file is fsynced and renamed over ``path`` (``os.replace``), and the folder fsynced so the
rename lasts. A kill, a Ctrl-C or an error in the block leaves ``path`` as it was and no temporary behind.
A ``path`` that is a symbolic link keeps its link: the file it names is replaced.
"""

import contextlib
import os
import stat
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    path = Path(path)
    if path.is_symlink():  # replace what the link points to, not the link
        path = path.resolve()
    temporary = path.with_name(_temporary_name(path))
    try:
        yield temporary
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _temporary_name(path):
    """``.NAME.<12 hex>.tmp`` beside ``path``, with NAME cut (at a byte, as the file system counts) so that the whole
    stays within the folder's limit on a name's length: a legal name of 250 bytes gets a legal temporary."""
    suffix = f".{uuid.uuid4().hex[:12]}.tmp"
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX, or the folder is not there yet
        limit = 255
    room = limit - len(os.fsencode(suffix)) - 1
    return "." + os.fsdecode(os.fsencode(path.name)[:room]) + suffix


def _fsync(path):
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(folder):
    """Make the rename itself durable (where the platform lets a folder be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(descriptor)
