"""Keras 3's own formats: the ``.keras`` archive and the ``.weights.h5`` weights file.

A ``.keras`` file is a zip archive of ``metadata.json`` (who wrote it), ``config.json`` (the model's
config with its ``compile_config``) and ``model.weights.h5``. That weights file — also what
``save_weights('x.weights.h5')`` writes — names groups not after layers but after their classes, in
order within each model: ``layers/conv2d/vars/0`` (kernel), ``layers/conv2d/vars/1`` (bias),
``layers/conv2d_1/...``, ``layers/functional/layers/input_layer/...`` for a nested functional model;
each ``vars`` group has the layer's name as an attribute. The optimizer is ``optimizer/vars/0, 1, ...``
(iteration, learning rate, then the slots: :mod:`fastconv.models.optimizer_state`).

Reading checks the archive before it trusts it: the members it expects and nothing outside it, every member
read no further than what it can hold (the config 64 MiB; the weights what the config's model implies, so a zip
bomb stops at that bound), every HDF5 read through :mod:`fastconv.models.hdf5`. Writing is atomic.
"""

import contextlib
import datetime
import json
import tempfile
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np

from fastconv._version import __version__ as FASTCONV_VERSION
from fastconv.backends import checks
from fastconv.models import atomic, hdf5, keras_config, optimizer_state
from fastconv.models.legacy_h5 import KERAS_VERSION, trainable_weights

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_MAX_JSON_BYTES = 64 * 2**20


def is_archive(path):
    return zipfile.is_zipfile(path)


def is_weights_file(file):
    return hdf5.has(file, "layers") or hdf5.has(file, "vars")


def _paths(model, prefix=""):
    """[(path of the layer's group, layer)] for every layer of ``model``, nested models included, as Keras 3 names them."""
    paths, used = [], {}
    for layer in model.layers:  # a Sequential's without its input layer, a functional model's with it, as in Keras
        if keras_config.is_keras_operation(layer):
            continue
        base = keras_config.snake_case(layer.type_name)
        used[base] = used.get(base, -1) + 1
        path = f"{prefix}layers/{base}" if used[base] == 0 else f"{prefix}layers/{base}_{used[base]}"
        paths.append((path, layer))
        if layer.type_name in keras_config.MODEL_TYPES:
            paths += _paths(layer, f"{path}/")
    return paths


# --- writing ----------------------------------------------------------------------------------


def write_weights(file, model, include_optimizer=True):
    """``model``'s weights (and, when compiled, its optimizer's state) in Keras 3's layout."""
    file.create_group("vars").attrs["name"] = model.name
    for path, layer in _paths(model):
        group = file.create_group(f"{path}/vars")
        group.attrs["name"] = layer.name
        if layer.type_name not in keras_config.MODEL_TYPES:  # a nested model's weights are its layers'
            for index, weight in enumerate(layer.weights):
                group.create_dataset(str(index), data=checks.host_array(weight.value))
    if include_optimizer and model.optimizer is not None:
        group = file.create_group("optimizer/vars")
        group.attrs["name"] = model.optimizer.name
        for index, (_, value) in enumerate(optimizer_state.entries(model.optimizer, trainable_weights(model))):
            group.create_dataset(str(index), data=value)


def save_weights(model, path):
    with hdf5.atomic_file(path) as file:
        write_weights(file, model)


