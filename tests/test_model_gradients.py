"""fastconv.models.gradients: layer outputs and the gradient of any layer's output with respect to the input or an
earlier layer's output, on every backend, against centred finite differences of the float64 model.

The float64 model is the model's own layers run on the reference backend with a float64 input (the reference
computes in float64 whatever it is given), so the finite differences see no float32 rounding.
"""

import numpy as np
import pytest

from conftest import relative_error
from test_gradients import numerical_gradient
from fastconv import Input, Model, layers, models, use_backend
from fastconv.models.gradients import flat_layers, gradient, layer_outputs

pytestmark = pytest.mark.usefixtures("fresh_names")

# float32 backends against float64 finite differences of the whole model (as the kernel tests: 1e-5)
RTOL = 1e-5


def small_convnet():
    """conv (relu, same) -> max pool -> conv (sigmoid, stride 2) -> flatten -> dropout -> dense (softmax)."""
    model = models.Sequential([
        layers.Conv2D(3, (3, 3), activation="relu", padding="same", input_shape=(7, 6, 2), name="conv_a"),
        layers.MaxPooling2D((2, 2), name="pool_a"),
        layers.Conv2D(4, (2, 2), strides=(1, 1), activation="sigmoid", name="conv_b"),
        layers.Flatten(name="flatten"),
        layers.Dropout(0.5, name="dropout"),
        layers.Dense(3, activation="softmax", name="scores"),
    ])  # fmt: skip
    rng = np.random.default_rng(7)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


def nested_model():
    """A functional 'base' inside a Sequential, as listing 5.20 puts conv_base inside its model."""
    image = Input(shape=(6, 6, 2), name="image")
    features = layers.Conv2D(3, (3, 3), activation="relu", name="conv")(image)
    base = Model(image, layers.AveragePooling2D((2, 2), name="pool")(features), name="base")
    model = models.Sequential([base, layers.Flatten(name="flatten"), layers.Dense(2, activation="sigmoid", name="dense")])
    rng = np.random.default_rng(8)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


def float64_output(model, start, stop, tensor):
    """The outputs of the leaves ``start..stop`` of ``model`` fed ``tensor``, in float64 on the reference backend."""
    with use_backend("reference"):
        for _, layer in flat_layers(model)[start : stop + 1]:
            tensor, _ = layer.forward(tensor, training=False)
    return tensor


def leaf_index(model, name):
    return [path for path, _ in flat_layers(model)].index(name)


