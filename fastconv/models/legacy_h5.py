"""Keras' legacy HDF5 format (``model.save('model.h5')``, ``save_weights('weights.h5')``), both generations.

A weights group holds the attribute ``layer_names`` and one group per layer whose attribute
``weight_names`` lists its datasets by path below it (Keras 2: ``conv2d/kernel:0``; Keras 3:
``sequential/conv2d/kernel``). A model file puts that group under ``model_weights`` and adds the JSON
attributes ``model_config`` and ``training_config``, and the optimizer's state under
``optimizer_weights`` (see :mod:`fastconv.models.optimizer_state`). Names longer than HDF5's header
allows are split into ``layer_names0``, ``layer_names1``, ... as Keras does.

Weights load by Keras' rule: the layers that hold weights, in order (or by name with ``by_name=True``);
within a nested model, its trainable weights first, then the frozen ones (Keras' ``_legacy_weights``
order, which fastconv also writes). fastconv 0.2's own files (``keras_version='fastconv-1'``) listed a
nested model's weights in layer order, and are read so.
"""

import json
import warnings

import numpy as np

from fastconv._version import __version__ as FASTCONV_VERSION
from fastconv.backends import checks
from fastconv.models import hdf5, keras_config, optimizer_state

KERAS_VERSION = "3.15.1"  # the Keras release whose reading of these files the tests check
FIRST_FORMAT = "fastconv-1"  # fastconv 0.2's files
_ATTRIBUTE_LIMIT = 64000  # bytes an HDF5 object header can hold


def is_model_file(file):
    return "model_config" in file.attrs


def is_weights_group(group):
    return "layer_names" in group.attrs or "layer_names0" in group.attrs


def saved_order(layer):
    """The weights of ``layer`` in the order Keras' legacy files list them: trainable first, then frozen."""
    weights = layer.weights
    return [w for w in weights if w.trainable] + [w for w in weights if not w.trainable]


# --- writing ------------------------------------------------------------------------------


