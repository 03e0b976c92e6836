"""The second edition's image layers (Rescaling, RandomFlip, RandomRotation, RandomZoom): what each computes against
a float64 loop that reads like its definition, when they transform (fit and direct calls) and when not (predict),
seeds, gradients, and refusals that name the layer. Files both ways with real Keras: tests/test_keras_files.py
(``augmented_convnet``)."""

import numpy as np
import pytest

import fastconv
from conftest import RTOL, assert_matches
from fastconv import layers, models, utils
from fastconv.backends import to_numpy
from fastconv.layers.preprocessing import affine_transform

pytestmark = pytest.mark.usefixtures("fresh_names")


def images(n=3, height=7, width=9, channels=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, height, width, channels)).astype(np.float32)


def sampled(image, row, col, fill_mode, fill_value):
    """image[row, col] of one (H, W, C) image for integer row, col outside it too, by Keras' fill rule."""
    height, width = image.shape[:2]
    if fill_mode == "constant":
        return image[row, col] if 0 <= row < height and 0 <= col < width else np.full(image.shape[2], fill_value)
    if fill_mode == "nearest":
        return image[min(max(row, 0), height - 1), min(max(col, 0), width - 1)]

    def mirrored(index, size):  # d c b a | a b c d | d c b a
        index %= 2 * size
        return 2 * size - 1 - index if index >= size else index

    return image[mirrored(row, height), mirrored(col, width)]


def affine_reference(batch, matrices, fill_mode, interpolation, fill_value=0.0):
    """Pixel by pixel in float64: output (y, x) samples the input at column a0 x + a1 y + a2, row b0 x + b1 y + b2."""
    batch = batch.astype(np.float64)
    out = np.zeros_like(batch)
    for n, (a0, a1, a2, b0, b1, b2) in enumerate(matrices):
        for y in range(batch.shape[1]):
            for x in range(batch.shape[2]):
                col, row = a0 * x + a1 * y + a2, b0 * x + b1 * y + b2
                if interpolation == "nearest":
                    out[n, y, x] = sampled(batch[n], int(np.floor(row + 0.5)), int(np.floor(col + 0.5)), fill_mode, fill_value)
                    continue
                r0, c0 = int(np.floor(row)), int(np.floor(col))
                wr, wc = row - r0, col - c0
                for dr, weight_r in ((0, 1 - wr), (1, wr)):
                    for dc, weight_c in ((0, 1 - wc), (1, wc)):
                        out[n, y, x] += weight_r * weight_c * sampled(batch[n], r0 + dr, c0 + dc, fill_mode, fill_value)
    return out


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("layer", [layers.RandomRotation(0.3), layers.RandomZoom((-0.5, 0.6)), layers.RandomZoom(0.4, (-0.3, 0.2))],
                         ids=["rotation", "zoom", "zoom-height-and-width"])  # fmt: skip
def test_rotation_and_zoom_sample_as_the_definition(layer, fill_mode, interpolation):
    batch = images()
    matrices = layer.matrices(len(batch), batch.shape[1], batch.shape[2], np.random.default_rng(4))
    got = affine_transform(batch, matrices, fill_mode, interpolation, fill_value=7.0)
    assert got.dtype == np.float32 and got.shape == batch.shape
    assert_matches(got, affine_reference(batch, matrices, fill_mode, interpolation, 7.0), f"{layer.name} {fill_mode}", RTOL)


def test_a_quarter_turn_is_numpys_rot90_and_no_zoom_is_the_identity():
    square = images(2, 6, 6)
    quarter = layers.RandomRotation((0.25, 0.25), seed=0)
    np.testing.assert_allclose(to_numpy(quarter(square)), np.rot90(square, 1, axes=(1, 2)), atol=1e-3)
    np.testing.assert_array_equal(to_numpy(layers.RandomZoom((0.0, 0.0))(square)), square)


def test_rescaling_on_every_backend(any_backend_name):
    batch = images()
    layer = layers.Rescaling(1.0 / 255, offset=-0.5)
    with fastconv.use_backend(any_backend_name):
        y, cache = layer.forward(batch)
        grad = layer.backward(np.ones_like(batch), cache)
    assert_matches(to_numpy(y), batch.astype(np.float64) / 255 - 0.5, "rescaling", RTOL)
    np.testing.assert_allclose(to_numpy(grad), np.full(batch.shape, 1.0 / 255), rtol=1e-7)


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_whole_images_and_its_gradient_flips_back(any_backend_name, mode):
    batch = images(16)
    layer = layers.RandomFlip(mode, seed=5)
    with fastconv.use_backend(any_backend_name):
        y, cache = layer.forward(batch, training=True)
        grad = to_numpy(layer.backward(y, cache))
    y = to_numpy(y)
    flipped = {"horizontal": batch[:, :, ::-1], "vertical": batch[:, ::-1], "horizontal_and_vertical": batch[:, ::-1, ::-1]}[mode]
    which = [bool(np.array_equal(out, flip)) for out, flip in zip(y, flipped)]
    for out, image, was_flipped in zip(y, batch, which):
        assert was_flipped or np.array_equal(out, image)
    assert 0 < sum(which) < len(batch)  # some of each, seed 5
    np.testing.assert_array_equal(grad, batch)  # the flip undone: the gradient of each input pixel is its own


