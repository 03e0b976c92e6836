"""fastconv.visualize: Grad-CAM on a model whose answer is known, filter patterns against the chapter's recipe, and
the PNG files, on every CPU backend."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastconv import Input, Model, layers, models, use_backend, visualize
from fastconv.models.gradients import gradient, layer_outputs

pytestmark = pytest.mark.usefixtures("fresh_names")

SIDE = 12


def square_detector(nested=False):
    """Says whether a 12x12 grey image holds a bright square: conv channel 0 fires on bright 3x3 neighbourhoods,
    channel 1 on dark ones, then global average pooling and a sigmoid unit weighing them +400 and -1 (a 3x3 square
    lights up a few pixels of channel 0; the dark background lights up most of channel 1)."""
    detector = layers.Conv2D(2, (3, 3), padding="same", activation="relu", name="detector")
    head = [layers.GlobalAveragePooling2D(name="pool"), layers.Dense(1, activation="sigmoid", name="square")]
    if nested:
        image = Input(shape=(SIDE, SIDE, 1), name="image")
        model = models.Sequential([Model(image, detector(image), name="base"), *head])
    else:
        model = models.Sequential([layers.Conv2D(2, (3, 3), padding="same", activation="relu", name="detector", input_shape=(SIDE, SIDE, 1)), *head])
    box = np.full((3, 3, 1, 1), 1 / 9, dtype=np.float32)
    model.set_weights([np.concatenate([box, -box], axis=3), np.array([-0.5, 0.5]), np.array([[400.0], [-1.0]]), np.zeros(1)])
    return model


def image_with_square(top, left, size=3):
    image = np.zeros((SIDE, SIDE, 1), dtype=np.float32)
    image[top : top + size, left : left + size] = 1.0
    return image


def distance_to_square(top, left, size=3):
    """Chebyshev distance of every pixel to the square (0 inside it)."""
    rows, cols = np.mgrid[:SIDE, :SIDE]
    return np.maximum(np.maximum(top - rows, rows - (top + size - 1)).clip(0), np.maximum(left - cols, cols - (left + size - 1)).clip(0))


@pytest.mark.parametrize("top, left", [(0, 0), (4, 7), (8, 2), (9, 9)])
def test_grad_cam_of_a_square_detector_peaks_on_the_square(any_backend_name, top, left):
    model = square_detector()
    image = image_with_square(top, left)
    with use_backend(any_backend_name):
        heatmap, class_index, score = visualize.grad_cam(model, image, "detector")
        background, background_class, background_score = visualize.grad_cam(model, image, "detector", class_index=0)
    distance = distance_to_square(top, left)
    assert class_index == 1 and score > 0.5, "the detector sees the square"
    assert heatmap.shape == (SIDE, SIDE) and heatmap.max() == 1.0
    assert distance[np.unravel_index(heatmap.argmax(), heatmap.shape)] == 0, "the map peaks on the square"
    assert np.all(heatmap[distance >= 2] == 0), "nothing away from the square speaks for it"
    # The other class (no square) is explained by the dark background, never by the square's centre.
    assert background_class == 0 and background_score == pytest.approx(1 - score, abs=1e-6)
    assert background[top + 1, left + 1] == 0 and background[distance >= 2].min() > 0.5


def test_grad_cam_reaches_a_conv_layer_inside_a_nested_model():
    """As for a VGG16-based classifier: Sequential([conv_base, ...]) and the base's last conv layer."""
    image = image_with_square(5, 3)
    flat, _, _ = visualize.grad_cam(square_detector(), image, "detector")
    nested, _, _ = visualize.grad_cam(square_detector(nested=True), image, "base/detector")
    np.testing.assert_array_equal(nested, flat)
    assert visualize.last_conv_layer(square_detector(nested=True)) == "base/detector"
    np.testing.assert_array_equal(visualize.grad_cam(square_detector(nested=True), image)[0], flat)


