"""HDF5 files in Keras' layout, so that weights move between Keras and fastconv by layer.

``save_weights`` writes, at the file's root, the attribute ``layer_names`` and
one group per layer whose attribute ``weight_names`` lists datasets such as
``conv2d/kernel:0`` (stored at ``<layer>/conv2d/kernel:0``). ``model.save``
writes the same under ``model_weights/`` plus the attributes ``model_config``
and ``training_config`` (JSON) and, for a compiled model, the optimizer's
state under ``optimizer_weights/`` as Keras 2 lays it out (``RMSprop/iter:0``,
then each slot of each trainable weight: ``RMSprop/conv2d/kernel/rms:0``). A
model nested in another is one layer group holding its sublayers' weights, as
Keras writes it (VGG16's ``notop`` file is such a weights file).

Every save is atomic and every read is checked (``fastconv.models.hdf5``);
loading weights is all or nothing: every layer is checked before any is set.
"""

import json
import warnings
from pathlib import Path

import numpy as np

from fastconv.backends import checks
from fastconv.models import hdf5

FORMAT_VERSION = "fastconv-1"


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
    """Each layer is one group named after it: names must be unique and free of '/' before anything is written."""
    seen = set()
    for layer in model.layers:
        if "/" in layer.name or layer.name in seen:
            problem = "contains '/'" if "/" in layer.name else "is used by two layers"
            raise ValueError(f"cannot save model {model.name!r}: the layer name {layer.name!r} {problem}")
        seen.add(layer.name)


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
            layer_group.create_dataset(weight.name, data=checks.host_array(weight.value))


def save_weights(model, filepath, overwrite=True):
    path = _check_target(filepath, overwrite)
    _check_layer_names(model)
    with hdf5.atomic_file(path) as file:
        _write_weights(file, model)


def save_model(model, filepath, overwrite=True, include_optimizer=True):
    path = _check_target(filepath, overwrite)
    _check_layer_names(model)
    model_config = json.dumps({"class_name": type(model).__name__, "config": model.get_config()})
    with hdf5.atomic_file(path) as file:
        file.attrs["keras_version"] = FORMAT_VERSION
        file.attrs["backend"] = "fastconv"
        file.attrs["model_config"] = model_config
        if model.loss is not None:
            training = {
                "loss": model.loss.name,
                "metrics": model.metric_names,
                "optimizer_config": {"class_name": type(model.optimizer).__name__, "config": model.optimizer.get_config()},
            }
            file.attrs["training_config"] = json.dumps(training)
        _write_weights(file.create_group("model_weights"), model)
        if include_optimizer and model.optimizer is not None:
            _write_optimizer_state(file, model)


def _trainable_weights(model):
    return [weight for weight in model.weights if weight.trainable]


def _write_optimizer_state(file, model):
    state = model.optimizer.get_state(_trainable_weights(model))
    group = file.create_group("optimizer_weights")
    group.attrs["weight_names"] = np.array([name.encode() for name, _ in state])
    for name, value in state:
        group.create_dataset(name, data=value)


def _read_optimizer_state(file, model):
    """Restore the optimizer's iteration count and slots; a file whose state does not fit the model is refused."""
    group = hdf5.node(file, "optimizer_weights")
    names = hdf5.decode_names(group.attrs.get("weight_names", []))
    weights = _trainable_weights(model)
    layout = model.optimizer.state_layout(weights)
    if names != [name for name, _ in layout]:
        raise ValueError(
            f"{file.filename}: the saved optimizer state {names[:4]}{'...' if len(names) > 4 else ''} does not fit "
            f"{type(model.optimizer).__name__} over the model's {len(weights)} trainable weights "
            f"(expected {[name for name, _ in layout][:4]}...)"
        )
    values = [
        hdf5.read_array(group, name, shape, kinds="f" if shape else "iu", what=f"optimizer_weights/{name}")
        for name, shape in layout
    ]
    model.optimizer.set_state(weights, values)


