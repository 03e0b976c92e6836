"""fastconv.preprocessing.image and the cats-vs-dogs split, on a handful of the shared photos."""

import numpy as np
import pytest

import fastconv
from fastconv.datasets.dogs_vs_cats import make_small_split
from fastconv.preprocessing.image import ImageDataGenerator, affine_warp, array_to_img, img_to_array, load_img

from conftest import PHOTOS, SMALL, within_seconds

needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"the shared photos are not at {PHOTOS}")


def test_split_layout_and_refusals(small_split, tmp_path):
    assert sorted(p.name for p in (small_split / "train" / "cats").iterdir()) == [f"cat.{i}.jpg" for i in sorted(range(6), key=str)]
    assert len(list((small_split / "test" / "dogs").iterdir())) == 2
    with pytest.raises(FileExistsError, match="is not empty"):
        make_small_split(tmp_path / "originals", small_split, splits=SMALL)
    with pytest.raises(FileNotFoundError, match=r"3980 source images are missing, e.g. .*cat\.10\.jpg"):
        make_small_split(tmp_path / "originals", tmp_path / "other")


@needs_photos
def test_load_img_and_conversions():
    image = load_img(PHOTOS / "cat.0.jpg", target_size=(150, 120))
    assert image.size == (120, 150) and image.mode == "RGB"
    array = img_to_array(image)
    assert array.shape == (150, 120, 3) and array.dtype == np.float32 and array.max() > 1
    assert img_to_array(load_img(PHOTOS / "cat.0.jpg", color_mode="grayscale")).shape[2] == 1
    back = img_to_array(array_to_img(array, scale=False))
    np.testing.assert_array_equal(back, array)


def test_bad_image_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_img(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode image .*corrupt\.jpg"):
        load_img(corrupt)
    with pytest.raises(ValueError, match="target_size must be"):
        load_img(corrupt, target_size=(150,))
    with pytest.raises(ValueError, match="fill_mode must be"):
        ImageDataGenerator(fill_mode="mirror")


DAMAGED_HEADERS = {
    "maxval-0": b"P6\n2 2\n0\n" + bytes(12),
    "maxval-too-large": b"P6\n2 2\n70000\n" + bytes(24),
    "letters-for-a-size": b"P6\nab cd\n255\n" + bytes(12),
    "letters-for-a-value": b"P3\n2 2\n255\n1 2 3 x y z\n",
    "value-over-maxval": b"P3\n2 2\n255\n1 2 300 4 5 6 7 8 9 10 11 12\n",
    "too-few-values": b"P2\n2 2\n255\n1 2\n",
    "token-too-long": b"P6\n" + b"9" * 200 + b" 2\n255\n" + bytes(12),
    "pfm-scale-0": b"Pf\n2 2\n0\n" + bytes(16),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGED_HEADERS))
def test_a_damaged_image_header_is_an_error_naming_the_file(tmp_path, damage):
    path = tmp_path / f"{damage}.ppm"
    path.write_bytes(DAMAGED_HEADERS[damage])
    with pytest.raises(ValueError, match=rf"cannot decode image .*{damage}\.ppm: "):
        load_img(path)


def _ramp(dtype=np.uint8):
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    return np.stack([rows * 10, cols * 10, rows + cols], axis=2).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_affine_warp_identity_and_fill_modes(dtype):
    image = _ramp(dtype)
    np.testing.assert_allclose(affine_warp(image, np.eye(3)), image, atol=1)
    shift_down = np.array([[1.0, 0, -2], [0, 1, 0], [0, 0, 1]])  # output row r reads input row r - 2
    constant = affine_warp(image, shift_down, "constant", cval=7)
    np.testing.assert_allclose(constant[:2], 7, atol=1)
    np.testing.assert_allclose(constant[2:], image[:-2], atol=1)
    nearest = affine_warp(image, shift_down, "nearest")
    np.testing.assert_allclose(nearest[:2], np.broadcast_to(image[:1], (2, 8, 3)), atol=1)
    wrap = affine_warp(image, shift_down, "wrap")
    np.testing.assert_allclose(wrap[:2], image[-2:], atol=1)
    reflect = affine_warp(image, shift_down, "reflect")
    np.testing.assert_allclose(reflect[:2], image[1::-1], atol=1)


