"""Keras 3's resize (``fastconv.preprocessing.resize``, what ``image_dataset_from_directory`` resizes with): the
half-pixel, non-antialiased sampling of ``tf.image.resize``, checked by hand and, where TensorFlow is installed,
against it on random shapes, shrinking and growing."""

import numpy as np
import pytest

from fastconv.preprocessing.resize import resize


def test_bilinear_samples_at_half_pixel_centres_without_antialiasing():
    # 9 -> 3: the centres of the outputs fall on source pixels 1, 4 and 7, which they take as they are; an
    # antialiased filter (Pillow's) would average their neighbours: 1, 16, 49 become ~1.7, ~16.7, ~49.7.
    ramp = (np.arange(9, dtype=np.float32) ** 2).reshape(1, 9, 1)
    np.testing.assert_array_equal(resize(ramp, (1, 3))[0, :, 0], [1, 16, 49])
    # 4 x 4 -> 2 x 2: each output is the mean of one 2 x 2 block
    square = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    np.testing.assert_array_equal(resize(square, (2, 2))[:, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    # growing 2 -> 4: positions -0.25, 0.25, 0.75, 1.25 clamp to the edges
    np.testing.assert_array_equal(resize(np.array([[[0], [8]]], np.uint8), (1, 4))[0, :, 0], [0, 2, 6, 8])


def test_nearest_takes_the_pixel_under_each_centre():
    row = np.arange(10, dtype=np.uint8).reshape(1, 10, 1)
    np.testing.assert_array_equal(resize(row, (1, 4), "nearest")[0, :, 0], [1, 3, 6, 8])  # floor((i + 0.5) * 2.5)


def test_resize_returns_float32_and_refuses_what_it_cannot_do():
    image = np.zeros((5, 6, 3), np.uint8)
    assert resize(image, (2, 3)).dtype == np.float32 and resize(image, (2, 3)).shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r"interpolation must be one of \['bilinear', 'nearest', 'bicubic'\], got 'area'"):
        resize(image, (2, 3), "area")
    with pytest.raises(ValueError, match=r"an image is \(height, width, channels\), got shape \(5, 6\)"):
        resize(image[:, :, 0], (2, 3))


@pytest.mark.parametrize("interpolation, tolerance", [("bilinear", 1e-4), ("nearest", 0.0), ("bicubic", 5e-4)])
def test_resize_is_tensorflow_s_on_random_shapes(interpolation, tolerance):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(7)
    for _ in range(25):
        in_size, out_size = rng.integers(1, 70, 2), rng.integers(1, 70, 2)
        image = rng.integers(0, 256, (*in_size, 3)).astype(np.uint8)
        expected = tf.image.resize(image, out_size, method=interpolation).numpy().astype(np.float32)
        np.testing.assert_allclose(resize(image, tuple(out_size), interpolation), expected, rtol=0, atol=tolerance,
                                   err_msg=f"{interpolation} {tuple(in_size)} -> {tuple(out_size)}")  # fmt: skip
