"""Model files from strangers: crafted graphs and classes, damaged bytes, bombs, state outside its domain.

Every such file is refused with a ValueError that names the file and what is wrong, before the model or the
optimizer changes, in bounded time and space; none loads as a different model.
"""

import contextlib
import json
import resource
import shutil
import signal
import zipfile

import h5py
import numpy as np
import pytest

from conftest import within_seconds
from file_edits import KERAS_FILES, edited_copy, replace_member, set_inbound
from fastconv import layers, models

FUNCTIONAL_FILES = ["functional_convnet.keras", "functional_convnet.keras3.h5", "functional_convnet.keras2.h5"]


# --- crafted graphs and classes -------------------------------------------------------------


@pytest.mark.parametrize("source", FUNCTIONAL_FILES)
def test_a_graph_with_a_cycle_is_refused_naming_the_file_and_the_layers_in_it(tmp_path, source):
    def cycle(config):  # the first convolution takes its input from the second pool, which comes after it
        entries = config["config"]["layers"]
        set_inbound(entries[1], entries[4]["name"])

    path = edited_copy(tmp_path, source, cycle)
    with within_seconds(20), pytest.raises(ValueError, match=r"cycle: 'conv2d_7' -> 'max_pooling2d_6' -> 'conv2d_8' -> 'max_pooling2d_7' -> 'conv2d_7'") as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def _entry(config, index):
    return config["config"]["layers"][index]


USERS_CLASSES = {
    "own-module": (lambda c: _entry(c, 1).update(module="mylayers"), r"layer 'conv2d': the class 'Conv2D' comes from module 'mylayers'"),
    "registered-layer": (lambda c: _entry(c, 1).update(module="mylayers", registered_name="Custom>Conv2D"),
                         r"layer 'conv2d': the class 'Conv2D' comes from module 'mylayers', registered as 'Custom>Conv2D'"),
    "registered-name-only": (lambda c: _entry(c, 3).update(registered_name="Custom>Conv2D"), r"layer 'conv2d_1': the class 'Conv2D' .* registered as 'Custom>Conv2D'"),
    "activation": (lambda c: _entry(c, 8)["config"].update(activation={"module": "my_acts", "class_name": "function", "config": "my_acts>softmax", "registered_name": "function"}),
                   r"layer 'dense_1': the function 'my_acts>softmax' comes from module 'my_acts'"),
    "activation-registered": (lambda c: _entry(c, 8)["config"].update(activation={"module": "my_acts", "class_name": "function", "config": "softmax", "registered_name": "my_acts>softmax"}),
                              r"layer 'dense_1': the function 'softmax' .* registered as 'my_acts>softmax'"),
    "initializer": (lambda c: _entry(c, 7)["config"]["kernel_initializer"].update(module="my_inits", registered_name="my_inits>GlorotUniform"),
                    r"layer 'dense': the class 'GlorotUniform' comes from module 'my_inits'"),
}  # fmt: skip


@pytest.mark.parametrize("change", sorted(USERS_CLASSES))
def test_a_users_own_class_or_function_is_refused_not_replaced_by_fastconvs(tmp_path, change):
    edit, message = USERS_CLASSES[change]
    path = edited_copy(tmp_path, "mnist_convnet.keras", edit)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value) and "user's own code" in str(error.value)


def test_a_users_own_optimizer_is_refused_and_compile_false_skips_it(tmp_path):
    def own_optimizer(config):
        config["compile_config"]["optimizer"].update(module="my_optimizers", registered_name="Custom>RMSprop")

    path = edited_copy(tmp_path, "mnist_convnet.keras", own_optimizer)
    with pytest.raises(ValueError, match=r"compile setting 'rm_sprop': the class 'RMSprop' comes from module 'my_optimizers'") as error:
        models.load_model(path)
    assert str(path) in str(error.value)
    assert models.load_model(path, compile=False).optimizer is None


# --- optimizer state outside its domain ---------------------------------------------------


def _edit_h5(tmp_path, source, edit):
    path = tmp_path / source
    shutil.copy(KERAS_FILES / source, path)
    with h5py.File(path, "a") as file:
        edit(file)
    return path


def _set_optimizer_option(key, value):
    def edit(file):
        training = json.loads(file.attrs["training_config"])
        training["optimizer_config"]["config"][key] = value
        file.attrs["training_config"] = json.dumps(training)

    return edit


def _set_dataset(name, make):
    def edit(file):
        old = file[name][()]
        del file[name]
        file[name] = make(old)

    return edit