def test_flow_on_arrays_is_seeded_and_keeps_labels():
    x = np.stack([_ramp(np.float32) + i for i in range(5)])
    y = np.arange(5)
    generator = ImageDataGenerator(rescale=1.0 / 255, rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                                   shear_range=0.2, zoom_range=0.2, horizontal_flip=True)  # fmt: skip
    first = next(generator.flow(x, y, batch_size=5, seed=3))
    second = next(generator.flow(x, y, batch_size=5, seed=3))
    np.testing.assert_array_equal(first[0], second[0])
    assert first[0].shape == (5, 8, 8, 3) and first[0].dtype == np.float32 and first[0].max() <= 1.0
    assert sorted(first[1]) == list(range(5))
    plain = next(ImageDataGenerator(rescale=0.5).flow(x, y, batch_size=2, shuffle=False))
    np.testing.assert_allclose(plain[0], x[:2] * 0.5)


def test_flow_from_directory_batches_and_errors(small_split, capsys):
    generator = ImageDataGenerator(rescale=1.0 / 255, rotation_range=40, zoom_range=0.2, horizontal_flip=True)
    train = generator.flow_from_directory(small_split / "train", target_size=(150, 150), batch_size=5, class_mode="binary", seed=0)
    assert capsys.readouterr().out == "Found 12 images belonging to 2 classes.\n"
    assert train.class_indices == {"cats": 0, "dogs": 1} and len(train) == 3
    seen = []
    for _ in range(3):
        images, labels = next(train)
        assert images.dtype == np.float32 and images.shape[1:] == (150, 150, 3)
        assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05
        seen += labels.tolist()
    assert sorted(seen) == [0.0] * 6 + [1.0] * 6
    sparse = ImageDataGenerator().flow_from_directory(small_split / "test", target_size=(32, 32), class_mode="sparse", verbose=False)
    assert next(sparse)[1].dtype == np.int64
    (small_split / "validation" / "cats" / "cat.6.jpg").write_bytes(b"broken")
    broken = ImageDataGenerator().flow_from_directory(small_split / "validation", target_size=(32, 32), batch_size=4, shuffle=False, verbose=False)
    with pytest.raises(ValueError, match=r"cannot decode image .*cat\.6\.jpg"):
        next(broken)
    empty = small_split / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageDataGenerator().flow_from_directory(empty, target_size=(32, 32), verbose=False)
    with pytest.raises(ValueError, match="target_size must be"):
        ImageDataGenerator().flow_from_directory(small_split / "test", target_size=(0, 32))