def _file_layers(group):
    """[(layer name, [(weight name, dataset shape)])] of the layers of a weights group that hold weights."""
    filename = group.file.filename
    if "layer_names" not in group.attrs:
        raise ValueError(f"{filename} has no 'layer_names' attribute: not a Keras/fastconv weights file")
    layers = []
    for name in hdf5.decode_names(group.attrs["layer_names"]):
        layer_group = hdf5.node(group, name, f"the group of layer {name!r}")
        weight_names = hdf5.decode_names(layer_group.attrs.get("weight_names", []))
        if weight_names:
            shapes = [tuple(hdf5.node(layer_group, w, f"weight {w!r} of layer {name!r}").shape) for w in weight_names]
            layers.append((name, list(zip(weight_names, shapes))))
    return layers


def _fits(layer, file_weights):
    return len(file_weights) == len(layer.weights) and all(
        shape == weight.shape for (_, shape), weight in zip(file_weights, layer.weights)
    )


def _mismatch(layer, source, file_weights):
    return (
        f"layer {layer.name!r} has weights of shapes {[w.shape for w in layer.weights]}, the file's layer {source!r} "
        f"holds {[shape for _, shape in file_weights]}"
    )


def _plan(model, file_layers, filepath, by_name, skip_mismatch):
    """[(model layer, file layer name, file weights)] to load, after every check; raises before anything is set."""
    model_layers = _layers_with_weights(model)
    if by_name:
        by_layer_name = dict(file_layers)
        pairs = [(layer, layer.name, by_layer_name[layer.name]) for layer in model_layers if layer.name in by_layer_name]
    else:
        if len(file_layers) != len(model_layers):
            raise ValueError(
                f"{filepath} holds weights for {len(file_layers)} layers ({[n for n, _ in file_layers]}), model {model.name!r} "
                f"has {len(model_layers)} layers with weights ({[layer.name for layer in model_layers]}); "
                "use by_name=True to load the ones that match"
            )
        pairs = [(layer, name, file_weights) for layer, (name, file_weights) in zip(model_layers, file_layers)]
    plan = []
    for layer, source, file_weights in pairs:
        if _fits(layer, file_weights):
            plan.append((layer, source, file_weights))
        elif skip_mismatch:
            warnings.warn(f"skipped: {_mismatch(layer, source, file_weights)}", stacklevel=4)
        else:
            raise ValueError(f"{filepath}: {_mismatch(layer, source, file_weights)}; nothing was loaded")
    return plan


def _load_weights_from(group, model, filepath, by_name=False, skip_mismatch=False):
    plan = _plan(model, _file_layers(group), filepath, by_name, skip_mismatch)
    arrays = [
        [hdf5.read_array(hdf5.node(group, source), name, shape, what=f"weight {name!r} of layer {source!r}") for name, shape in file_weights]
        for _, source, file_weights in plan
    ]  # every array read and checked before the first is assigned
    for (layer, _, _), layer_arrays in zip(plan, arrays):
        for weight, array in zip(layer.weights, layer_arrays):
            weight.assign(array)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Keras' rule: by layer order (layers that hold weights), or ``by_name=True`` by layer name. All or nothing."""
    with hdf5.open_file(filepath) as file:
        group = hdf5.node(file, "model_weights") if hdf5.has(file, "model_weights") else file
        _load_weights_from(group, model, filepath, by_name, skip_mismatch)


def _json_attribute(file, name):
    try:
        return json.loads(file.attrs[name])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{file.filename}: the attribute {name!r} is not valid JSON ({error})") from None


def load_model(filepath, compile=True):
    from fastconv import optimizers
    from fastconv.layers import deserialize

    with hdf5.open_file(filepath) as file:
        if "model_config" not in file.attrs:
            raise ValueError(f"{filepath} holds no model configuration (a weights-only file? use model.load_weights)")
        try:
            model = deserialize(_json_attribute(file, "model_config"))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{filepath}: cannot rebuild the model: {error}") from None
        _load_weights_from(hdf5.node(file, "model_weights"), model, filepath)
        training = _json_attribute(file, "training_config") if "training_config" in file.attrs else None
        if compile and training is not None:
            try:
                optimizer_config = training["optimizer_config"]
                optimizer = optimizers.from_config(optimizer_config["class_name"], optimizer_config["config"])
                model.compile(optimizer=optimizer, loss=training["loss"], metrics=training["metrics"])
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{filepath}: cannot restore the training configuration: {error}") from None
            if hdf5.has(file, "optimizer_weights"):
                _read_optimizer_state(file, model)
    return model
