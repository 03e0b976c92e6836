"""Regularizers (L1, L2, L1L2) on kernels, biases and layer outputs: Keras 3's formulas and defaults, the penalty
in the loss that fit and evaluate report, its gradient in training on every backend against finite differences of
the float64 model, and the files of every Keras generation that carry them."""

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import relative_error
from file_edits import KERAS_FILES
from test_gradients import numerical_gradient
from fastconv import layers, models, regularizers, use_backend
from fastconv.models.gradients import layer_outputs

pytestmark = pytest.mark.usefixtures("fresh_names")
RTOL = 1e-5


def test_formulas_defaults_and_names_are_keras_3s():
    x = np.array([[-2.0, 0.0], [0.5, 3.0]], np.float32)
    assert regularizers.L1()(x) == pytest.approx(0.01 * 5.5)
    assert regularizers.L2()(x) == pytest.approx(0.01 * 13.25)
    assert regularizers.L1L2()(x) == 0.0
    both = regularizers.L1L2(l1=0.1, l2=0.2)
    assert both(x) == pytest.approx(0.1 * 5.5 + 0.2 * 13.25)
    np.testing.assert_allclose(both.gradient(x), 0.1 * np.sign(x) + 0.4 * x, rtol=1e-6)
    assert both.gradient(x)[0, 1] == 0  # |x| has no slope at 0, as in TensorFlow
    assert regularizers.get("l2") == regularizers.L2() and regularizers.get("l1_l2") == regularizers.L1L2()
    assert regularizers.get({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.009999999776482582}}).l2 == pytest.approx(0.01)
    assert regularizers.serialize(regularizers.L2(0.5)) == {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.5}, "registered_name": None}
    for bad in (-0.1, float("nan"), float("inf"), "a lot"):
        with pytest.raises(ValueError, match=r"L2: l2 must be"):
            regularizers.L2(bad)
    with pytest.raises(ValueError, match=r"not one fastconv has \(L1, L2, L1L2\)"):
        regularizers.get("orthogonal")


def regularized_model(regularize=True):
    """conv (relu; kernel L2, bias L1, output L1L2) -> max pool -> flatten -> dense (softmax; kernel L1L2, output L2)."""
    def chosen(regularizer):
        return regularizer if regularize else None

    model = models.Sequential([
        layers.Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 2), kernel_regularizer=chosen(regularizers.L2(0.05)),
                      bias_regularizer=chosen(regularizers.L1(0.02)), activity_regularizer=chosen(regularizers.L1L2(0.01, 0.02))),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(3, activation="softmax", kernel_regularizer=chosen(regularizers.L1L2(0.01, 0.01)),
                     activity_regularizer=chosen(regularizers.L2(0.03))),
    ])  # fmt: skip
    rng = np.random.default_rng(5)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.weights])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


def _data(seed=2, n=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def test_the_loss_of_fit_and_evaluate_includes_every_penalty():
    x, y = _data()
    model, plain = regularized_model(), regularized_model(regularize=False)
    outputs = layer_outputs(model, x, [model.layers[0].name, model.layers[-1].name])
    conv, dense = model.layers[0], model.layers[-1]
    # Keras divides an activity penalty by the batch size (Keras 3.15's model.losses, measured), not a weight penalty
    activity = (0.01 * np.abs(outputs[conv.name]).sum() + 0.02 * np.sum(outputs[conv.name].astype(np.float64) ** 2)
                + 0.03 * np.sum(outputs[dense.name].astype(np.float64) ** 2)) / len(x)
    penalty = (0.05 * np.sum(conv.kernel.numpy().astype(np.float64) ** 2) + 0.02 * np.abs(conv.bias.numpy()).sum()
               + 0.01 * np.abs(dense.kernel.numpy()).sum() + 0.01 * np.sum(dense.kernel.numpy().astype(np.float64) ** 2)
               + activity)  # fmt: skip
    data_loss = plain.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(data_loss + penalty, rel=1e-5)
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(data_loss + penalty, rel=1e-5)


def _float64_loss(model, x, y, weight, value):
    """The model's loss with ``weight`` set to the float64 ``value``, computed in float64 by the reference."""
    saved = weight.value
    weight.value = value
    try:
        with use_backend("reference"):
            return float(model.test_on_batch(x, y))
    finally:
        weight.value = saved


def test_training_gradients_include_the_penalties_against_finite_differences(any_backend_name):
    x, y = _data()
    model = regularized_model()
    with use_backend(any_backend_name):
        model.compute_gradients(x, y)
    for weight in model.trainable_weights:
        analytic = np.array(weight.grad, dtype=np.float64)
        point = weight.numpy().astype(np.float64)
        expected = numerical_gradient(lambda value: _float64_loss(model, x, y, weight, value), point)
        rtol = 1e-6 if any_backend_name == "reference" else RTOL
        assert relative_error(analytic, expected) < rtol, f"{weight.name} on {any_backend_name}"


def test_a_frozen_layers_kernel_penalty_is_not_trained_or_counted():
    x, y = _data()
    model = regularized_model()
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    frozen = model.layers[0].kernel.numpy()
    model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), frozen)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_regularizers_are_saved_and_loaded_in_both_formats(tmp_path, suffix):
    x, y = _data()
    model = regularized_model()
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    path = tmp_path / f"regularized{suffix}"
    model.save(path)
    loaded = models.load_model(path)
    for original, copy in zip(model.layers, loaded.layers):
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            assert getattr(copy, key, None) == getattr(original, key, None), f"{copy.name}.{key}"
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    model.train_on_batch(x, y), loaded.train_on_batch(x, y)
    for after, expected in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(after, expected)


@pytest.mark.parametrize("compile", [True, False])
def test_a_keras_2_file_with_l1l2_regularizers_loads(tmp_path, compile):
    """Keras 2 wrote ``kernel_regularizer=L1L2(...)`` as the listings of public repositories have it."""
    path = tmp_path / "keras2_regularized.h5"
    shutil.copy(KERAS_FILES / "mnist_convnet.keras2.h5", path)
    with h5py.File(path, "a") as file:
        config = json.loads(file.attrs["model_config"])
        dense = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "Dense")
        dense["config"]["kernel_regularizer"] = {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0010000000474974513}}
        dense["config"]["activity_regularizer"] = {"class_name": "L2", "config": {"l2": 0.009999999776482582}}
        file.attrs["model_config"] = json.dumps(config)
    model = models.load_model(path, compile=compile)
    dense = next(layer for layer in model.layers if isinstance(layer, layers.Dense))
    assert dense.kernel_regularizer == regularizers.L1L2(0.0, 0.0010000000474974513)
    assert dense.activity_regularizer == regularizers.L2(0.009999999776482582)
