"""Where pretrained weight files are looked for; nothing is ever downloaded."""

import os
from pathlib import Path


def search_folders():
    """``$FASTCONV_HOME/models`` (if set), then Keras' own cache ``~/.keras/models``."""
    folders = []
    if os.environ.get("FASTCONV_HOME"):
        folders.append(Path(os.environ["FASTCONV_HOME"]).expanduser() / "models")
    folders.append(Path("~/.keras/models").expanduser())
    return folders


def find_weights_file(file_name, model_name):
    """The path of ``file_name`` in the first search folder that has it; FileNotFoundError saying where to put it."""
    folders = search_folders()
    for folder in folders:
        if (folder / file_name).is_file():
            return folder / file_name
    looked = ", ".join(str(folder) for folder in folders)
    raise FileNotFoundError(
        f"{model_name}(weights='imagenet') needs {file_name} (Keras' HDF5 weights file); fastconv does not download "
        f"weights. Looked in: {looked}. Copy the file into one of these folders (set FASTCONV_HOME to use "
        f"$FASTCONV_HOME/models), or pass its path as weights='/path/to/{file_name}'."
    )