OUTSIDE_THE_DOMAIN = {
    "nan-rho": ("cats_dogs_convnet.keras3.h5", _set_optimizer_option("rho", float("nan")), r"RMSprop: rho must be a finite number in \[0.0, 1.0\], got nan"),
    "nan-beta_1": ("every_layer.keras3.h5", _set_optimizer_option("beta_1", float("nan")), r"Adam: beta_1 must be a finite number in \[0.0, 1.0\)"),
    "beta_2-of-1": ("every_layer.keras3.h5", _set_optimizer_option("beta_2", 1.0), r"Adam: beta_2 must be a finite number in \[0.0, 1.0\), got 1.0"),
    "zero-epsilon": ("every_layer.keras3.h5", _set_optimizer_option("epsilon", 0.0), r"Adam: epsilon must be > 0"),
    "negative-iterations": ("cats_dogs_convnet.keras3.h5", _set_dataset("optimizer_weights/rm_sprop_1/iteration", lambda old: np.int64(-3)),
                            r"the iteration count must be an integer >= 0, got -3"),
    "negative-velocity": ("cats_dogs_convnet.keras3.h5",
                          _set_dataset("optimizer_weights/rm_sprop_1/cats_dogs_convnet_dense_2_bias_velocity", lambda old: -np.abs(old) - 1),
                          r"RMSprop velocity of dense_2/bias:0 holds negative values"),
    "nan-momentum": ("every_layer.keras3.h5",
                     _set_dataset("optimizer_weights/adam/every_layer_conv2d_kernel_momentum", lambda old: np.full_like(old, np.nan)),
                     r"Adam momentum of conv2d/kernel:0 holds NaN or infinity"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OUTSIDE_THE_DOMAIN))
def test_optimizer_settings_and_state_outside_their_domain_are_refused(tmp_path, case):
    source, edit, message = OUTSIDE_THE_DOMAIN[case]
    path = _edit_h5(tmp_path, source, edit)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def test_load_weights_with_bad_optimizer_state_changes_no_weight(tmp_path):
    source = KERAS_FILES / "cats_dogs_convnet.keras"
    weights_file = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(source) as archive:
        weights_file.write_bytes(archive.read("model.weights.h5"))
    with h5py.File(weights_file, "a") as file:
        names = sorted(file["optimizer/vars"].keys(), key=int)
        last = f"optimizer/vars/{names[-1]}"
        value = file[last][()]
        del file[last]
        file[last] = -np.abs(value) - 1  # a negative mean of squares
    crafted = replace_member(tmp_path, "cats_dogs_convnet.keras", "model.weights.h5", weights_file)
    model = models.load_model(source)
    for weight in model.weights:
        weight.assign(np.zeros(weight.shape))
    iterations = model.optimizer.iterations
    with pytest.raises(ValueError, match=r"holds negative values") as error:
        model.load_weights(crafted)
    assert str(crafted) in str(error.value)
    assert all(not weight.numpy().any() for weight in model.weights), "a weight was set before the state was refused"
    assert model.optimizer.iterations == iterations


# --- a zip bomb --------------------------------------------------------------------------------