def test_random_layers_transform_in_fit_and_direct_calls_not_in_predict():
    augment = models.Sequential([layers.InputLayer(input_shape=(7, 9, 2)), layers.RandomFlip("horizontal"),
                                 layers.RandomRotation(0.2), layers.RandomZoom(0.3)])  # fmt: skip
    batch = images()
    assert not np.allclose(to_numpy(augment(batch)), batch)  # data_augmentation(images), listing 8.15
    np.testing.assert_array_equal(augment.predict(batch, verbose=0), batch)
    assert not np.allclose(to_numpy(augment.forward(batch, training=True)[0]), batch)  # what fit runs
    np.testing.assert_array_equal(to_numpy(augment.forward(batch, training=False)[0]), batch)
    model = models.Sequential([layers.InputLayer(input_shape=(7, 9, 2)), layers.RandomFlip("horizontal"), layers.Rescaling(1 / 255),
                               layers.Conv2D(2, 3, activation="relu"), layers.Flatten(), layers.Dense(1, activation="sigmoid")])  # fmt: skip
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(batch, np.array([0.0, 1.0, 1.0]), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_seeds_repeat_the_draws():
    batch = images()
    first, second = (to_numpy(layers.RandomRotation(0.2, seed=11)(batch)) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    draws = []
    for _ in range(2):
        utils.set_random_seed(3)
        draws.append(to_numpy(layers.RandomZoom(0.3)(batch)))
    np.testing.assert_array_equal(*draws)


def test_a_transforming_rotation_or_zoom_passes_no_gradient_and_says_so():
    batch = images()
    layer = layers.RandomRotation(0.2, name="spin")
    y, cache = layer.forward(batch, training=True)
    with pytest.raises(ValueError, match=r"RandomRotation 'spin' passes no gradient to its input while it transforms"):
        layer.backward(y, cache)
    y, cache = layer.forward(batch, training=False)
    np.testing.assert_array_equal(to_numpy(layer.backward(y, cache)), batch)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.RandomRotation(1.5, name="r"), r"RandomRotation 'r': factor must lie in \[-1.0, 1.0\], got 1.5"),
        (lambda: layers.RandomZoom(-1.0, name="z"), r"RandomZoom 'z': height_factor must lie in \[-1.0, 1.0\], got -1.0"),
        (lambda: layers.RandomZoom(0.2, (0.1, 0.2, 0.3), name="z"), r"RandomZoom 'z': width_factor must be a number or a pair"),
        (lambda: layers.RandomRotation(0.1, fill_mode="wrap", name="r"), r"RandomRotation 'r': fill_mode must be one of"),
        (lambda: layers.RandomZoom(0.1, interpolation="bicubic", name="z"), r"RandomZoom 'z': interpolation must be one of"),
        (lambda: layers.RandomFlip("diagonal", name="f"), r"RandomFlip 'f': mode must be one of"),
        (lambda: layers.Rescaling(float("nan"), name="s"), r"Rescaling 's': scale must be a finite number, got nan"),
        (lambda: layers.RandomFlip(data_format="channels_first", name="f"), r"channels_last"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_the_layer(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_random_layers_need_images():
    with pytest.raises(ValueError, match=r"'random_flip'.*rank 4"):
        layers.RandomFlip(name="random_flip").build_for((None, 9, 3))


def test_configs_round_trip_through_both_file_formats(tmp_path):
    model = models.Sequential([layers.InputLayer(input_shape=(7, 9, 2)), layers.RandomFlip("vertical", seed=2),
                               layers.RandomRotation((-0.1, 0.2), fill_mode="constant", fill_value=3.0),
                               layers.RandomZoom(0.2, 0.1, interpolation="nearest"), layers.Rescaling(2.0, 1.0), layers.Flatten(),
                               layers.Dense(1)])  # fmt: skip
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        for saved, restored in zip(model.layers, loaded.layers):
            assert restored.get_config() == saved.get_config(), name
        np.testing.assert_array_equal(loaded.predict(images(), verbose=0), model.predict(images(), verbose=0))


@pytest.mark.parametrize("make", [lambda: layers.Dropout(0.5), lambda: layers.RandomFlip(), lambda: layers.RandomZoom(0.2)],
                         ids=["dropout", "flip", "zoom"])  # fmt: skip
def test_a_layer_that_passes_its_input_on_returns_a_copy_not_the_callers_array(make):
    batch = images()
    kept = batch.copy()
    out = to_numpy(make()(batch, training=False))
    np.testing.assert_array_equal(out, kept)
    assert not np.may_share_memory(out, batch)
    out[...] = 0
    np.testing.assert_array_equal(batch, kept)
