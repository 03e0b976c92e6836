"""``image_dataset_from_directory`` (the second edition's chapter 8): the files, their order and labels, shuffling per
epoch, Keras' validation split, the batches' types, cropping, bad files, and fit/evaluate/predict taking it."""

import numpy as np
import pytest
from PIL import Image

import fastconv
from fastconv import layers, models
from fastconv.preprocessing import image_dataset_from_directory

pytestmark = pytest.mark.usefixtures("fresh_names")
CLASSES = ("cats", "dogs", "owls")


@pytest.fixture
def folder(tmp_path):
    """5 PNGs per class, 6x8 pixels, every pixel 10 * class + index: a batch says which files it holds."""
    for label, name in enumerate(CLASSES):
        (tmp_path / name).mkdir()
        for index in range(5):
            value = 10 * label + index
            Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(tmp_path / name / f"{name}.{index}.png")
    return tmp_path


def values(images):
    return [int(image[0, 0, 0]) for image in images]


def test_the_files_labels_and_batches_as_keras_gives_them(folder):
    dataset = image_dataset_from_directory(folder, image_size=(6, 8), batch_size=4, shuffle=False, verbose=False)
    assert dataset.class_names == list(CLASSES) and len(dataset) == 4
    batches = list(dataset)
    assert [len(x) for x, _ in batches] == [4, 4, 4, 3]
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (4, 6, 8, 3) and y.dtype == np.int32 and y.shape == (4,)
    seen = [v for x, _ in batches for v in values(x)]
    assert seen == [10 * label + index for label in range(3) for index in range(5)]
    assert [int(label) for _, y in batches for label in y] == [v // 10 for v in seen]
    categorical = next(iter(image_dataset_from_directory(folder, label_mode="categorical", image_size=(6, 8), shuffle=False, verbose=False)))
    np.testing.assert_array_equal(categorical[1], np.eye(3, dtype=np.float32)[[0] * 5 + [1] * 5 + [2] * 5])
    images_only = next(iter(image_dataset_from_directory(folder, labels=None, image_size=(6, 8), shuffle=False, verbose=False)))
    assert isinstance(images_only, np.ndarray) and images_only.shape == (15, 6, 8, 3)
    single = next(iter(image_dataset_from_directory(folder, batch_size=None, image_size=(6, 8), shuffle=False, verbose=False)))
    assert single[0].shape == (6, 8, 3) and single[1] == 0
    assert fastconv.utils.image_dataset_from_directory is image_dataset_from_directory


def test_each_epoch_is_reshuffled_and_a_seed_repeats_the_epochs(folder):
    def epochs(seed):
        dataset = image_dataset_from_directory(folder, image_size=(6, 8), batch_size=4, seed=seed, verbose=False)
        return [[v for x, _ in dataset for v in values(x)] for _ in range(3)]

    first = epochs(7)
    assert all(sorted(epoch) == sorted(first[0]) for epoch in first)  # every file once per epoch
    assert first[0] != first[1] != first[2]
    assert epochs(7) == first
    fastconv.utils.set_random_seed(5)  # without a seed, fastconv's generator draws the order
    unseeded = epochs(None)
    fastconv.utils.set_random_seed(5)
    assert epochs(None) == unseeded


def test_the_validation_split_is_keras_own(folder):
    training, validation = image_dataset_from_directory(folder, image_size=(6, 8), validation_split=0.2, subset="both", seed=1337,
                                                        verbose=False)  # fmt: skip
    order = np.arange(15)
    np.random.RandomState(1337).shuffle(order)  # Keras' index_directory, then the last 20 % validate
    paths = sorted((folder / name / f"{name}.{index}.png" for name in CLASSES for index in range(5)), key=str)
    assert sorted(validation.file_paths) == sorted(str(paths[i]) for i in order[12:])
    assert sorted(training.file_paths) == sorted(str(paths[i]) for i in order[:12])
    alone = image_dataset_from_directory(folder, image_size=(6, 8), validation_split=0.2, subset="validation", seed=1337, verbose=False)
    assert alone.file_paths == validation.file_paths


def test_take_crop_and_binary_labels(tmp_path):
    for name, shade in (("a", 40), ("b", 200)):
        (tmp_path / name).mkdir()
        image = np.zeros((10, 30, 3), np.uint8)
        image[:, 10:20] = shade  # the middle third: what a square centred crop keeps
        Image.fromarray(image).save(tmp_path / name / "wide.png")
    dataset = image_dataset_from_directory(tmp_path, label_mode="binary", image_size=(5, 5), batch_size=1, shuffle=False,
                                           crop_to_aspect_ratio=True, verbose=False)  # fmt: skip
    (x0, y0), (x1, y1) = list(dataset)
    assert y0.shape == (1, 1) and y0.dtype == np.float32 and float(y1[0, 0]) == 1.0
    np.testing.assert_array_equal(x0, np.full((1, 5, 5, 3), 40, np.float32))
    assert len(dataset.take(1)) == 1 and len(list(dataset.take(1))) == 1


def test_fit_evaluate_and_predict_take_a_dataset(folder):
    training, validation = image_dataset_from_directory(folder, image_size=(6, 8), batch_size=4, validation_split=0.4, subset="both",
                                                        seed=3, verbose=False)  # fmt: skip
    inputs = fastconv.Input(shape=(6, 8, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(x))
    model = models.Model(inputs, layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(training, epochs=2, validation_data=validation, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"] and len(history.history["loss"]) == 2
    assert np.isfinite(model.evaluate(validation, verbose=0)).all()
    assert model.predict(validation, verbose=0).shape == (6, 3)
    with pytest.raises(ValueError, match=r"steps_per_epoch=9 is more than the 3 batches the dataset has"):
        model.fit(training, steps_per_epoch=9, verbose=0)


def test_a_bad_file_is_named(folder):
    (folder / "dogs" / "dogs.broken.png").write_bytes(b"not an image")
    dataset = image_dataset_from_directory(folder, image_size=(6, 8), shuffle=False, verbose=False)
    with pytest.raises(ValueError, match=r"dogs\.broken\.png"):
        list(dataset)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"label_mode": "binary"}, r"label_mode='binary' needs 2 classes"),
        ({"validation_split": 0.2, "subset": "training"}, r"with validation_split and shuffle, pass a seed"),
        ({"validation_split": 0.2}, r"give validation_split and subset together"),
        ({"validation_split": 1.5, "subset": "both", "seed": 1}, r"validation_split must be in \(0, 1\)"),
        ({"labels": [0, 1, 2]}, r"explicit label lists are not supported"),
        ({"interpolation": "lanczos9"}, r"interpolation must be one of"),
        ({"batch_size": 0}, r"batch_size must be a positive int"),
    ],
)
def test_bad_arguments_are_refused(folder, arguments, message):
    with pytest.raises(ValueError, match=message):
        image_dataset_from_directory(folder, image_size=(6, 8), verbose=False, **arguments)


