"""Copies of Keras' test files with something changed: a crafted or damaged file, made the way a stranger would."""

import json
import shutil
import zipfile
from pathlib import Path

import h5py

KERAS_FILES = Path(__file__).resolve().parent / "keras_files"


def edited_copy(tmp_path, source, edit):
    """A copy of a Keras file whose model config ``edit`` changed (in the HDF5 attribute or the archive's config.json)."""
    path = tmp_path / source
    if source.endswith(".keras"):
        with zipfile.ZipFile(KERAS_FILES / source) as original, zipfile.ZipFile(path, "w") as copy:
            for member in original.namelist():
                data = original.read(member)
                if member == "config.json":
                    config = json.loads(data)
                    edit(config)
                    data = json.dumps(config).encode()
                copy.writestr(member, data)
    else:
        shutil.copy(KERAS_FILES / source, path)
        with h5py.File(path, "a") as file:
            config = json.loads(file.attrs["model_config"])
            edit(config)
            file.attrs["model_config"] = json.dumps(config)
    return path


def replace_member(tmp_path, source, name, data, compression=zipfile.ZIP_STORED):
    """A copy of the archive ``source`` whose member ``name`` holds ``data`` (bytes, or a path whose bytes it holds)."""
    path = tmp_path / f"{name.replace('/', '_')}_{source}"
    with zipfile.ZipFile(KERAS_FILES / source) as original, zipfile.ZipFile(path, "w", compression=compression) as copy:
        for member in original.namelist():
            if member != name:
                copy.writestr(member, original.read(member))
        if isinstance(data, Path):
            copy.write(data, name)
        else:
            copy.writestr(name, data)
    return path


def set_inbound(entry, source_name):
    """Make a functional-graph entry (Keras 2 or Keras 3 style) take its input from the layer ``source_name``."""
    node = entry["inbound_nodes"][0]
    if isinstance(node, dict):
        node["args"][0]["config"]["keras_history"][0] = source_name
    else:
        node[0][0] = source_name