def test_cats_dogs_convnet_trains_from_the_generator(small_split):
    """Listing 5.5-5.8 on 12 training images: the split, the generator and two epochs, end to end."""
    from fastconv.examples.listings import cats_dogs_convnet
    from fastconv.utils import set_random_seed

    set_random_seed(0)
    model = cats_dogs_convnet()
    model.compile(loss="binary_crossentropy", optimizer=fastconv.optimizers.RMSprop(lr=1e-4), metrics=["acc"])
    datagen = ImageDataGenerator(rescale=1.0 / 255)
    train = datagen.flow_from_directory(small_split / "train", target_size=(150, 150), batch_size=4, class_mode="binary", verbose=False)
    validation = datagen.flow_from_directory(small_split / "validation", target_size=(150, 150), batch_size=4, class_mode="binary", verbose=False)
    history = model.fit_generator(train, steps_per_epoch=3, epochs=2, validation_data=validation, validation_steps=1, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert all(np.isfinite(v) for values in history.history.values() for v in values)


def test_pictures_of_training(small_split, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from fastconv import plot
    from fastconv.examples.listings import cats_dogs_convnet

    logs = {"acc": [0.5, 0.6, 0.7, 0.72], "val_acc": [0.5, 0.58, 0.63, 0.66], "loss": [0.69, 0.6, 0.5, 0.45], "val_loss": [0.69, 0.65, 0.62, 0.6]}
    curves = plot.history(logs, tmp_path / "curves.png", smooth=0.8)
    assert plot.smooth_curve([1.0, 0.0], 0.8) == [1.0, 0.8]
    model = cats_dogs_convnet()
    photo = img_to_array(load_img(small_split / "test" / "cats" / "cat.8.jpg", target_size=(150, 150))) / 255
    first_conv, first_pool = model.layers[0].name, model.layers[1].name  # default names depend on earlier tests
    grid = plot.activations(model, photo, [first_conv, first_pool], tmp_path / "activations.png")
    samples = plot.augmented_samples(ImageDataGenerator(rotation_range=40, zoom_range=0.2, horizontal_flip=True), photo * 255, tmp_path / "augmented.png")
    for path, min_width in ((curves, 1000), (grid, 1000), (samples, 1000)):
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width >= min_width, path
            assert np.asarray(picture.convert("L")).std() > 5, f"{path} looks blank"
    with pytest.raises(ValueError, match=r"model 'sequential\w*' has no layer 'block1_conv1'; its layers are \['conv2d"):
        plot.activations(model, photo, ["block1_conv1"], tmp_path / "none.png")


# --- files that come from someone else (issue 10) ------------------------------------------


def _png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def _class_folders(root, count=5, corrupt=(), size=6):
    """root/a/<i>.png and root/b/<i>.png, each image a flat grey of its own number; ``corrupt``: names of broken files in a/."""
    for folder in ("a", "b"):
        for i in range(count):
            _png(root / folder / f"{i}.png", np.full((size, size, 3), 10 * i + (100 if folder == "b" else 0), np.uint8))
    for name in corrupt:
        (root / "a" / name).write_bytes(b"\x89PNG broken")
    return root


def test_16_bit_png_is_scaled_in_rgb_and_keeps_its_range_in_grayscale(tmp_path):
    values = np.array([[0, 1000], [30000, 65535]], np.uint16)
    path = _png(tmp_path / "a" / "deep.png", values)
    rgb = img_to_array(load_img(path))
    np.testing.assert_array_equal(rgb[:, :, 0], [[0, 4], [117, 255]])  # value / 257, not all 255
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 2])
    np.testing.assert_array_equal(img_to_array(load_img(path, color_mode="grayscale"))[:, :, 0], values)  # as Keras
    _png(tmp_path / "b" / "deep.png", values)
    grey = ImageDataGenerator().flow_from_directory(tmp_path, target_size=(2, 2), color_mode="grayscale", batch_size=2, shuffle=False, verbose=False)
    colour = ImageDataGenerator().flow_from_directory(tmp_path, target_size=(2, 2), batch_size=2, shuffle=False, verbose=False)
    with grey, colour:
        np.testing.assert_array_equal(next(grey)[0][0, :, :, 0], values)  # not wrapped through uint8
        np.testing.assert_array_equal(next(colour)[0][0, :, :, 1], [[0, 4], [117, 255]])


def test_a_bad_file_raises_once_and_the_iterator_moves_on(tmp_path):
    root = _class_folders(tmp_path / "data", count=2, corrupt=["1x.png"])
    with ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), batch_size=1, shuffle=False, verbose=False) as images:
        assert [p.name for p in images.filepaths] == ["0.png", "1.png", "1x.png", "0.png", "1.png"]
        outcomes = []
        for _ in range(7):
            try:
                outcomes.append(float(next(images)[0][0, 0, 0, 0]))
            except ValueError as error:
                assert "1x.png" in str(error)
                outcomes.append("error")
    assert outcomes == [0.0, 10.0, "error", 100.0, 110.0, 0.0, 10.0]


def test_on_error_skip_warns_once_naming_the_file_and_fills_the_batch(tmp_path):
    root = _class_folders(tmp_path / "data", count=3, corrupt=["0x.png"])
    images = ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), batch_size=4, shuffle=False, class_mode="sparse",
                                                      verbose=False, on_error="skip")  # fmt: skip
    with images:
        with pytest.warns(UserWarning, match=r"skipped an image that cannot be loaded: cannot decode image .*0x\.png"):
            batch, labels = next(images)
        assert batch.shape == (4, 6, 6, 3)
        np.testing.assert_array_equal(batch[:, 0, 0, 0], [0, 10, 20, 100])  # a/0, a/1, a/2, and b/0 in place of a/0x
        np.testing.assert_array_equal(labels, [0, 0, 0, 1])
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once per file, not once per epoch
            for _ in range(4):
                assert next(images)[0].shape[0] in (3, 4)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), on_error="ignore", verbose=False)


