"""HDF5 files in Keras' layout, so that weights move between Keras and fastconv by layer.

``save_weights`` writes, at the file's root, the attribute ``layer_names`` and
one group per layer whose attribute ``weight_names`` lists datasets such as
``conv2d/kernel:0`` (stored at ``<layer>/conv2d/kernel:0``). ``model.save``
writes the same under ``model_weights/`` plus the attributes ``model_config``
and ``training_config`` (JSON). A model nested in another is one layer group
holding its sublayers' weights, as Keras writes it (VGG16's ``notop`` file is
such a weights file).
"""

import json
from pathlib import Path

import h5py
import numpy as np

FORMAT_VERSION = "fastconv-1"


def _check_target(filepath, overwrite):
    path = Path(filepath)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists and overwrite=False")
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
    return path


def _layers_with_weights(model):
    return [layer for layer in model.layers if layer.weights]


def _write_weights(group, model):
    group.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
    group.attrs["backend"] = "fastconv"
    group.attrs["keras_version"] = FORMAT_VERSION
    for layer in model.layers:
        layer_group = group.create_group(layer.name)
        weights = layer.weights
        layer_group.attrs["weight_names"] = np.array([w.name.encode() for w in weights])
        for weight in weights:
            layer_group.create_dataset(weight.name, data=weight.value)


def save_weights(model, filepath, overwrite=True):
    path = _check_target(filepath, overwrite)
    with h5py.File(path, "w") as file:
        _write_weights(file, model)


def save_model(model, filepath, overwrite=True):
    path = _check_target(filepath, overwrite)
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = FORMAT_VERSION
        file.attrs["backend"] = "fastconv"
        file.attrs["model_config"] = json.dumps({"class_name": type(model).__name__, "config": model.get_config()})
        if model.loss is not None:
            training = {
                "loss": model.loss.name,
                "metrics": model.metric_names,
                "optimizer_config": {"class_name": type(model.optimizer).__name__, "config": model.optimizer.get_config()},
            }
            file.attrs["training_config"] = json.dumps(training)
        _write_weights(file.create_group("model_weights"), model)


def _decode(names):
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _open_weights(filepath):
    path = Path(filepath)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not an HDF5 weights file: {error}") from None
    return file


def _file_layers(group):
    """[(layer name, [arrays in weight_names order])] for the layers of a weights group that hold weights."""
    if "layer_names" not in group.attrs:
        raise ValueError(f"{group.file.filename} has no 'layer_names' attribute: not a Keras/fastconv weights file")
    layers = []
    for name in _decode(group.attrs["layer_names"]):
        weight_names = _decode(group[name].attrs.get("weight_names", []))
        if weight_names:
            layers.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return layers


def _assign(layer, arrays, source, skip_mismatch):
    weights = layer.weights
    shapes = [w.shape for w in weights]
    if len(arrays) != len(weights) or any(a.shape != s for a, s in zip(arrays, shapes)):
        message = (
            f"layer {layer.name!r} has weights of shapes {shapes}, the file's layer {source!r} holds "
            f"{[a.shape for a in arrays]}"
        )
        if skip_mismatch:
            import warnings

            warnings.warn(f"skipped: {message}", stacklevel=3)
            return
        raise ValueError(message)
    for weight, array in zip(weights, arrays):
        weight.assign(array)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Keras' rule: by layer order (layers that hold weights), or ``by_name=True`` by layer name."""
    with _open_weights(filepath) as file:
        group = file["model_weights"] if "model_weights" in file else file
        file_layers = _file_layers(group)
    model_layers = _layers_with_weights(model)
    if by_name:
        by_layer_name = dict(file_layers)
        for layer in model_layers:
            if layer.name in by_layer_name:
                _assign(layer, by_layer_name[layer.name], layer.name, skip_mismatch)
        return
    if len(file_layers) != len(model_layers):
        raise ValueError(
            f"{filepath} holds weights for {len(file_layers)} layers ({[n for n, _ in file_layers]}), model {model.name!r} "
            f"has {len(model_layers)} layers with weights ({[layer.name for layer in model_layers]}); "
            "use by_name=True to load the ones that match"
        )
    for layer, (name, arrays) in zip(model_layers, file_layers):
        _assign(layer, arrays, name, skip_mismatch)


def load_model(filepath, compile=True):
    from fastconv import optimizers
    from fastconv.layers import deserialize

    with _open_weights(filepath) as file:
        if "model_config" not in file.attrs:
            raise ValueError(f"{filepath} holds no model configuration (a weights-only file? use model.load_weights)")
        model = deserialize(json.loads(file.attrs["model_config"]))
        training = json.loads(file.attrs["training_config"]) if "training_config" in file.attrs else None
    load_weights(model, filepath)
    if compile and training is not None:
        optimizer_config = training["optimizer_config"]
        optimizer = optimizers.from_config(optimizer_config["class_name"], optimizer_config["config"])
        model.compile(optimizer=optimizer, loss=training["loss"], metrics=training["metrics"])
    return model