def _write_names(group, attribute, names):
    """``names`` as a bytes array attribute, split into ``attribute0``, ``attribute1``, ... when too long for one."""
    encoded = np.array([name.encode() for name in names])
    chunks = max(1, -(-encoded.nbytes // _ATTRIBUTE_LIMIT))
    if chunks == 1:
        group.attrs[attribute] = encoded
        return
    for index, chunk in enumerate(np.array_split(encoded, chunks)):
        group.attrs[f"{attribute}{index}"] = chunk


def write_weights(group, model):
    """The weights of ``model``'s layers, a group per layer (``save_weights`` at the root, ``model.save`` below it)."""
    layers = [layer for layer in model.layers if not keras_config.is_keras_operation(layer)]
    _write_names(group, "layer_names", [layer.name for layer in layers])
    group.attrs["backend"] = "fastconv"
    group.attrs["keras_version"] = KERAS_VERSION
    group.attrs["fastconv_version"] = FASTCONV_VERSION
    for layer in layers:
        layer_group = group.create_group(layer.name)
        weights = saved_order(layer)
        _write_names(layer_group, "weight_names", [w.name for w in weights])
        for weight in weights:
            layer_group.create_dataset(weight.name, data=checks.host_array(weight.value))


def write_model(file, model, include_optimizer):
    """Everything ``keras.saving.load_model`` (Keras 3) needs to rebuild, compile and resume ``model``."""
    file.attrs["backend"] = "fastconv"
    file.attrs["keras_version"] = KERAS_VERSION
    file.attrs["fastconv_version"] = FASTCONV_VERSION
    file.attrs["model_config"] = json.dumps(keras_config.model_config(model))
    if model.loss is not None:
        file.attrs["training_config"] = json.dumps(keras_config.training_config(model))
    write_weights(file.create_group("model_weights"), model)
    if include_optimizer and model.optimizer is not None:
        state = optimizer_state.entries(model.optimizer, trainable_weights(model))
        group = file.create_group("optimizer_weights")
        _write_names(group, "weight_names", [name for name, _ in state])
        for name, value in state:
            group.create_dataset(name, data=value)


def trainable_weights(model):
    return [weight for weight in model.weights if weight.trainable]


# --- reading ------------------------------------------------------------------------------


def read_names(group, attribute):
    """A names attribute (bytes or str), whole or split into ``attribute0``, ``attribute1``, ..."""
    if attribute in group.attrs:
        return hdf5.decode_names(group.attrs[attribute])
    names, index = [], 0
    while f"{attribute}{index}" in group.attrs:
        names += hdf5.decode_names(group.attrs[f"{attribute}{index}"])
        index += 1
    return names


def _file_layers(group):
    """[(layer name, [(weight path, dataset shape)])] of the layers of a weights group that hold weights."""
    if not is_weights_group(group):
        raise ValueError(f"{group.file.filename} has no 'layer_names' attribute: not a Keras/fastconv weights file")
    layers = []
    for name in read_names(group, "layer_names"):
        layer_group = hdf5.node(group, name, f"the group of layer {name!r}")
        weight_names = read_names(layer_group, "weight_names")
        if weight_names:
            shapes = [tuple(hdf5.node(layer_group, w, f"weight {w!r} of layer {name!r}").shape) for w in weight_names]
            layers.append((name, list(zip(weight_names, shapes))))
    return layers


def _mismatch(layer, source, file_weights, order):
    return (
        f"layer {layer.name!r} has weights of shapes {[w.shape for w in order]}, the file's layer {source!r} "
        f"holds {[shape for _, shape in file_weights]}"
    )


def _plan(model, file_layers, filepath, by_name, skip_mismatch, order_of):
    """[(weights in file order, file layer name, file weights)] to load, after every check; raises before any is set."""
    model_layers = [layer for layer in model.layers if layer.weights]
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
        order = order_of(layer)
        if len(file_weights) == len(order) and all(shape == w.shape for (_, shape), w in zip(file_weights, order)):
            plan.append((order, source, file_weights))
        elif skip_mismatch:
            warnings.warn(f"skipped: {_mismatch(layer, source, file_weights, order)}", stacklevel=5)
        else:
            raise ValueError(f"{filepath}: {_mismatch(layer, source, file_weights, order)}; nothing was loaded")
    return plan


def load_weights(group, model, filepath, by_name=False, skip_mismatch=False):
    """Set ``model``'s weights from a legacy weights group, all or nothing (every array is read and checked first)."""
    first_format = hdf5.decode_names(group.attrs.get("keras_version", ""))[:1] == [FIRST_FORMAT]
    order_of = (lambda layer: layer.weights) if first_format else saved_order
    plan = _plan(model, _file_layers(group), filepath, by_name, skip_mismatch, order_of)
    arrays = [
        [hdf5.read_array(hdf5.node(group, source), name, shape, what=f"weight {name!r} of layer {source!r}") for name, shape in file_weights]
        for _, source, file_weights in plan
    ]
    for (order, _, _), layer_arrays in zip(plan, arrays):
        for weight, array in zip(order, layer_arrays):
            weight.assign(array)


def _json_attribute(file, name):
    value = file.attrs[name]
    try:
        return json.loads(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{file.filename}: the attribute {name!r} is not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{file.filename}: the attribute {name!r} is nested too deeply to be a model's configuration") from None


def read_model(file, filepath, compile):
    """The model of a legacy HDF5 model file, with its weights and (``compile=True``) compile settings and state."""
    from fastconv.layers import deserialize

    config = keras_config.fastconv_config(_json_attribute(file, "model_config"), filepath)
    try:
        model = deserialize(config)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{filepath}: cannot rebuild the model: {error}") from None
    load_weights(hdf5.node(file, "model_weights"), model, filepath)
    if compile and "training_config" in file.attrs:
        optimizer, loss, metrics = keras_config.compile_arguments(_json_attribute(file, "training_config"), filepath)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        if hdf5.has(file, "optimizer_weights"):
            group = hdf5.node(file, "optimizer_weights")
            names = read_names(group, "weight_names")

            def read(index, shape, kinds):
                return hdf5.read_array(group, names[index], shape, kinds, what=f"optimizer_weights/{names[index]}")

            weights = trainable_weights(model)
            optimizer_state.apply_state(model.optimizer, weights, optimizer_state.read_state(model.optimizer, weights, names, read, filepath))
    return model
