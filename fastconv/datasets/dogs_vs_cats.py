"""Listing 5.4: the notes' small cats-vs-dogs split, made from the Kaggle images.

``make_small_split(original_dir, base_dir)`` copies, per class, images 0-999 to
``train/``, 1000-1499 to ``validation/`` and 1500-1999 to ``test/``, each with
``cats/`` and ``dogs/`` sub-folders. The images are not shipped with fastconv.
"""

import shutil
from pathlib import Path

SPLITS = {"train": range(0, 1000), "validation": range(1000, 1500), "test": range(1500, 2000)}
# Listing 8.6 (the second edition): the same training and validation images, a test split twice as large.
SECOND_EDITION_SPLITS = {"train": range(0, 1000), "validation": range(1000, 1500), "test": range(1500, 2500)}
CLASSES = {"cats": "cat", "dogs": "dog"}


def make_small_split(original_dir, base_dir, splits=None):
    """Copy ``cat.<i>.jpg``/``dog.<i>.jpg`` into base_dir/<split>/<cats|dogs>/; returns base_dir as a Path.

    Refuses a non-empty ``base_dir``; a missing source image raises FileNotFoundError naming it.
    ``splits`` (name -> index range) defaults to the notes' 1000/500/500.
    """
    original_dir, base_dir = Path(original_dir), Path(base_dir)
    splits = SPLITS if splits is None else splits
    if not original_dir.is_dir():
        raise FileNotFoundError(f"original dataset directory {original_dir} does not exist")
    if base_dir.exists() and any(base_dir.iterdir()):
        raise FileExistsError(f"{base_dir} is not empty: make_small_split will not overwrite it")
    missing = [
        original_dir / f"{prefix}.{i}.jpg"
        for prefix in CLASSES.values()
        for indices in splits.values()
        for i in indices
        if not (original_dir / f"{prefix}.{i}.jpg").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{len(missing)} source images are missing, e.g. {missing[0]}")
    for split, indices in splits.items():
        for folder, prefix in CLASSES.items():
            target = base_dir / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for i in indices:
                shutil.copyfile(original_dir / f"{prefix}.{i}.jpg", target / f"{prefix}.{i}.jpg")
    return base_dir
