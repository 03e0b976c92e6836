"""MNIST, embedded: ``(x_train, y_train), (x_test, y_test) = mnist.load_data()``, uint8 as in Keras.

The four original IDX files (LeCun, Cortes, Burges; CC BY-SA 3.0), gzip-compressed, ship in
``fastconv/datasets/data/``. ``load_data(path=...)`` reads a user's own copy instead: Keras'
``mnist.npz`` or a folder holding the four IDX files (``.gz`` or not).
"""

import gzip
from importlib import resources
from pathlib import Path

import numpy as np

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3


def read_idx(path):
    """An IDX file (optionally .gz) as a uint8 array; ValueError on a truncated or foreign file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read MNIST file {path}: {error}") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in _IDX_MAGIC:
        raise ValueError(f"{path} is not an MNIST IDX file (magic number {magic})")
    rank = _IDX_MAGIC[magic]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != np.prod(shape):
        raise ValueError(f"{path} is truncated: header says {shape}, holds {data.size} bytes")
    return data.reshape(shape)


def _find(folder, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"MNIST file {stem}(.gz) not found in {folder}")


def load_data(path=None):
    """((x_train (60000, 28, 28) uint8, y_train (60000,) uint8), (x_test (10000, 28, 28), y_test (10000,)))."""
    if path is not None and Path(path).suffix == ".npz":
        if not Path(path).exists():
            raise FileNotFoundError(f"MNIST archive {path} does not exist")
        with np.load(path) as archive:
            return (archive["x_train"], archive["y_train"]), (archive["x_test"], archive["y_test"])
    if path is None:
        with resources.as_file(resources.files("fastconv.datasets") / "data") as folder:
            arrays = {key: read_idx(_find(Path(folder), stem)) for key, stem in FILES.items()}
    else:
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{path} is neither a Keras mnist.npz nor a folder of MNIST IDX files")
        arrays = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