@pytest.mark.parametrize("source", ["image_dataset_from_directory", "flow_from_directory"])
@pytest.mark.parametrize("batch_size", [2, 4])
def test_shards_for_data_parallel_training_are_disjoint_and_cover_each_step(folder, source, batch_size):
    """fastconv.distribute's split of 15 files between 2 processes: one order for both (the shared seed), each
    step's 2 x batch_size files cut in two near-equal, disjoint shares, as many steps on both, and every file of
    the epoch used once (here 15 % (2 x batch_size) >= 2, so no step is left out)."""
    from fastconv.preprocessing.image import ImageDataGenerator

    def make():
        if source == "image_dataset_from_directory":
            return image_dataset_from_directory(folder, image_size=(6, 8), batch_size=batch_size, seed=1)
        return ImageDataGenerator().flow_from_directory(folder, target_size=(6, 8), batch_size=batch_size, seed=1)

    shards = [make().sharded(rank, 2, seed=77) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == -(-15 // (2 * batch_size))
    for epoch in range(2):
        steps = [[values(batch[0]) for batch in (iter(shard) if source == "image_dataset_from_directory" else (next(shard) for _ in range(len(shard))))]
                 for shard in shards]  # fmt: skip
        seen = []
        for first, second in zip(*steps):
            assert abs(len(first) - len(second)) <= 1 and not set(first) & set(second)
            seen += first + second
        assert sorted(seen) == sorted(10 * label + index for label in range(3) for index in range(5)), f"epoch {epoch}"


@pytest.mark.parametrize("crop_to_aspect_ratio", [False, True])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_the_pixels_are_keras_own(tmp_path, interpolation, crop_to_aspect_ratio):
    """Keras 3 decodes with TensorFlow and resizes with tf.image.resize (half-pixel centres, no antialiasing) after
    smart_resize's crop; on PNGs (decoded alike by both) fastconv gives its pixels. Pillow's own resize, which
    fastconv used before, was 1.2 grey levels off on average on the test photos (37 at worst)."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    for name, shapes in (("a", [(37, 53), (7, 20), (64, 31)]), ("b", [(20, 20), (5, 90)])):
        (tmp_path / name).mkdir()
        for index, shape in enumerate(shapes):
            Image.fromarray(rng.integers(0, 256, (*shape, 3)).astype(np.uint8)).save(tmp_path / name / f"{index}.png")
    settings = dict(image_size=(3, 5), batch_size=8, shuffle=False, interpolation=interpolation, crop_to_aspect_ratio=crop_to_aspect_ratio)
    (theirs, their_labels), = [(np.asarray(x), np.asarray(y)) for x, y in keras.utils.image_dataset_from_directory(tmp_path, **settings, verbose=False)]
    (ours, our_labels), = list(image_dataset_from_directory(tmp_path, **settings, verbose=False))
    np.testing.assert_array_equal(our_labels, their_labels)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=5e-4)
