"""The layers and models of the Keras API: summaries, names, shapes, freezing, and whole-model gradients."""

import numpy as np
import pytest

import fastconv
import fastconv as keras
from fastconv import layers, models
from fastconv.backends import to_numpy
from fastconv.examples.listings import cats_dogs_convnet, mnist_convnet
from fastconv.utils import to_categorical

from builders import functional_8_1, small_classifier, summary_text, tiny_data, total_params
from conftest import unfreeze_from

pytestmark = pytest.mark.usefixtures("fresh_names")


def listing_5_1():
    """The convolutional base alone: listing 5.3 without its Flatten and Dense layers."""
    model = mnist_convnet()
    for _ in range(3):
        model.pop()
    return model


def listing_5_2():
    return mnist_convnet()


def cats_dogs_5_5():
    return cats_dogs_convnet()


@pytest.mark.parametrize(
    "build, params",
    [(listing_5_1, 55_744), (listing_5_2, 93_322), (functional_8_1, 104_202), (lambda: functional_8_1(False), 712_202), (cats_dogs_5_5, 3_453_121)],
    ids=["listing-5.1", "listing-5.2", "functional-8.1", "no-max-pool", "cats-dogs-5.5"],
)
def test_summary_parameter_counts(build, params):
    model = build()
    assert total_params(model) == params
    assert model.count_params() == params


def test_summary_matches_keras_table():
    text = summary_text(listing_5_2())
    expected_rows = [
        'Model: "sequential"',
        "Layer (type)                 Output Shape              Param #   ",
        "conv2d (Conv2D)              (None, 26, 26, 32)        320       ",
        "max_pooling2d (MaxPooling2D) (None, 13, 13, 32)        0         ",
        "max_pooling2d_1 (MaxPooling2 (None, 5, 5, 64)          0         ",
        "flatten (Flatten)            (None, 576)               0         ",
        "dense_1 (Dense)              (None, 10)                650       ",
        "Trainable params: 93,322",
        "Non-trainable params: 0",
    ]
    for row in expected_rows:
        assert row in text.splitlines(), row
    functional = summary_text(functional_8_1())
    assert "input_1 (InputLayer)         [(None, 28, 28, 1)]       0         " in functional.splitlines()


def test_default_names_are_unique_and_name_is_respected():
    a, b, c = layers.Conv2D(1, 1), layers.Conv2D(1, 1), layers.Dense(2, name="classifier")
    assert (a.name, b.name, c.name) == ("conv2d", "conv2d_1", "classifier")
    assert layers.MaxPooling2D().name == "max_pooling2d"