def test_grad_cam_of_a_softmax_model_explains_the_class_asked_for():
    model = models.Sequential([
        layers.Conv2D(3, (3, 3), activation="relu", input_shape=(8, 8, 2), name="features"),
        layers.Flatten(), layers.Dense(4, activation="softmax", name="classes"),
    ])  # fmt: skip
    image = np.random.default_rng(3).random((8, 8, 2)).astype(np.float32)
    scores = model.predict(image[None])[0]
    heatmap, class_index, score = visualize.grad_cam(model, image, "features")
    assert class_index == scores.argmax() and score == pytest.approx(scores.max())
    # By hand, as listings 5.42-5.43 compute it.
    _, grads = gradient(model, image[None], wrt="features", output_grad=np.eye(4)[[2]])
    features = layer_outputs(model, image[None], ["features"])["features"][0]
    expected = np.maximum((features.astype(np.float64) * grads[0].astype(np.float64).mean(axis=(0, 1))).mean(axis=-1), 0)
    np.testing.assert_allclose(visualize.grad_cam(model, image, "features", class_index=2)[0], expected / expected.max(), rtol=1e-12)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: visualize.grad_cam(m, np.zeros((1, SIDE, SIDE, 1)), "detector"), r"grad_cam takes one \(H, W, C\) image, got shape \(1, 12, 12, 1\)"),
        (lambda m: visualize.grad_cam(m, np.zeros((SIDE, SIDE, 1)), "pool"), r"layer 'pool' has output shape \(1, 2\); it needs a conv layer's"),
        (lambda m: visualize.grad_cam(m, np.zeros((SIDE, SIDE, 1)), "detector", class_index=2), r"one sigmoid unit, so class_index is 0 or 1, got 2"),
        (lambda m: visualize.grad_cam(m, np.zeros((SIDE, SIDE, 1)), "block5_conv3"), r"has no layer 'block5_conv3'"),
        (lambda m: visualize.filter_patterns(m, "detector", [0, 2]), r"layer 'detector' has 2 filters; filter indices \[2\] are out of range"),
        (lambda m: visualize.filter_patterns(m, "square", [0]), r"layer 'square' has output shape \(None, 1\); filter patterns need a conv layer's"),
        (lambda m: visualize.filter_patterns(m, "detector", [0], size=20), r"expects input of shape \(None, 12, 12, 1\), got \(None, 20, 20, 1\)"),
    ],
)
def test_bad_requests_name_the_layer_and_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call(square_detector())