def save_archive(model, path, include_optimizer=True):
    """A ``.keras`` archive that ``keras.saving.load_model`` (Keras 3) opens."""
    config = keras_config.model_config(model, archive=True)
    if model.loss is not None:
        config["compile_config"] = keras_config.training_config(model, archive=True)
    metadata = {
        "keras_version": KERAS_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "written_by": f"fastconv {FASTCONV_VERSION}",
    }
    with tempfile.TemporaryDirectory() as folder:
        weights_path = Path(folder) / WEIGHTS
        with h5py.File(weights_path, "w") as file:
            write_weights(file, model, include_optimizer)
        with atomic.atomic_path(path) as temporary:
            with zipfile.ZipFile(temporary, "x", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(METADATA, json.dumps(metadata))
                archive.writestr(CONFIG, json.dumps(config))
                archive.write(weights_path, WEIGHTS)


# --- reading ----------------------------------------------------------------------------------


def _layer_plan(file, model, skip_mismatch, source):
    """[(layer, [(dataset name, shape)])] after checking every group; raises before anything is set."""
    plan = []
    for path, layer in _paths(model):
        if layer.type_name in keras_config.MODEL_TYPES:
            continue
        what = f"the weights of layer {layer.name!r} ({path}/vars)"
        group = hdf5.node(file, f"{path}/vars", what)
        names = sorted(group.keys(), key=lambda key: int(key) if key.isdigit() else -1)
        shapes = [tuple(hdf5.node(group, name, what).shape) for name in names]
        expected = [tuple(w.shape) for w in layer.weights]
        if names != [str(i) for i in range(len(names))] or shapes != expected:
            problem = f"layer {layer.name!r} has weights of shapes {expected}, the file's {path}/vars holds {dict(zip(names, shapes))}"
            if skip_mismatch:
                warnings.warn(f"skipped: {problem}", stacklevel=5)
                continue
            raise ValueError(f"{source}: {problem}; nothing was loaded")
        plan.append((layer, group, names, shapes))
    return plan


def load_weights_from(file, model, source, skip_mismatch=False):
    """Set ``model``'s weights from Keras 3's layout, and its optimizer's state if compiled: all or nothing, every
    array read and checked before the first is set."""
    plan = _layer_plan(file, model, skip_mismatch, source)
    arrays = [
        [hdf5.read_array(group, name, shape, what=f"weight {name} of layer {layer.name!r}") for name, shape in zip(names, shapes)]
        for layer, group, names, shapes in plan
    ]
    state = None
    if model.optimizer is not None and hdf5.has(file, "optimizer"):
        group = hdf5.node(file, "optimizer/vars")
        names = sorted(group.keys(), key=lambda key: int(key) if key.isdigit() else -1)

        def read(index, shape, kinds):
            return hdf5.read_array(group, names[index], shape, kinds, what=f"optimizer/vars/{names[index]}")

        state = optimizer_state.read_state(model.optimizer, trainable_weights(model), names, read, source)
    for (layer, _, _, _), layer_arrays in zip(plan, arrays):
        for weight, array in zip(layer.weights, layer_arrays):
            weight.assign(array)
    optimizer_state.apply_state(model.optimizer, trainable_weights(model), state)


_MAX_MEMBERS = 1024  # Keras writes three members (and an assets/ folder for layers that have assets)
_COPY_CHUNK = 2**20


def weights_bytes_bound(model):
    """The most bytes a weights file of ``model`` can hold: every weight and up to two optimizer slots per weight,
    in float64 at worst, plus HDF5's headers (a few KiB per group or dataset) and a MiB of slack. A member larger
    than this is not that model's weights file, whatever its name (a zip bomb expands to gigabytes)."""
    elements = sum(int(np.prod(weight.shape)) for weight in model.weights)
    objects = 3 * len(model.weights) + 2 * len(model.layers) + 16
    return 8 * 3 * elements + 64 * 2**10 * objects + 2**20


@contextlib.contextmanager
def _open_archive(path):
    """``with _open_archive(path) as (archive, members):`` the zip archive with its members checked (ValueError
    naming it for anything amiss: not a zip, a member missing, too many members)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a Keras archive (.keras): {error}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise ValueError(f"{path}: the archive has {len(infos)} members; a Keras archive has a handful")
        members = {info.filename: info for info in infos}
        for name in (CONFIG, WEIGHTS):
            if name not in members:
                raise ValueError(f"{path}: the archive has no {name} (it holds {sorted(members)[:6]})")
        yield archive, members


def _read_member(path, archive, info, limit):
    """The bytes of member ``info``, refused before reading when it says it holds more than ``limit``, and read no
    further than ``limit`` whatever it says; ValueError naming the archive when it is damaged."""
    if info.file_size > limit:
        raise ValueError(f"{path}: {info.filename} is {info.file_size} bytes, more than it can be ({limit})")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:  # CRC errors, truncation, bad compression
        raise ValueError(f"{path}: the archive is damaged: {error}") from None
    if len(data) > limit:
        raise ValueError(f"{path}: {info.filename} holds more than {limit} bytes")
    return data


def _read_config(path, archive, members):
    data = _read_member(path, archive, members[CONFIG], _MAX_JSON_BYTES)
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{path}: {CONFIG} is nested too deeply to be a model's config") from None
    except ValueError as error:  # bad JSON or bad UTF-8
        raise ValueError(f"{path}: the archive is damaged: {CONFIG} is not JSON: {error}") from None


@contextlib.contextmanager
def _weights_file(path, archive, members, limit):
    """``with _weights_file(...) as weights_path:`` the weights member copied into a temporary file (removed
    afterwards) in chunks, never more than ``limit`` bytes of it (:func:`weights_bytes_bound`)."""
    info = members[WEIGHTS]
    if info.file_size > limit:
        raise ValueError(
            f"{path}: {WEIGHTS} is {info.file_size} bytes; the model's weights and optimizer state fit in {limit}: "
            "it is not this model's weights file"
        )
    with tempfile.TemporaryDirectory() as folder:
        weights_path = Path(folder) / WEIGHTS
        try:
            with archive.open(info) as source, open(weights_path, "wb") as target:
                copied = 0
                while chunk := source.read(min(_COPY_CHUNK, limit + 1 - copied)):
                    copied += len(chunk)
                    if copied > limit:
                        raise ValueError(f"{path}: {WEIGHTS} holds more than the {limit} bytes the model's weights fit in")
                    target.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as error:  # CRC errors, truncation, a full disk
            raise ValueError(f"{path}: the archive is damaged: {error}") from None
        try:
            with hdf5.errors_named(weights_path):
                yield weights_path
        except ValueError as error:  # name the member of the archive, not the temporary file
            raise ValueError(str(error).replace(str(weights_path), f"{path} ({WEIGHTS})")) from error.__cause__


def _set_weights(model, path, weights_path, skip_mismatch=False):
    with hdf5.open_file(weights_path) as file:
        load_weights_from(file, model, f"{path} ({WEIGHTS})", skip_mismatch)


def load_archive(path, compile=True):
    """The model of a ``.keras`` archive: config, weights and (``compile=True``) compile settings and optimizer state."""
    from fastconv.layers import deserialize

    with _open_archive(path) as (archive, members), hdf5.errors_named(path):
        config = _read_config(path, archive, members)
        fastconv_config = keras_config.fastconv_config(config, str(path))
        try:
            model = deserialize(fastconv_config)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{path}: cannot rebuild the model: {error}") from None
        compile_config = config.get("compile_config") if isinstance(config, dict) else None
        if compile and compile_config:
            optimizer, loss, metrics = keras_config.compile_arguments(compile_config, str(path))
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        with _weights_file(path, archive, members, weights_bytes_bound(model)) as weights_path:
            _set_weights(model, path, weights_path)
    return model


def load_archive_weights(model, path, skip_mismatch=False):
    """``load_weights`` on a ``.keras`` archive: the weights (and optimizer state) it holds."""
    with _open_archive(path) as (archive, members):
        with _weights_file(path, archive, members, weights_bytes_bound(model)) as weights_path:
            _set_weights(model, path, weights_path, skip_mismatch)