@contextlib.contextmanager
def files_no_larger_than(limit):
    """Inside the block no file this process writes may grow past ``limit`` bytes (a write past it fails with
    EFBIG instead of filling the disk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _bomb(tmp_path, source, megabytes):
    """A copy of the archive ``source`` whose weights member is ``megabytes`` MiB of zeros, deflated to ~1/1000."""
    path = tmp_path / f"bomb_{source}"
    with zipfile.ZipFile(KERAS_FILES / source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for member in ("metadata.json", "config.json"):
            bomb.writestr(member, original.read(member))
        with bomb.open("model.weights.h5", "w", force_zip64=True) as weights:
            chunk = bytes(2**20)
            for _ in range(megabytes):
                weights.write(chunk)
    return path


def test_a_zip_bomb_is_refused_by_the_size_its_model_implies_before_a_byte_is_written(tmp_path):
    bomb = _bomb(tmp_path, "mnist_convnet.keras", 64)
    assert bomb.stat().st_size < 2**20
    model = models.load_model(KERAS_FILES / "mnist_convnet.keras")
    with files_no_larger_than(2**20):
        with pytest.raises(ValueError, match=r"model.weights.h5 is 67108864 bytes; the model's weights and optimizer state fit in \d+") as error:
            models.load_model(bomb)
        assert str(bomb) in str(error.value)
        with pytest.raises(ValueError, match=r"model.weights.h5 is 67108864 bytes"):
            model.load_weights(bomb)


# --- damaged HDF5 files and configs of the wrong shape ----------------------------------------------


def _mutated(tmp_path, source, seed):
    """A copy of ``source`` damaged as a disk or a download damages files: bytes flipped in its headers, a block
    zeroed, or its tail cut off (seeded, so a failure can be replayed)."""
    rng = np.random.default_rng(seed)
    data = bytearray((KERAS_FILES / source).read_bytes())
    damage = seed % 3
    if damage == 0:
        for place in rng.integers(0, min(len(data), 2**16), 8):
            data[place] ^= int(rng.integers(1, 256))
    elif damage == 1:
        start = int(rng.integers(0, len(data) - 512))
        data[start : start + 512] = bytes(512)
    else:
        data = data[: int(rng.integers(512, len(data)))]
    path = tmp_path / f"damaged_{seed}_{source}"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.filterwarnings("ignore")  # a damaged optimizer layout is a warning, not an error
@pytest.mark.parametrize("source", ["mnist_convnet.keras3.h5", "cats_dogs_convnet.keras2.h5", "mnist_convnet.weights.h5"])
def test_damaged_files_give_a_value_error_naming_the_file(tmp_path, source):
    model = models.load_model(KERAS_FILES / source.replace(".weights.h5", ".keras3.h5"))
    for seed in range(20):
        path = _mutated(tmp_path, source, seed)
        try:
            model.load_weights(path) if source.endswith(".weights.h5") else models.load_model(path)
        except ValueError as error:
            assert str(path) in str(error), f"seed {seed}: {error}"
        # a damaged weight value loads: HDF5 keeps no checksum of a dataset's bytes


def _json_edit(attribute, edit):
    def change(file):
        config = json.loads(file.attrs[attribute])
        edit(config)
        file.attrs[attribute] = json.dumps(config)

    return change


def _nested_deeply(file):
    file.attrs["model_config"] = '{"class_name": "Sequential", "config": ' * 50_000 + "{}" + "}" * 50_000


def _nested_models(file):
    """The model inside 40 Sequentials: JSON reads it, and converting it recursively could exhaust the stack."""
    config = json.loads(file.attrs["model_config"])
    for depth in range(40):
        config = {"class_name": "Sequential", "config": {"name": f"wrapper_{depth}", "layers": [config]}}
    file.attrs["model_config"] = json.dumps(config)


def _replace_in_layers(config):
    config["config"]["layers"][3] = 5


WRONG_SHAPES = {
    "deeply-nested-json": ("mnist_convnet.keras3.h5", _nested_deeply, r"nested too deeply"),
    "models-nested-40-deep": ("mnist_convnet.keras3.h5", _nested_models, r"is nested 16 models deep; fastconv reads at most 16"),
    "int-for-a-layer": ("mnist_convnet.keras3.h5", _json_edit("model_config", _replace_in_layers), r"a layer's configuration must be"),
    "int-for-a-graph-layer": ("functional_convnet.keras3.h5", _json_edit("model_config", _replace_in_layers), r"a layer of the graph must be"),
    "empty-keras-version": ("mnist_convnet.keras3.h5", lambda file: file["model_weights"].attrs.__setitem__("keras_version", np.array([], "S1")), None),
    "string-for-layers": ("mnist_convnet.keras3.h5", _json_edit("model_config", lambda c: c["config"].__setitem__("layers", "conv2d")), r"no list of layers"),
    "list-for-a-kernel-size": ("mnist_convnet.keras3.h5", _json_edit("model_config", lambda c: c["config"]["layers"][1]["config"].__setitem__("kernel_size", [[3]])), r"conv2d"),
    "not-utf8-names": ("mnist_convnet.keras3.h5", lambda file: file["model_weights"].attrs.__setitem__("layer_names", np.array([b"\xff\xfe"])), r"layer_names|utf-8"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_configs_and_attributes_of_the_wrong_shape_give_a_value_error_naming_the_file(tmp_path, case):
    source, edit, message = WRONG_SHAPES[case]
    path = _edit_h5(tmp_path, source, edit)
    if message is None:  # a file that is still whole: it loads
        models.load_model(path)
        return
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


# --- HDF5 files that point outside themselves, or are damaged ------------------------------


def _saved_model(tmp_path):
    model = models.Sequential([layers.Dense(3, input_shape=(4,), name="dense")])
    model.compile(optimizer="rmsprop", loss="mse")
    path = tmp_path / "model.h5"
    model.save(path)
    return path


def _replace_kernel(path, make):
    """Replace the kernel dataset of layer 'dense' by what ``make(group, name)`` puts there."""
    with h5py.File(path, "a") as file:
        group = file["model_weights/dense/dense"]
        del group["kernel:0"]
        make(group, "kernel:0")


def test_crafted_files_cannot_read_outside_themselves(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["kernel"] = np.arange(12, dtype=np.float32).reshape(4, 3)
    crafts = {
        "external storage": lambda g, n: g.create_dataset(n, shape=(4, 3), dtype="f4", external=[(str(secret), 0, 48)]),
        "external link": lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(other), "/kernel")),
        "virtual dataset": lambda g, n: g.create_virtual_dataset(n, _layout(other)),
    }
    messages = {"external storage": "external files", "external link": "external link", "virtual dataset": "virtual dataset"}
    for label, make in crafts.items():
        path = _saved_model(tmp_path)
        _replace_kernel(path, make)
        with pytest.raises(ValueError, match=messages[label]) as error:
            models.load_model(path)
        assert "kernel:0" in str(error.value) and str(path) in str(error.value), label
        model = models.Sequential([layers.Dense(3, input_shape=(4,), name="dense")])
        with pytest.raises(ValueError, match=messages[label]):
            model.load_weights(path)


def _layout(other):
    layout = h5py.VirtualLayout(shape=(4, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "kernel", shape=(4, 3))
    return layout


def test_soft_links_are_followed_inside_the_file_only(tmp_path):
    path = _saved_model(tmp_path)
    with h5py.File(path, "a") as file:
        file["spare"] = np.asarray(file["model_weights/dense/dense/kernel:0"]) + 1
    _replace_kernel(path, lambda g, n: g.__setitem__(n, h5py.SoftLink("/spare")))
    loaded = models.load_model(path)
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(loaded.get_weights()[0], file["spare"][()])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["kernel"] = np.zeros((4, 3), np.float32)
    with h5py.File(path, "a") as file:
        del file["spare"]
        file["spare"] = h5py.ExternalLink(str(other), "/kernel")  # a soft link on to an external one
    with pytest.raises(ValueError, match="external link"):
        models.load_model(path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f["model_weights/dense/dense"].__delitem__("kernel:0"), r"weight 'dense/kernel:0' of layer 'dense' is missing"),
        (lambda f: f["model_weights"].__delitem__("dense"), r"the group of layer 'dense' is missing"),
        (lambda f: _retype(f, np.int32), r"dtype int32; expected floating point"),
        (lambda f: _retype(f, "S4"), r"dtype \|S4; expected floating point"),
        (lambda f: f.attrs.__setitem__("model_config", "{not json"), r"'model_config' is not valid JSON"),
        (lambda f: _edit_json(f, "training_config", lambda c: c["optimizer_config"].__setitem__("class_name", "Adagrad")),
         r"the optimizer 'Adagrad' is not one fastconv has"),
        (lambda f: _edit_json(f, "model_config", lambda c: c["config"]["layers"][1]["config"].__setitem__("kernel_initializer", "lecun_normal")),
         r"layer 'dense' \(Dense\).*the initializer 'lecun_normal' is not one fastconv has"),
        (lambda f: _edit_json(f, "model_config", lambda c: c["config"]["layers"][1].__setitem__("class_name", "LSTM")),
         r"layer 'dense' is a LSTM, which fastconv does not have"),
        (lambda f: _reshape_slot(f), r"optimizer_weights/rmsprop/dense_kernel_velocity has shape \(2, 2\), expected \(4, 3\)"),
    ],
    ids=["missing-dataset", "missing-layer-group", "int-dtype", "bytes-dtype", "bad-json", "unknown-optimizer", "unknown-initializer",
         "unknown-layer", "optimizer-slot-shape"],
)  # fmt: skip
def test_damaged_files_give_errors_naming_the_file_and_the_layer(tmp_path, damage, message):
    path = _saved_model(tmp_path)
    with h5py.File(path, "a") as file:
        damage(file)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def _retype(file, dtype):
    group = file["model_weights/dense/dense"]
    values = np.asarray(group["kernel:0"])
    del group["kernel:0"]
    group["kernel:0"] = values.astype(dtype)


def _reshape_slot(file):
    group = file["optimizer_weights/rmsprop"]
    del group["dense_kernel_velocity"]
    group["dense_kernel_velocity"] = np.zeros((2, 2), np.float32)


def _edit_json(file, attribute, edit):
    config = json.loads(file.attrs[attribute])
    edit(config)
    file.attrs[attribute] = json.dumps(config)