def test_whole_model_gradients_against_finite_differences():
    """Backpropagation through the model (reference backend, float64 weights) equals centred differences of its loss."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    y = to_categorical([0, 2, 1, 2], 3)
    model = small_classifier()
    with fastconv.use_backend("reference"):
        for weight in model.weights:
            weight.value = weight.value.astype(np.float64) + 0.05  # float64, and off the relu kinks at zero bias
        model.compute_gradients(x, y)
        for weight in model.weights:
            analytic = weight.grad
            for index in list(np.ndindex(weight.shape))[:: max(1, weight.value.size // 12)]:
                saved = weight.value[index]
                weight.value[index] = saved + 1e-6
                plus = model.test_on_batch(x, y)[0]
                weight.value[index] = saved - 1e-6
                minus = model.test_on_batch(x, y)[0]
                weight.value[index] = saved
                numeric = (plus - minus) / 2e-6
                assert abs(analytic[index] - numeric) <= 1e-6 + 1e-5 * abs(numeric), (weight.name, index)


def test_model_gradients_match_reference_backend(backend_name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    y = to_categorical([0, 2, 1, 2, 0], 3)
    model = small_classifier()
    with fastconv.use_backend("reference"):
        model.compute_gradients(x, y)
        expected = [np.array(w.grad) for w in model.weights]
    with fastconv.use_backend(backend_name):
        model.compute_gradients(x, y)
        for weight, want in zip(model.weights, expected):
            assert np.abs(to_numpy(weight.grad) - want).max() <= 1e-5 * np.abs(want).max() + 1e-7, weight.name


def test_frozen_weights_never_change_and_summary_counts_them():
    base = small_classifier()
    base.pop()
    base.pop()  # conv base: conv, pool, conv, flatten
    base.trainable = False
    model = models.Sequential([base, layers.Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    frozen_before = [w.copy() for w in base.get_weights()]
    head_before = model.layers[1].get_weights()[0].copy()
    x, y = tiny_data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for before, after in zip(frozen_before, base.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head_before, model.layers[1].get_weights()[0])
    text = summary_text(model)
    frozen = sum(w.size for w in frozen_before)
    assert f"Non-trainable params: {frozen:,}" in text
    assert f"Trainable params: {model.count_params() - frozen:,}" in text


def test_unfreezing_from_a_layer_on_as_in_fine_tuning():
    base = small_classifier()
    unfreeze_from(base, "conv2d_1")
    assert [bool(layer.trainable_weights) for layer in base.layers] == [False, False, True, False, True, True]


def test_layers_called_on_arrays_compute():
    conv = layers.Conv2D(2, 3, padding="same", activation="relu")
    x = np.random.default_rng(4).standard_normal((2, 5, 5, 3)).astype(np.float32)
    y = conv(x)
    assert y.shape == (2, 5, 5, 2) and (y >= 0).all()
    kernel, bias = conv.get_weights()
    assert kernel.shape == (3, 3, 3, 2) and bias.shape == (2,) and not bias.any()
    conv.set_weights([np.ones_like(kernel), np.ones_like(bias)])
    assert conv(np.zeros((1, 5, 5, 3), np.float32)).min() == 1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: models.Sequential([layers.Dense(4, input_shape=(8,)), layers.Conv2D(2, 3)]), r"Layer 'conv2d' \(Conv2D\) expects input of rank 4 .* got shape \(None, 4\)"),
        (lambda: models.Sequential([layers.Conv2D(2, 5, input_shape=(3, 3, 1))]), r"Layer 'conv2d': kernel \(5, 5\) is larger than its input \(3, 3\)"),
        (lambda: layers.Conv2D(0, 3), "filters must be a positive int, got 0"),
        (lambda: layers.Dense(4, activation="swish"), "unknown activation 'swish'"),
        (lambda: layers.Conv2D(2, 3, data_format="channels_first"), "channels_last"),
    ],
)
def test_bad_layer_arguments_and_shapes(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_reused_with_other_channels():
    conv = layers.Conv2D(2, 3)
    conv(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"Layer 'conv2d' expected 3 input channels, got 1 \(input shape \(None, 5, 5, 1\)\)"):
        conv(np.zeros((1, 5, 5, 1), np.float32))


def test_sequential_without_input_shape_builds_on_first_data():
    model = models.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="has not been built yet"):
        model.summary()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = tiny_data()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.input_shape == (None, 6, 6, 2) and total_params(model) == 72 * 3 + 3


def test_dropout_scales_while_training_and_is_identity_otherwise():
    dropout = layers.Dropout(0.5, seed=1)
    x = np.ones((200, 50), np.float32)
    assert np.array_equal(dropout(x), x)
    trained, mask = dropout.call(x, training=True)
    kept = trained != 0
    assert 0.4 < kept.mean() < 0.6 and np.all(trained[kept] == 2.0)
    assert np.array_equal(dropout.backward_call(np.ones_like(x), mask, True), trained)


def test_average_pooling_and_nested_functional_models():
    inputs = keras.Input(shape=(8, 8, 2))
    base_out = layers.AveragePooling2D(2)(layers.Conv2D(4, 3, padding="same", activation="relu")(inputs))
    base = keras.Model(inputs, base_out, name="base")
    outer_in = keras.Input(shape=(8, 8, 2))
    outputs = layers.Dense(3, activation="softmax")(layers.Flatten()(base(outer_in)))
    model = keras.Model(outer_in, outputs)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 8, 8, 2)).astype(np.float32)
    y = to_categorical(rng.integers(0, 3, 32), 3)
    before = base.get_weights()[0].copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not np.array_equal(before, base.get_weights()[0])
    assert "base (Functional)            (None, 4, 4, 4)           76        " in summary_text(model).splitlines()
    assert model.predict(x).shape == (32, 3)


def test_custom_initializer_is_used_and_not_saved_under_a_wrong_name(tmp_path):
    model = models.Sequential([layers.Dense(2, kernel_initializer=lambda shape: np.full(shape, 0.5, np.float32), input_shape=(3,))])
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="cannot save the custom initializer"):
        model.save(tmp_path / "custom.h5")


def test_dense_input_dim_is_keras_shorthand_for_input_shape():
    model = models.Sequential([layers.Dense(256, activation="relu", input_dim=8192), layers.Dense(1, activation="sigmoid")])
    assert model.input_shape == (None, 8192)
    assert model.count_params() == 8192 * 256 + 256 + 257


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_layers(any_backend_name, keepdims):
    """Forward: the mean / max of each channel's map; backward: spread evenly / routed to the winning pixel."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 7, 4)).astype(np.float32)
    grad_out = rng.standard_normal((3, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    winners = (x64.reshape(3, 35, 4) == x64.reshape(3, 35, 4).max(axis=1, keepdims=True)).reshape(x.shape)
    expected = {
        layers.GlobalAveragePooling2D: (x64.mean(axis=(1, 2)), np.broadcast_to(grad_out[:, None, None, :] / 35.0, x.shape)),
        layers.GlobalMaxPooling2D: (x64.max(axis=(1, 2)), winners * grad_out[:, None, None, :]),
    }
    with fastconv.use_backend(any_backend_name):
        for layer_class, (expected_y, expected_grad) in expected.items():
            layer = layer_class(keepdims=keepdims)
            out_shape = (3, 1, 1, 4) if keepdims else (3, 4)
            assert layer.build_for((None, 5, 7, 4)) == (None, *out_shape[1:])
            y, cache = layer.forward(x, training=True)
            assert y.shape == out_shape
            np.testing.assert_allclose(to_numpy(y).reshape(3, 4), expected_y, rtol=1e-6, atol=1e-6)
            grad_x = layer.backward(grad_out.reshape(out_shape), cache)
            np.testing.assert_allclose(to_numpy(grad_x), expected_grad, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"global_average_pooling2d.*rank 4.*\(None, 7, 4\)"):
        layers.GlobalAveragePooling2D(name="global_average_pooling2d").build_for((None, 7, 4))


def test_conv2d_applies_its_relu_inside_the_convolution(any_backend_name, monkeypatch):
    """A Conv2D with activation='relu' has the convolution apply it as the output is written (conv2d_forward with
    relu=True, no relu_forward pass), and computes what the reference's separate ReLU computes."""
    backend = fastconv.backends.load_backend(any_backend_name)
    calls = []
    convolve, rectify = backend.conv2d_forward, backend.relu_forward
    monkeypatch.setattr(backend, "conv2d_forward", lambda *args, **kwargs: calls.append(kwargs.get("relu", False)) or convolve(*args, **kwargs))
    monkeypatch.setattr(backend, "relu_forward", lambda *args: calls.append("relu_forward") or rectify(*args))
    layer = layers.Conv2D(4, 3, activation="relu", bias_initializer="ones", input_shape=(7, 7, 2))
    x = np.random.default_rng(0).standard_normal((3, 7, 7, 2)).astype(np.float32)
    with fastconv.use_backend(any_backend_name):
        y = to_numpy(layer(x))
    assert calls == [True]
    reference = fastconv.backends.load_backend("reference")
    expected = reference.relu_forward(reference.conv2d_forward(x, layer.kernel.numpy(), layer.bias.numpy()))
    assert 0 < (y == 0).mean() < 1
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"applies its activation relu in its own kernel: a loss cannot take its output as logits"):
        layer.forward(x, logits=True)  # the ReLU is in the kernel: there is no pre-activation output to hand over


def test_a_max_pool_applies_the_backward_of_the_relu_before_it(backend_name, monkeypatch):
    """Conv2D(relu) -> MaxPooling2D: the pool masks its small gradient by its own output and the conv skips its
    relu_backward over the whole activation; the gradients are those of the two separate passes."""
    from fastconv.models import model as model_module

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    y = to_categorical([0, 2, 1, 2, 0], 3)
    model = small_classifier()
    backend = fastconv.backends.load_backend(backend_name)
    calls = []
    relu_backward, max_pool2d_backward = backend.relu_backward, backend.max_pool2d_backward
    monkeypatch.setattr(backend, "relu_backward", lambda grad_out, out: calls.append(("relu", tuple(out.shape))) or relu_backward(grad_out, out))
    monkeypatch.setattr(backend, "max_pool2d_backward", lambda *args: calls.append(("pool masked", args[3] is not None)) or max_pool2d_backward(*args))  # fmt: skip
    with fastconv.use_backend(backend_name):
        model.compute_gradients(x, y)
        fused = [np.array(to_numpy(weight.grad)) for weight in model.weights]
        # the pool's masked backward, not the conv's pass over its whole activation
        assert ("pool masked", True) in calls and ("relu", (5, 6, 6, 3)) not in calls, calls
        calls.clear()
        monkeypatch.setattr(model_module, "_pool_after_relu", lambda previous, layer: False)
        model._plan_fusion()  # the plan is made when the model is built: make it again without the pairing
        assert not model._relu_pools
        model.compute_gradients(x, y)
        assert ("pool masked", False) in calls and ("relu", (5, 6, 6, 3)) in calls, calls
        for weight, want in zip(model.weights, fused):
            np.testing.assert_allclose(to_numpy(weight.grad), want, rtol=1e-6, atol=1e-7, err_msg=weight.name)
