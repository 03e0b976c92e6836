"""``model.save``, ``save_weights``, ``load_model`` and ``load_weights``: which Keras format, by name and by content.

Written (what Keras 3 reads):

* ``model.save('m.keras')``: Keras 3's archive (:mod:`fastconv.models.keras_archive`);
* ``model.save('m.h5')`` (any other name): the legacy HDF5 format as Keras 3 writes it (:mod:`fastconv.models.legacy_h5`);
* ``save_weights('w.weights.h5')``: Keras 3's weights layout; ``save_weights('w.h5')``: the legacy one.

Read, whatever the name: a zip archive is a ``.keras`` file; an HDF5 file is told by what it holds
(``model_config``: a legacy model file of Keras 2, Keras 3 or fastconv 0.2; ``layer_names``: legacy weights;
``layers/.../vars``: Keras 3 weights). Every save is atomic; every load checks everything before it
changes anything.
"""

from pathlib import Path

from fastconv.layers.base import check_layer_name, check_unique_names
from fastconv.models import hdf5, keras_archive, legacy_h5


def _check_target(filepath, overwrite):
    path = Path(filepath)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists and overwrite=False")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder")
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
    return path


def _check_layer_names(model):
    """Each layer is one group named after it: the checks of ``add`` again (a name may have changed since), before
    anything is written."""
    try:
        for layer in model.layers:
            check_layer_name(layer.name)
        check_unique_names(model, model.layers)
    except ValueError as error:
        raise ValueError(f"cannot save model {model.name!r}: {error}") from None


def _check_savable(model, filepath, overwrite):
    path = _check_target(filepath, overwrite)
    _check_layer_names(model)
    return path


def save_model(model, filepath, overwrite=True, include_optimizer=True):
    path = _check_savable(model, filepath, overwrite)
    if path.name.endswith(".keras"):
        keras_archive.save_archive(model, path, include_optimizer)
    else:
        with hdf5.atomic_file(path) as file:
            legacy_h5.write_model(file, model, include_optimizer)


def save_weights(model, filepath, overwrite=True):
    path = _check_savable(model, filepath, overwrite)
    if path.name.endswith(".weights.h5"):
        keras_archive.save_weights(model, path)
    else:
        with hdf5.atomic_file(path) as file:
            legacy_h5.write_weights(file, model)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Keras' rule: by layer order (layers that hold weights), or ``by_name=True`` by layer name. All or nothing."""
    path = hdf5.check_readable(filepath, "weights file")
    if keras_archive.is_archive(path):
        _refuse_by_name(by_name, path)
        keras_archive.load_archive_weights(model, path, skip_mismatch)
        return
    with hdf5.open_file(path) as file, hdf5.errors_named(path):
        if hdf5.has(file, "model_weights") or legacy_h5.is_weights_group(file):
            group = hdf5.node(file, "model_weights") if hdf5.has(file, "model_weights") else file
            legacy_h5.load_weights(group, model, path, by_name, skip_mismatch)
        elif keras_archive.is_weights_file(file):
            _refuse_by_name(by_name, path)
            keras_archive.load_weights_from(file, model, str(path), skip_mismatch)
        else:
            raise ValueError(f"{path} holds no weights in a layout fastconv knows (legacy 'layer_names', or Keras 3 'layers/.../vars')")


def _refuse_by_name(by_name, path):
    if by_name:
        raise ValueError(f"{path}: by_name=True needs a legacy HDF5 weights file; Keras 3's files match layers by position")


def load_model(filepath, compile=True):
    path = hdf5.check_readable(filepath, "model file")
    if keras_archive.is_archive(path):
        return keras_archive.load_archive(path, compile)
    with hdf5.open_file(path, "model file") as file, hdf5.errors_named(path):
        if not legacy_h5.is_model_file(file):
            raise ValueError(
                f"{path} holds no model configuration: it is a weights-only file (save_weights); build the model, "
                "then call model.load_weights on it"
            )
        return legacy_h5.read_model(file, path, compile)