def test_images_in_sub_folders_of_a_class_are_found(tmp_path):
    root = _class_folders(tmp_path / "data", count=1)
    _png(root / "a" / "2019" / "summer" / "deep.png", np.zeros((6, 6, 3), np.uint8))
    with ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), verbose=False) as images:
        assert images.samples == 3 and [p.relative_to(root).as_posix() for p in images.filepaths][:2] == ["a/0.png", "a/2019/summer/deep.png"]


def test_follow_links_visits_each_real_folder_once(tmp_path):
    root = _class_folders(tmp_path / "data", count=2)
    _png(tmp_path / "elsewhere" / "x.png", np.zeros((6, 6, 3), np.uint8))
    (root / "a" / "more").symlink_to(tmp_path / "elsewhere")  # followed: a's images now include x.png
    (root / "a" / "more_again").symlink_to(tmp_path / "elsewhere")  # the same folder twice: listed once
    (root / "a" / "loop").symlink_to(root / "a")  # a loop back to the class folder
    (root / "a" / "up").symlink_to(root)  # a loop through the data directory, which holds b's images
    (root / "b" / "to_a").symlink_to(root / "a")  # another class's folder: not relabelled as b
    (root / "b" / "x").mkdir()
    (root / "b" / "x" / "again").symlink_to(root / "b" / "x")  # a second loop
    with within_seconds(20), ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), verbose=False, follow_links=True) as images:
        listed = sorted((path.relative_to(root).as_posix(), int(label)) for path, label in zip(images.filepaths, images.classes))
    assert listed == [("a/0.png", 0), ("a/1.png", 0), ("a/more/x.png", 0), ("b/0.png", 1), ("b/1.png", 1)]


def test_a_decompression_bomb_is_an_error_naming_the_file(tmp_path, monkeypatch):
    from PIL import Image

    path = _png(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(ValueError, match=r"cannot decode image .*big\.png: .*decompression bomb"):
        load_img(path)


def test_iterators_end_their_threads_when_closed_or_dropped(tmp_path):
    import gc
    import threading
    import time

    root = _class_folders(tmp_path / "data", count=2)
    gc.collect()  # iterators that earlier tests left in reference cycles end their threads now, not during this test
    settle = time.monotonic() + 5
    while time.monotonic() < settle:
        count = threading.active_count()
        time.sleep(0.1)
        if threading.active_count() == count:
            break
    before = threading.active_count()
    kept = []
    for i in range(30):
        images = ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), batch_size=2, verbose=False)
        next(images)  # starts the decoding and prefetching threads
        if i % 2:
            images.close()
        else:
            kept.append(images)
    assert kept[0].closed is False
    kept.clear()
    images = None
    gc.collect()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before, f"{threading.active_count() - before} threads left behind"
    with ImageDataGenerator().flow_from_directory(root, target_size=(6, 6), verbose=False) as images:
        next(images)
    assert images.closed
    with pytest.raises(RuntimeError, match="is closed"):
        next(images)


def test_listing_5_14_checkpoints_every_epoch_and_resumes(small_split, capsys):
    """``cats_dogs --augment`` saves the model (optimizer state included) and the History after every epoch, and
    ``--resume`` goes on from there: two sittings of one epoch are one History of two, the optimizer two steps on."""
    import json

    from fastconv.examples import cats_dogs
    from fastconv.models import load_model

    trial = ["--original", str(small_split.parent / "originals"), "--base", str(small_split), "--augment",
             "--steps", "1", "--validation-steps", "1"]  # fmt: skip
    with pytest.raises(SystemExit):
        cats_dogs.main([*trial, "--epochs", "1", "--resume"])  # nothing to resume yet
    assert "--resume: no checkpoint of the augmented run" in capsys.readouterr().err
    first, _ = cats_dogs.main([*trial, "--epochs", "1"])
    assert len(first["loss"]) == 1
    assert load_model(small_split / "checkpoint_augmented.h5").optimizer.iterations == 1
    resumed, _ = cats_dogs.main([*trial, "--epochs", "2", "--resume"])
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert resumed["loss"][0] == first["loss"][0] and len(resumed["loss"]) == 2
    assert json.loads((small_split / "checkpoint_augmented.json").read_text()) == resumed
    assert json.loads((small_split / "history_augmented.json").read_text()) == resumed
    assert load_model(small_split / "checkpoint_augmented.h5").optimizer.iterations == 2
