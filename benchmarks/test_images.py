"""Augmented images per second from flow_from_directory (listing 5.14's augmentation, 150x150, batch 32).

Needs the shared photos (../shared/data/dogs-vs-cats/train): the first 300 of each class are copied
to a temporary class folder layout. Target: ≥ 1,000 images/s on the 2-core machine.
"""

import shutil
from pathlib import Path

import pytest

from fastconv.preprocessing.image import ImageDataGenerator

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dogs-vs-cats" / "train"
BATCHES = 10


@pytest.fixture(scope="module")
def photo_folders(tmp_path_factory):
    if not PHOTOS.is_dir():
        pytest.skip(f"the shared photos are not at {PHOTOS}")
    root = tmp_path_factory.mktemp("photos")
    for folder, prefix in (("cats", "cat"), ("dogs", "dog")):
        (root / folder).mkdir()
        for i in range(300):
            shutil.copyfile(PHOTOS / f"{prefix}.{i}.jpg", root / folder / f"{prefix}.{i}.jpg")
    return root


@pytest.mark.parametrize("augment", [False, True], ids=["rescale only", "listing 5.14 augmentation"])
def test_augmented_images_per_second(benchmark, photo_folders, augment):
    options = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                   horizontal_flip=True) if augment else {}  # fmt: skip
    generator = ImageDataGenerator(rescale=1.0 / 255, **options)
    batches = generator.flow_from_directory(photo_folders, target_size=(150, 150), batch_size=32, class_mode="binary", verbose=False)
    next(batches)

    def draw():
        for _ in range(BATCHES):
            next(batches)

    benchmark.group = "augmented 150x150 images"
    benchmark.extra_info.update(implementation="augment" if augment else "rescale", flops=0, samples=32 * BATCHES)
    benchmark.pedantic(draw, rounds=5, iterations=1, warmup_rounds=1)