def assert_matches_finite_differences(model, x_shape, seed, of, wrt, backend_name, of_leaf=None, wrt_leaf=None):
    """``gradient(model, x, of, wrt, output_grad)`` on ``backend_name``, for a random x and output_grad, against
    finite differences of sum(output_grad * output_of) in float64. ``of_leaf``/``wrt_leaf``: the leaf paths the
    two names mean (default the names themselves)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    with use_backend("reference"):
        output_grad = rng.standard_normal(gradient(model, x, of=of, wrt=wrt)[0].shape)
    of_leaf, wrt_leaf = of_leaf or of, wrt_leaf or wrt
    of_index = len(flat_layers(model)) - 1 if of_leaf is None else leaf_index(model, of_leaf)
    wrt_index = -1 if wrt_leaf is None else leaf_index(model, wrt_leaf)
    point = x.astype(np.float64) if wrt_leaf is None else float64_output(model, 0, wrt_index, x.astype(np.float64))
    with use_backend(backend_name):
        output_of, grad = gradient(model, x, of=of, wrt=wrt, output_grad=output_grad)
    assert relative_error(output_of, float64_output(model, wrt_index + 1, of_index, point.copy())) < RTOL
    expected = numerical_gradient(lambda v: float(np.sum(float64_output(model, wrt_index + 1, of_index, v) * output_grad)), point.copy())
    assert grad.shape == point.shape and grad.dtype == np.float32
    rtol = 1e-6 if backend_name == "reference" else RTOL
    assert relative_error(grad, expected) < rtol, f"{of} wrt {wrt}: relative error against finite differences"


@pytest.mark.parametrize(
    "of, wrt",
    [(None, None), (None, "pool_a"), ("conv_b", None), ("conv_b", "pool_a"), ("scores", "dropout")],
)
def test_the_gradient_of_any_layer_wrt_the_input_or_an_earlier_layer_matches_finite_differences(any_backend_name, of, wrt):
    # Not with respect to conv_a's output: its ReLU zeros tie in the max pool's windows, where the function has a
    # kink and central differences split the gradient between the tied pixels.
    assert_matches_finite_differences(small_convnet(), (2, 7, 6, 2), 9, of, wrt, any_backend_name)


@pytest.mark.parametrize(
    "of, wrt, of_leaf, wrt_leaf",
    [(None, None, None, None), (None, "base", None, "base/pool"), ("base/conv", None, "base/conv", None), ("dense", "conv", "dense", "base/conv")],
)
def test_names_reach_into_a_nested_model(any_backend_name, of, wrt, of_leaf, wrt_leaf):
    assert_matches_finite_differences(nested_model(), (3, 6, 6, 2), 10, of, wrt, any_backend_name, of_leaf, wrt_leaf)


def test_a_function_of_the_output_picks_each_samples_target():
    """output_grad as a function: the gradient of each sample's own top score (Grad-CAM's predicted class)."""
    model = small_convnet()
    x = np.random.default_rng(11).standard_normal((4, 7, 6, 2)).astype(np.float32)

    def top_score(scores):
        return np.eye(scores.shape[1])[scores.argmax(axis=1)]

    scores, grad = gradient(model, x, output_grad=top_score)
    for sample in range(len(x)):
        _, alone = gradient(model, x[sample : sample + 1], output_grad=top_score(scores[sample : sample + 1]))
        np.testing.assert_allclose(grad[sample], alone[0], rtol=1e-6, atol=1e-7)


def test_nothing_of_the_callers_or_the_models_changes():
    model = small_convnet()
    x = np.random.default_rng(12).standard_normal((2, 7, 6, 2)).astype(np.float32)
    x_before, weights_before = x.copy(), model.get_weights()
    marker = np.full((3, 3, 2, 3), 7.0, dtype=np.float32)
    model.get_layer("conv_a").kernel.grad = marker
    output_grad = np.ones((2, 3), dtype=np.float32)
    _, grad = gradient(model, x, output_grad=output_grad)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(output_grad, np.ones((2, 3)))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights_before))
    assert model.get_layer("conv_a").kernel.grad is marker, "a gradient query must leave weight.grad alone"
    assert model.get_layer("scores").kernel.grad is None
    assert not np.shares_memory(grad, x)


def test_layer_outputs_are_the_predictions_of_the_model_cut_there(any_backend_name):
    model = nested_model()
    x = np.random.default_rng(13).standard_normal((2, 6, 6, 2)).astype(np.float32)
    with use_backend(any_backend_name):
        outputs = layer_outputs(model, x, ["conv", "base", "dense"])
    assert list(outputs) == ["conv", "base", "dense"]
    with use_backend(any_backend_name):
        np.testing.assert_array_equal(outputs["dense"], model.predict(x))
        np.testing.assert_array_equal(outputs["base"], model.get_layer("base").predict(x))
    assert outputs["conv"].shape == (2, 4, 4, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(of="nowhere"), r"model 'sequential' has no layer 'nowhere'; its layers are \['conv_a', 'pool_a'"),
        (dict(of="conv_a", wrt="conv_b"), r"'conv_b' does not come before it"),
        (dict(of="conv_a", wrt="conv_a"), r"'conv_a' does not come before it"),
        (dict(output_grad=np.ones((2, 4))), r"output_grad has shape \(2, 4\), but the output of 'sequential' has shape \(2, 3\)"),
        (dict(output_grad=np.full((2, 3), np.nan)), r"output_grad for 'sequential' contains NaN"),
    ],
)
def test_bad_requests_are_refused_with_the_names_and_shapes(kwargs, message):
    model = small_convnet()
    with pytest.raises(ValueError, match=message):
        gradient(model, np.zeros((2, 7, 6, 2), dtype=np.float32), **kwargs)


def test_bad_inputs_are_refused_with_the_shapes():
    model = small_convnet()
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 7, 6, 2\), got \(None, 7, 6, 3\)"):
        gradient(model, np.zeros((1, 7, 6, 3)))
    with pytest.raises(ValueError, match=r"x batch of shape \(1, 7, 6, 2\) contains NaN"):
        gradient(model, np.full((1, 7, 6, 2), np.nan))


def test_a_name_used_twice_in_the_tree_needs_its_path():
    def block(name, filters):
        image = Input(shape=(5, 5, 1) if name == "first" else (3, 3, 2))
        return Model(image, layers.Conv2D(filters, (3, 3), padding="same" if name == "second" else "valid", name="conv")(image), name=name)

    model = models.Sequential([block("first", 2), block("second", 1), layers.Flatten(name="conv_out")])
    x = np.zeros((1, 5, 5, 1), dtype=np.float32)
    with pytest.raises(ValueError, match=r"more than one layer is called 'conv' \(first/conv, second/conv\); give its path"):
        gradient(model, x, wrt="conv")
    outputs = layer_outputs(model, x, ["first/conv", "second/conv", "second"])
    assert outputs["first/conv"].shape == (1, 3, 3, 2) and outputs["second/conv"].shape == (1, 3, 3, 1)
    np.testing.assert_array_equal(outputs["second"], outputs["second/conv"])
