"""Files of Keras 2.0-2.3, the notes' era: Sequential configs as lists, VarianceScaling, and the optimizer's state as
the TensorFlow variables its optimizer made (``Adam/iterations:0``, ``training/Adam/Variable:0``, ...).

They are made here from tf_keras 2.21's files of tests/keras_files (whose state is checked against what Keras
recorded) by writing the same arrays in Keras 2.0-2.3's layout, which tf_keras also restores.
"""

import json
import shutil

import h5py
import numpy as np
import pytest

import fastconv
from file_edits import KERAS_FILES
from test_keras_files import assert_predicts
from fastconv import models, optimizers


def _as_keras_2_0(config):
    """A tf_keras Sequential config as Keras 2.0.8 wrote it (the notes' era): a list of layers, no InputLayer
    entry, ``batch_input_shape`` on the first layer, plain dtypes and VarianceScaling for glorot_uniform."""
    glorot = {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    layers_ = [entry for entry in config["config"]["layers"] if entry["class_name"] != "InputLayer"]
    for entry in layers_:
        entry.pop("module", None), entry.pop("registered_name", None)
        for key in ("kernel_initializer", "bias_initializer"):
            if key in entry["config"]:
                entry["config"][key] = glorot if key == "kernel_initializer" else {"class_name": "Zeros", "config": {}}
        for key in ("groups", "data_format"):
            if entry["class_name"] in ("Dense", "Flatten", "Dropout"):
                entry["config"].pop(key, None)
    return {"class_name": "Sequential", "config": layers_}


def _state(model):
    weights = [weight for weight in model.weights if weight.trainable]
    return model.optimizer.get_state(weights), weights


def _write_keras2_state(file, class_name, iterations, slot_lists, extra_lists=(), names="Variable"):
    """Replace ``optimizer_weights`` with Keras 2.0-2.3's: the iteration count (None: not saved, as RMSprop up to
    2.2), then each kind of slot for every weight in turn, then the extra variables Keras made (Adam's vhats)."""
    del file["optimizer_weights"]
    group = file.create_group("optimizer_weights")
    entries = [] if iterations is None else [(f"{class_name}/iterations:0", np.int64(iterations))]
    variables = [array for kind in (*slot_lists, *extra_lists) for array in kind]
    for index, array in enumerate(variables):
        suffix = "" if index == 0 else f"_{index}"
        entries.append((f"training/{class_name}/{names}{suffix}:0", array))
    group.attrs["weight_names"] = [name.encode() for name, _ in entries]
    for name, array in entries:
        group[name] = array


def test_a_file_of_keras_2_0_as_the_notes_saved_loads_with_its_compile_settings_and_state(tmp_path):
    _, weights = _state(models.load_model(KERAS_FILES / "mnist_convnet.keras2.h5"))
    rng = np.random.default_rng(0)
    expected_slots = [[rng.random(weight.shape, np.float32) for weight in weights]]  # RMSprop's means of squares
    path = tmp_path / "mnist_keras_2_0.h5"
    shutil.copy(KERAS_FILES / "mnist_convnet.keras2.h5", path)
    with h5py.File(path, "a") as file:
        file.attrs["model_config"] = json.dumps(_as_keras_2_0(json.loads(file.attrs["model_config"])))
        file.attrs["keras_version"] = file["model_weights"].attrs["keras_version"] = "2.0.8"
        file.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "RMSprop", "config": {"lr": 0.0010000000474974513, "rho": 0.8999999761581421, "decay": 0.0, "epsilon": 1e-07}},
            "loss": "categorical_crossentropy", "metrics": ["acc"], "sample_weight_mode": None, "loss_weights": None,
        })  # fmt: skip
        _write_keras2_state(file, "RMSprop", None, expected_slots)  # RMSprop of Keras 2.0-2.2 saved no iteration count
    model = models.load_model(path)
    assert_predicts(model, "mnist_convnet", "keras2")
    assert (type(model.optimizer).__name__, model.optimizer.learning_rate, model.metric_names) == ("RMSprop", pytest.approx(1e-3), ["acc"])
    assert model.layers[0].input_shape == (None, 28, 28, 1) and model.optimizer.iterations == 0
    (_, slots), _ = _state(model)
    for restored, saved in zip(slots[0], expected_slots[0], strict=True):
        np.testing.assert_array_equal(restored, saved)


def _trained_with(optimizer, steps=2):
    fastconv.utils.set_random_seed(1)
    model = models.Sequential([fastconv.layers.Dense(3, activation="relu", input_shape=(4,)), fastconv.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    for _ in range(steps):
        model.train_on_batch(x, np.eye(2, dtype=np.float32)[[0, 1] * 4])
    return model


KERAS_2_STATES = {  # (optimizer, Keras 2 class name, Keras 2.3's variable names, iteration count saved)
    "sgd-momentum-2.2": (lambda: optimizers.SGD(0.1, momentum=0.9), "SGD", "Variable", True),
    "sgd-no-momentum-2.3": (lambda: optimizers.SGD(0.1), "SGD", "moment", True),  # Keras 2 made the moments anyway
    "rmsprop-2.3": (lambda: optimizers.RMSprop(0.01), "RMSprop", "accumulator", True),
    "adam-2.2": (lambda: optimizers.Adam(0.01), "Adam", "Variable", True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(KERAS_2_STATES))
def test_the_optimizer_state_of_keras_2_0_to_2_3_is_restored(tmp_path, case):
    make, class_name, names, with_iterations = KERAS_2_STATES[case]
    model = _trained_with(make())
    (iterations, slots), weights = _state(model)
    path = tmp_path / "keras2.h5"
    model.save(path)
    with h5py.File(path, "a") as file:
        if class_name == "SGD" and not slots:
            slots = [[np.zeros(w.shape, np.float32) for w in weights]]
        extra = [[np.zeros(1, np.float32) for _ in weights]] if class_name == "Adam" else []
        _write_keras2_state(file, class_name, iterations if with_iterations else None, slots, extra, names)
    loaded = models.load_model(path)
    (loaded_iterations, loaded_slots), _ = _state(loaded)
    assert loaded_iterations == iterations == 2
    expected_slots = [array for kind in model.optimizer.get_state(weights)[1] for array in kind]
    for restored, saved in zip([array for kind in loaded_slots for array in kind], expected_slots, strict=True):
        np.testing.assert_array_equal(restored, saved)
    x = np.ones((8, 4), np.float32)
    y = np.eye(2, dtype=np.float32)[[1, 0] * 4]
    model.train_on_batch(x, y), loaded.train_on_batch(x, y)  # the next step lands where the uninterrupted run's does
    for after, expected in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(after, expected)


def test_a_keras_2_state_that_does_not_fit_the_model_is_refused(tmp_path):
    model = _trained_with(optimizers.Adam(0.01))
    (iterations, slots), weights = _state(model)
    path = tmp_path / "keras2.h5"
    model.save(path)
    with h5py.File(path, "a") as file:
        _write_keras2_state(file, "Adam", iterations, slots)  # no vhats: 1 + 2N entries, Keras 2's Adam saves 1 + 3N
    with pytest.raises(ValueError, match=r"keras2.h5: the saved optimizer state has 9 entries .* Adam over the model's 4 trainable weights has 13"):
        models.load_model(path)