def edge_filters():
    """A model with four linear 3x3 filters: horizontal and vertical edges, a centre spot and its negative."""
    model = models.Sequential([layers.Conv2D(4, (3, 3), input_shape=(16, 16, 3), name="edges")])
    horizontal = np.array([[1.0, 1, 1], [0, 0, 0], [-1, -1, -1]])
    spot = np.array([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    kernels = np.stack([horizontal, horizontal.T, spot, -spot], axis=-1)[:, :, None, :] * np.array([1.0, 0.5, -0.5])[None, None, :, None]
    model.set_weights([kernels.astype(np.float32), np.zeros(4)])
    return model


def test_filter_patterns_follow_the_chapters_recipe_and_excite_their_own_filter(any_backend_name):
    model = edge_filters()
    with use_backend(any_backend_name):
        patterns = visualize.filter_patterns(model, "edges", [0, 1, 2, 3], steps=10, batch_size=3, verbose=0)
    assert patterns.shape == (4, 16, 16, 3) and patterns.dtype == np.uint8

    # Listing 5.38 by hand, one filter at a time, from the same starting noise.
    start = np.random.default_rng(0).random((4, 16, 16, 3)) * 20 + 128.0
    for index in range(4):
        image = start[index : index + 1].copy()
        for _ in range(10):
            seed = np.zeros((1, 14, 14, 4), dtype=np.float32)
            seed[..., index] = 1 / (14 * 14)
            _, grads = gradient(model, image, of="edges", output_grad=seed)
            image += grads / (np.sqrt(np.mean(np.square(grads, dtype=np.float64))) + 1e-5)
        assert np.abs(visualize.deprocess_image(image[0]).astype(int) - patterns[index]).max() <= 1

    # Each pattern excites its own filter more than any other filter's pattern does.
    activations = model.predict(patterns.astype(np.float32)).mean(axis=(1, 2))  # (pattern, filter)
    assert np.all(activations.argmax(axis=0) == np.arange(4)), activations


def test_the_pictures_are_written_as_pngs_and_the_photo_is_left_alone(tmp_path):
    model = square_detector()
    grid_path = visualize.save_filter_patterns(model, "detector", tmp_path / "patterns.png", steps=3, verbose=0)
    with Image.open(grid_path) as grid:
        assert grid.format == "PNG" and grid.size == (2 * SIDE + 5, SIDE)

    photo = np.random.default_rng(4).integers(0, 200, (30, 40, 3)).astype(np.float64)
    before = photo.copy()
    heatmap = np.zeros((SIDE, SIDE))
    heatmap[0, 0] = 1.0
    overlay_path = visualize.save_grad_cam(photo, heatmap, tmp_path / "cam.png")
    np.testing.assert_array_equal(photo, before)
    with Image.open(overlay_path) as overlay:
        pixels = np.asarray(overlay).astype(np.float64)
    assert overlay.size == (40, 30)
    # Where the heatmap is 0 the photo gets jet's dark blue (0, 0, 128 * 0.4), where it is 1 dark red at the top left.
    np.testing.assert_allclose(pixels[-1, -1], np.clip(photo[-1, -1] + [0, 0, np.floor(127.5) * 0.4], 0, 255), atol=1)
    assert pixels[0, 0, 0] - photo[0, 0, 0] > 40
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    assert visualize.save_grad_cam(tmp_path / "photo.jpg", heatmap, tmp_path / "cam2.png").exists()
    with pytest.raises(ValueError, match=r"save_grad_cam takes an \(H, W, 3\) photo, got shape \(30, 40\)"):
        visualize.save_grad_cam(photo[..., 0], heatmap, tmp_path / "cam3.png")


def test_jet_runs_from_blue_to_red():
    np.testing.assert_array_equal(visualize.jet([0.0, 0.5, 1.0]), [[0, 0, 127], [127, 255, 127], [127, 0, 0]])


def test_the_example_writes_the_three_kinds_of_pictures(small_split, tmp_path, capsys):
    """``python -m fastconv.examples.visualize`` on listing 5.4's layout, with an untrained convnet, VGG16 weights
    of Keras' layout (random here: the shared ImageNet file need not be present) and a classifier file."""
    from fastconv.applications import VGG16
    from fastconv.examples import visualize as example
    from fastconv.examples.listings import cats_dogs_convnet
    from fastconv.examples.vgg16_transfer import classifier

    cats_dogs_convnet().save(small_split / "cats_and_dogs_small_augmented.h5")
    VGG16(weights=None, include_top=False, input_shape=(150, 150, 3)).save_weights(tmp_path / "vgg16_notop.h5")
    classifier().save_weights(small_split / "classifier_rescale.h5")
    photos = [str(path.relative_to(small_split / "test")) for path in sorted((small_split / "test").glob("*/*.jpg"))[::2]]
    out = tmp_path / "pictures"
    written = example.main(["--base", str(small_split), "--weights", str(tmp_path / "vgg16_notop.h5"), "--out", str(out),
                            "--layers", "block1_conv1", "--filters", "3", "--size", "32", "--steps", "2", "--photos", *photos])  # fmt: skip
    names = sorted(path.name for path in written)
    stems = [Path(photo).stem for photo in photos]
    assert names == sorted(["activations.png", "filters_block1_conv1.png", *(f"grad_cam_{model}_{stem}.png" for model in ("convnet", "vgg16") for stem in stems)])
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and path.parent == out
    assert "map of vgg16/block5_conv3" in capsys.readouterr().out


def test_a_nan_in_the_model_is_refused_not_drawn(tmp_path):
    """A NaN weight made every picture an arbitrary grey or colour (NaN cast to uint8); now each call names it."""
    model = square_detector()
    kernel, bias, dense_kernel, dense_bias = model.get_weights()
    bias[1] = np.nan  # the dark-detector channel: NaN in the conv output and, through the head, in the score
    model.set_weights([kernel, bias, dense_kernel, dense_bias])
    with pytest.raises(ValueError, match=r"grad_cam: layer 'detector''s output for this image contains NaN or infinity"):
        visualize.grad_cam(model, image_with_square(2, 2))
    with pytest.raises(ValueError, match=r"filter patterns of 'detector': the output of filters \[0, 1\] contains NaN"):
        visualize.filter_patterns(model, "detector", [0, 1], steps=2, verbose=0)
    with pytest.raises(ValueError, match=r"save_grad_cam: the heatmap contains NaN"):
        visualize.save_grad_cam(np.zeros((8, 8, 3)), np.full((2, 2), np.nan), tmp_path / "cam.png")
    with pytest.raises(ValueError, match=r"deprocess_image: the image contains NaN"):
        visualize.deprocess_image(np.full((2, 2, 3), np.inf))
    assert not (tmp_path / "cam.png").exists()
