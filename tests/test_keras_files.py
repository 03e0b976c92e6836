"""Keras' files in, fastconv's files out to Keras (issue 11).

The files under tests/keras_files/ were written by real Keras (3.15.1 and tf_keras 2.21.0) with
tests/keras_files/make_keras_files.py, which also recorded what Keras predicted and its optimizer state;
these tests need no TensorFlow. The reverse direction — Keras 3 opening what fastconv saved — runs
tests/keras_files/check_with_keras.py in a subprocess and skips where TensorFlow is not installed.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastconv
from conftest import relative_error, unfreeze_from
from file_edits import edited_copy
from fastconv import models

KERAS_FILES = Path(__file__).resolve().parent / "keras_files"
sys.path.insert(0, str(KERAS_FILES))
import make_keras_files as notes  # noqa: E402  (the fixtures' model builders: they take fastconv as keras)

EXPECTED = np.load(KERAS_FILES / "expected.npz")
MODELS = [builder.__name__ for builder in notes.MODELS]
RTOL = 1e-5
MODEL_FILES = {"keras3": [".keras", ".keras3.h5"], "keras2": [".keras2.h5"]}
WEIGHT_FILES = {"keras3": [".weights.h5", ".keras", ".keras3.h5"], "keras2": [".keras2_weights.h5", ".keras2.h5"]}


def cases(files, models=MODELS):
    return [
        pytest.param(name, generation, suffix, id=f"{name}{suffix}")
        for name in models for generation, suffixes in files.items() for suffix in suffixes
    ]  # fmt: skip


pytestmark = pytest.mark.usefixtures("fresh_names")


def expected(name, generation, what):
    return EXPECTED[f"{name}/{generation}/{what}"]


def assert_predicts(model, name, generation, what="predict"):
    error = relative_error(model.predict(EXPECTED[f"{name}/x"]), expected(name, generation, what))
    assert error <= RTOL, f"{name}: relative error {error:.2e} to Keras' {what}"


# --- Keras' files, read by fastconv ---------------------------------------------------------


COMPILED_AS = {  # what the notes compile each model with (make_keras_files.py)
    "mnist_convnet": ("RMSprop", 1e-3, "categorical_crossentropy", ["accuracy"]),
    "cats_dogs_convnet": ("RMSprop", 1e-4, "binary_crossentropy", ["acc"]),
    "functional_convnet": ("RMSprop", 1e-3, "sparse_categorical_crossentropy", ["accuracy"]),
    "vgg16_classifier": ("RMSprop", 2e-5, "binary_crossentropy", ["acc"]),
    "every_layer": ("Adam", 5e-3, "categorical_crossentropy", ["accuracy"]),
    "augmented_convnet": ("RMSprop", 1e-3, "binary_crossentropy", ["accuracy"]),
}


@pytest.mark.parametrize("name, generation, suffix", cases(MODEL_FILES))
def test_load_model_reads_keras_files_and_predicts_keras_outputs(name, generation, suffix):
    model = models.load_model(KERAS_FILES / f"{name}{suffix}")
    assert_predicts(model, name, generation)
    optimizer, learning_rate, loss, metrics = COMPILED_AS[name]
    assert (type(model.optimizer).__name__, model.loss.name, model.metric_names) == (optimizer, loss, metrics)
    assert model.optimizer.learning_rate == pytest.approx(learning_rate, rel=1e-6)
    if name == "vgg16_classifier":  # listing 5.20: the base frozen, only the head's 4 arrays train
        base = model.layers[0]
        assert not base.trainable and not any(layer.trainable for layer in base.layers if layer.weights)
        assert [w.name for w in model.weights if w.trainable] == [w.name for w in model.layers[2].weights + model.layers[3].weights]
    history = model.fit(EXPECTED[f"{name}/x"], EXPECTED[f"{name}/y"], epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("name, generation, suffix", cases(WEIGHT_FILES) + [pytest.param("vgg16_classifier", "keras2", ".keras2.weights.h5", id="vgg16_classifier.keras2.weights.h5")])
def test_load_weights_reads_keras_files_into_the_listing_built_with_fastconv(name, generation, suffix):
    model, _, _ = getattr(notes, name)(fastconv)  # the notes' code with `import fastconv as keras`
    model.load_weights(KERAS_FILES / f"{name}{suffix}")
    assert_predicts(model, name, generation)


@pytest.mark.parametrize("name, generation, suffix", cases(MODEL_FILES, notes.TRAINED))
def test_the_optimizer_state_keras_saved_is_restored_weight_by_weight(name, generation, suffix):
    model = models.load_model(KERAS_FILES / f"{name}{suffix}")
    iterations, slots = model.optimizer.get_state([w for w in model.weights if w.trainable])
    assert iterations == expected(name, generation, "iterations")
    for kind, kind_slots in zip(model.optimizer.slot_names, slots, strict=True):  # RMSprop: velocity; Adam: momentum, velocity
        np.testing.assert_array_equal([v.sum(dtype=np.float64) for v in kind_slots], expected(name, generation, f"{kind}_sum"))
        np.testing.assert_array_equal(np.stack([np.resize(v.ravel(), 16) for v in kind_slots]), expected(name, generation, f"{kind}_head"))
    if name in notes.DETERMINISTIC_STEP:  # one more step from Keras' state lands where Keras' did
        model.train_on_batch(EXPECTED[f"{name}/x"], EXPECTED[f"{name}/y"])
        assert_predicts(model, name, generation, "next_predict")


def test_files_of_fastconv_0_2_still_load_with_their_optimizer_state():
    """fastconv 0.2 listed a nested model's weights in layer order and Adam's state as iter, all m, all v."""
    saved = np.load(KERAS_FILES / "fastconv_0_2.npz")
    model = models.load_model(KERAS_FILES / "fastconv_0_2.h5")
    # The file's weights in the right order give its predictions up to float32 rounding, which differs between SIMD
    # levels (they were recorded on an AVX-512 machine); a wrong order would be off by far more than RTOL.
    error = relative_error(model.predict(saved["x"]), saved["predict"])
    assert error <= RTOL, f"relative error {error:.2e} to fastconv 0.2's predictions"
    iterations, (momentums, velocities) = model.optimizer.get_state([w for w in model.weights if w.trainable])
    state = [saved[key] for key in saved.files if key.startswith("state/")]
    assert iterations == int(state[0]) == 2
    for restored, old in zip(momentums + velocities, state[1:], strict=True):
        np.testing.assert_array_equal(restored, old)
    assert [layer.trainable for layer in model.layers[0].layers] == [True, False, True, True]


# --- fastconv's files, read back by fastconv in every format -----------------------------------


def _trained(name):
    model, _, _ = getattr(notes, name)(fastconv)
    model.set_weights(notes.seeded_weights(model, name))
    model.train_on_batch(EXPECTED[f"{name}/x"], EXPECTED[f"{name}/y"])
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", MODELS)
def test_what_fastconv_saves_loads_back_bit_exactly(tmp_path, name, suffix):
    model = _trained(name)
    path = tmp_path / f"{name}{suffix}"
    model.save(path)
    loaded = models.load_model(path)
    for before, after in zip(model.weights, loaded.weights, strict=True):
        assert (before.name, before.trainable) == (after.name, after.trainable)
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.name)
    state, restored = (m.optimizer.get_state([w for w in m.weights if w.trainable]) for m in (model, loaded))
    assert state[0] == restored[0] == 1 and loaded.optimizer.learning_rate == model.optimizer.learning_rate
    for kind, kind_restored in zip(state[1], restored[1], strict=True):
        for slot, slot_restored in zip(kind, kind_restored, strict=True):
            np.testing.assert_array_equal(slot, slot_restored)
    assert (loaded.loss.name, loaded.metric_names) == (model.loss.name, model.metric_names)


@pytest.mark.parametrize("suffix", [".weights.h5", "_weights.h5"])
def test_save_weights_in_both_layouts_loads_back_bit_exactly(tmp_path, suffix):
    model = _trained("vgg16_classifier")
    model.save_weights(tmp_path / f"w{suffix}")
    with h5py.File(tmp_path / f"w{suffix}", "r") as file:  # Keras 3's layout by the name Keras 3 gives it, else legacy
        assert ("layers" in file) == (suffix == ".weights.h5") and ("layer_names" in file.attrs) == (suffix != ".weights.h5")
    fresh, _, _ = notes.vgg16_classifier(fastconv)
    fresh.load_weights(tmp_path / f"w{suffix}")
    for before, after in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_an_archive_names_fastconv_as_its_writer_and_holds_keras_members(tmp_path):
    model = _trained("mnist_convnet")
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        metadata = json.loads(archive.read("metadata.json"))
        config = json.loads(archive.read("config.json"))
    assert metadata["written_by"] == f"fastconv {fastconv.__version__}" and metadata["keras_version"].startswith("3.")
    assert config["class_name"] == "Sequential" and config["compile_config"]["optimizer"]["class_name"] == "RMSprop"
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as file:
        assert file.attrs["backend"] == "fastconv" and file.attrs["fastconv_version"] == fastconv.__version__


# --- what fastconv cannot build is refused, naming the file, the layer and the option ------------------


def _layer(config, index):
    return config["config"]["layers"][index]["config"]


REFUSED = {
    "dilated-conv": (lambda c: _layer(c, 1).__setitem__("dilation_rate", [2, 2]), r"layer 'conv2d\w*' \(Conv2D\): the option dilation_rate=\[2, 2\]"),
    "constraint": (lambda c: _layer(c, 1).__setitem__("kernel_constraint", {"class_name": "MaxNorm", "config": {"max_value": 2}}),
                   r"layer 'conv2d\w*' \(Conv2D\): the option kernel_constraint="),
    "orthogonal-regularizer": (lambda c: _layer(c, 1).__setitem__("kernel_regularizer", {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.01}}),
                               r"the regularizer .*OrthogonalRegularizer.* is not one fastconv has \(L1, L2, L1L2\)"),
    "tanh": (lambda c: _layer(c, 1).__setitem__("activation", "tanh"), r"the activation 'tanh' is not one fastconv has"),
    "batch-norm": (lambda c: c["config"]["layers"][2].__setitem__("class_name", "BatchNormalization"),
                   r"layer 'max_pooling2d\w*' is a BatchNormalization, which fastconv does not have"),
    "float16": (lambda c: _layer(c, 1).__setitem__("dtype", "mixed_float16"), r"the option dtype='mixed_float16'"),
    "channels-first": (lambda c: _layer(c, 2).__setitem__("data_format", "channels_first"), r"data_format='channels_first'"),
}  # fmt: skip


@pytest.mark.parametrize("source", ["mnist_convnet.keras3.h5", "mnist_convnet.keras", "mnist_convnet.keras2.h5"])
@pytest.mark.parametrize("change", sorted(REFUSED))
def test_a_layer_or_option_fastconv_lacks_is_refused_naming_file_layer_and_option(tmp_path, source, change):
    edit, message = REFUSED[change]
    path = edited_copy(tmp_path, source, edit)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def test_a_graph_that_is_not_a_chain_is_refused(tmp_path):
    def branch(config):  # the Dense also takes the first convolution's output: two inputs
        layers_ = config["config"]["layers"]
        node = layers_[-1]["inbound_nodes"][0]
        node["args"] = [[node["args"][0], {**node["args"][0], "config": {**node["args"][0]["config"], "keras_history": [layers_[1]["name"], 0, 0]}}]]

    path = edited_copy(tmp_path, "functional_convnet.keras", branch)
    with pytest.raises(ValueError, match=r"takes 2 inputs .* single chains") as error:
        models.load_model(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "setting, message",
    [({"class_name": "Adagrad", "config": {}}, r"the optimizer 'Adagrad' is not one fastconv has"),
     ({"class_name": "RMSprop", "config": {"learning_rate": 0.001, "centered": True}}, r"centered=True"),
     ({"class_name": "Adam", "config": {"learning_rate": 0.001, "clipnorm": 1.0}}, r"clipnorm=1.0")],
    ids=["adagrad", "centered-rmsprop", "clipnorm"],
)  # fmt: skip
def test_compile_settings_fastconv_lacks_are_refused_and_compile_false_skips_them(tmp_path, setting, message):
    path = tmp_path / "m.h5"
    shutil.copy(KERAS_FILES / "mnist_convnet.keras3.h5", path)
    with h5py.File(path, "a") as file:
        training = json.loads(file.attrs["training_config"])
        training["optimizer_config"] = setting
        file.attrs["training_config"] = json.dumps(training)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value) and "compile=False" in str(error.value)
    assert_predicts(models.load_model(path, compile=False), "mnist_convnet", "keras3")


@pytest.mark.parametrize("where", ["optimizer state", "compile config"])
@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -1.0])
def test_a_learning_rate_that_is_not_a_finite_non_negative_number_is_refused(tmp_path, where, rate):
    path = tmp_path / "m.h5"
    shutil.copy(KERAS_FILES / "cats_dogs_convnet.keras3.h5", path)
    with h5py.File(path, "a") as file:
        if where == "optimizer state":
            group = file["optimizer_weights/rm_sprop_1"]
            del group["learning_rate"]
            group["learning_rate"] = np.float32(rate)
        else:
            training = json.loads(file.attrs["training_config"])
            training["optimizer_config"]["config"]["learning_rate"] = rate
            file.attrs["training_config"] = json.dumps(training)
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number >= 0") as error:
        models.load_model(path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match=r"RMSprop: learning_rate must be a finite number >= 0"):
        fastconv.optimizers.RMSprop(learning_rate=rate)


def test_damaged_and_crafted_archives_are_refused_naming_the_file(tmp_path):
    source = KERAS_FILES / "mnist_convnet.keras"
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.keras"):
        models.load_model(truncated)
    missing = tmp_path / "missing.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(missing, "w") as copy:
        copy.writestr("config.json", original.read("config.json"))
    with pytest.raises(ValueError, match=r"missing.keras: the archive has no model.weights.h5"):
        models.load_model(missing)
    # An archive whose weights file points outside itself: the message names the archive's member, not a temporary.
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as file:
        file["kernel"] = np.zeros((3, 3, 1, 32), np.float32)
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(crafted, "w") as copy:
        for member in ("metadata.json", "config.json"):
            copy.writestr(member, original.read(member))
        weights = tmp_path / "model.weights.h5"
        weights.write_bytes(original.read("model.weights.h5"))
        with h5py.File(weights, "a") as file:
            del file["layers/conv2d/vars/0"]
            file["layers/conv2d/vars/0"] = h5py.ExternalLink(str(secret), "/kernel")
        copy.write(weights, "model.weights.h5")
    with pytest.raises(ValueError, match=r"crafted.keras \(model.weights.h5\): .*external link") as error:
        models.load_model(crafted)
    assert "tmp" not in str(error.value).replace(str(tmp_path), "")


def test_a_weights_only_file_given_to_load_model_says_what_to_do():
    for name in ("mnist_convnet.weights.h5", "mnist_convnet.keras2_weights.h5"):
        with pytest.raises(ValueError, match="weights-only file .*load_weights"):
            models.load_model(KERAS_FILES / name)


# --- the reverse direction: real Keras 3 opens fastconv's files ------------------------------------


def _regularized_model():
    """A trained convnet with every kind of regularizer, and a batch: (model, x, y)."""
    from fastconv import layers, regularizers

    model = models.Sequential([
        layers.Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 2), kernel_regularizer=regularizers.L2(0.05),
                      bias_regularizer=regularizers.L1(0.02), activity_regularizer=regularizers.L1L2(0.01, 0.02)),
        layers.Flatten(),
        layers.Dense(3, activation="softmax", kernel_regularizer=regularizers.L1L2(0.01, 0.01), activity_regularizer="l2"),
    ])  # fmt: skip
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model.train_on_batch(x, y)
    return model, x, y


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (pip install '.[bench]')")
def test_keras_loads_every_format_fastconv_saves_and_predicts_fastconv_outputs(tmp_path):
    cases, velocity_sums = [], {}
    for name in MODELS:
        model = _trained(name)
        _, slots = model.optimizer.get_state([w for w in model.weights if w.trainable])
        velocity_sums[name] = [float(v.sum(dtype=np.float64)) for v in slots[model.optimizer.slot_names.index("velocity")]]
        x = EXPECTED[f"{name}/x"]
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_y.npy", model.predict(x))
        for suffix, kind in ((".keras", "model"), (".h5", "model"), (".weights.h5", "weights"), ("_weights.h5", "weights")):
            path = tmp_path / f"{name}{suffix}"
            (model.save if kind == "model" else model.save_weights)(path)
            cases.append({"file": str(path), "kind": kind, "builder": name, "x": str(tmp_path / f"{name}_x.npy"),
                          "expected": str(tmp_path / f"{name}_y.npy"), "iterations": 1 if kind == "model" else None})  # fmt: skip
    tuned = _trained("vgg16_classifier")  # listing 5.22: block5 of the base unfrozen, its weights saved first in .h5
    unfreeze_from(tuned.layers[0], "block5_conv1")
    tuned.compile(optimizer=fastconv.optimizers.RMSprop(learning_rate=1e-5), loss="binary_crossentropy", metrics=["acc"])
    tuned.train_on_batch(EXPECTED["vgg16_classifier/x"], EXPECTED["vgg16_classifier/y"])
    np.save(tmp_path / "tuned_y.npy", tuned.predict(EXPECTED["vgg16_classifier/x"]))
    for suffix in (".keras", ".h5"):
        tuned.save(tmp_path / f"tuned{suffix}")
        cases.append({"file": str(tmp_path / f"tuned{suffix}"), "kind": "model", "builder": None, "iterations": 1,
                      "x": str(tmp_path / "vgg16_classifier_x.npy"), "expected": str(tmp_path / "tuned_y.npy")})  # fmt: skip
    # preprocess_input inside the model (listing 8.23): Keras reads fastconv's step as its own five operations
    preprocessed = models.load_model(KERAS_FILES / "preprocess_input.keras")
    preprocessed.compile(optimizer="rmsprop", loss="binary_crossentropy")
    preprocessed.train_on_batch(np.load(KERAS_FILES / "preprocess_input.npz")["x"], np.array([[0.0], [1.0], [1.0], [0.0]]))
    np.save(tmp_path / "preprocessed_x.npy", np.load(KERAS_FILES / "preprocess_input.npz")["x"])
    np.save(tmp_path / "preprocessed_y.npy", preprocessed.predict(np.load(tmp_path / "preprocessed_x.npy")))
    preprocessed.save(tmp_path / "preprocessed.keras")
    cases.append({"file": str(tmp_path / "preprocessed.keras"), "kind": "model", "builder": None, "iterations": 1,
                  "x": str(tmp_path / "preprocessed_x.npy"), "expected": str(tmp_path / "preprocessed_y.npy")})  # fmt: skip
    regularized, x, y = _regularized_model()  # Keras reports the same loss: its penalties are counted alike
    np.save(tmp_path / "regularized_x.npy", x), np.save(tmp_path / "regularized_y.npy", y)
    np.save(tmp_path / "regularized_predict.npy", regularized.predict(x))
    for suffix in (".keras", ".h5"):
        regularized.save(tmp_path / f"regularized{suffix}")
        cases.append({"file": str(tmp_path / f"regularized{suffix}"), "kind": "model", "builder": None, "iterations": 1,
                      "x": str(tmp_path / "regularized_x.npy"), "expected": str(tmp_path / "regularized_predict.npy"),
                      "y": str(tmp_path / "regularized_y.npy"), "loss": regularized.evaluate(x, y, verbose=0)})  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run(
        [sys.executable, str(KERAS_FILES / "check_with_keras.py"), str(tmp_path / "cases.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for name in MODELS:  # Keras took the optimizer's slots from fastconv's archives, each for its weight
        result = next(r for r in results if r.get("file") == f"{name}.keras")
        np.testing.assert_allclose(result["velocity_sums"], velocity_sums[name], rtol=1e-6, err_msg=f"{name}.keras")
        # From a legacy .h5 Keras 3 restores the iteration count only, from its own files as from fastconv's.
        assert next(r for r in results if r.get("file") == f"{name}.h5")["iterations"] == 1
    vgg_model = next(r for r in results if r.get("file") == "vgg16_classifier.keras")
    base_layers = [f"block{b}_conv{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)] + [f"block{b}_pool" for b in range(1, 6)]
    assert vgg_model["trainable_weights"] == 4 and vgg_model["frozen"] == sorted(["vgg16", *base_layers])
    for tuned_file in ("tuned.keras", "tuned.h5"):
        result = next(r for r in results if r.get("file") == tuned_file)
        assert result["trainable_weights"] == 4 + 6 and result["frozen"] == sorted(base_layers[:10] + base_layers[-5:-1])  # blocks 1-4
