"""``image_dataset_from_directory``: Keras 3's ``keras.utils.image_dataset_from_directory`` (the second edition's
chapter 8), on the ``flow_from_directory`` machinery: images listed from ``directory/<class>/**``, decoded by Pillow
and resized as Keras 3 resizes (``tf.image.resize``: half-pixel centres, no antialiasing; ``preprocessing.resize``)
in background threads one batch ahead, a bad file refused with the same ValueError naming it.

The dataset is finite and re-iterable: each ``for`` over it is one epoch of ``len(dataset)`` batches of (images
float32 (N, H, W, C) on the 0-255 scale, labels), reshuffled every epoch when ``shuffle``; ``fit``, ``evaluate`` and
``predict`` take it as they take arrays. ``validation_split`` with ``subset`` splits the files as Keras does (shuffled
once with ``np.random.RandomState(seed)``, the last fraction validating), so a seed picks the same files in both.
"""

import numpy as np

from fastconv import utils
from fastconv.preprocessing.image import DirectoryIterator, ImageDataGenerator, img_to_array, load_img
from fastconv.preprocessing.resize import INTERPOLATIONS, resize
from fastconv.shapes import positive_int

# label_mode -> the class_mode the decoding threads label with (binary labels are the int ones, as float32 (N, 1))
LABEL_MODES = {"int": "sparse", "categorical": "categorical", "binary": "sparse", None: None}
SUBSETS = ("training", "validation", "both")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
                                 verbose=True, **kwargs):  # fmt: skip
    """An :class:`ImageDataset` of ``directory``'s images, or ``(training, validation)`` with ``subset="both"``.

    Same arguments and defaults as Keras 3. ``labels``: ``"inferred"`` (the sub-folder names, sorted, or
    ``class_names``) or None (images alone); ``label_mode``: ``"int"`` (int32 (N,)), ``"categorical"`` (one-hot
    float32), ``"binary"`` (float32 (N, 1)) or None. ``batch_size=None`` yields single images as batches of one.
    """
    unsupported = sorted(set(kwargs) - {"pad_to_aspect_ratio", "data_format", "format"})
    if unsupported:
        raise TypeError(f"image_dataset_from_directory() got unexpected arguments {unsupported}")
    if kwargs.get("pad_to_aspect_ratio") or kwargs.get("data_format") not in (None, "channels_last") or kwargs.get("format") not in (None, "tf"):
        raise ValueError(f"image_dataset_from_directory: {kwargs} are not supported by fastconv")
    if labels not in ("inferred", None):
        raise ValueError(f"image_dataset_from_directory: labels must be 'inferred' or None, got {labels!r} (explicit label lists are not supported)")
    if labels is None:
        label_mode = None
    if label_mode not in LABEL_MODES:
        raise ValueError(f"image_dataset_from_directory: label_mode must be 'int', 'categorical', 'binary' or None, got {label_mode!r}")
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"image_dataset_from_directory: subset must be one of {SUBSETS} or None, got {subset!r}")
    if (validation_split is None) != (subset is None):
        raise ValueError("image_dataset_from_directory: give validation_split and subset together (or neither)")
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"image_dataset_from_directory: validation_split must be in (0, 1), got {validation_split}")
    if validation_split is not None and shuffle and seed is None:
        raise ValueError("image_dataset_from_directory: with validation_split and shuffle, pass a seed (so both subsets split alike)")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"image_dataset_from_directory: interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    files = _ImageFiles(directory, tuple(image_size), color_mode, class_names, LABEL_MODES[label_mode], seed, interpolation,
                        follow_links, crop_to_aspect_ratio)  # fmt: skip
    if label_mode == "binary" and len(files.class_names) != 2:
        raise ValueError(f"image_dataset_from_directory: label_mode='binary' needs 2 classes, {directory} has {files.class_names}")
    order = np.arange(files.samples)
    if shuffle:  # as Keras' index_directory: the files shuffled once, with this seed, before any split
        np.random.RandomState(int(utils.rng().integers(1_000_000)) if seed is None else seed).shuffle(order)
    subsets = {"all": order}
    if validation_split is not None:
        validation_count = int(validation_split * len(order))
        subsets = {"training": order[: len(order) - validation_count], "validation": order[len(order) - validation_count :]}
    made = {name: ImageDataset(files, indices, batch_size, shuffle, seed, label_mode) for name, indices in subsets.items()}
    if verbose:
        print(f"Found {files.samples} files belonging to {len(files.class_names)} classes.")
        for name in ("training", "validation"):
            if name in made and subset in (name, "both"):
                print(f"Using {len(made[name].indices)} files for {name}.")
    if subset == "both":
        return made["training"], made["validation"]
    return made[subset or "all"]


class _ImageFiles(DirectoryIterator):
    """The listing and the decoding threads of ``flow_from_directory``, with Keras 3's resize and
    ``crop_to_aspect_ratio``."""

    def __init__(self, directory, image_size, color_mode, class_names, class_mode, seed, interpolation, follow_links, crop):
        self.crop = bool(crop)
        super().__init__(ImageDataGenerator(), directory, image_size, color_mode, class_names, class_mode, batch_size=1,
                         shuffle=False, seed=seed, interpolation=interpolation, workers=2, verbose=False,
                         follow_links=follow_links)  # fmt: skip

    def _load(self, index, seed):
        image = load_img(self.filepaths[index], color_mode=self.color_mode)
        pixels = img_to_array(image, dtype=np.uint8 if image.mode in ("L", "RGB", "RGBA") else np.float32)
        height, width = self.target_size
        if self.crop:  # Keras 3's smart_resize: the largest centred window of the target's aspect ratio
            rows, cols = pixels.shape[:2]
            crop_height = max(min(rows, int(cols * height / width)), 1)
            crop_width = max(min(cols, int(rows * width / height)), 1)
            top, left = (rows - crop_height) // 2, (cols - crop_width) // 2
            pixels = pixels[top : top + crop_height, left : left + crop_width]
        return resize(pixels, (height, width), self.interpolation)


class ImageDataset:
    """Batches of (images, labels) — or images alone — over a fixed list of files; one epoch per iteration."""

    def __init__(self, files, indices, batch_size, shuffle, seed, label_mode="int"):
        self.files, self.indices, self.label_mode = files, np.asarray(indices), label_mode
        self.batch_size = None if batch_size is None else positive_int(batch_size, "batch_size")
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed) if seed is not None else utils.rng()  # set_random_seed repeats it
        self.class_names = list(files.class_names)
        self.file_paths = [str(files.filepaths[i]) for i in self.indices]
        self._limit = None
        self.shard_rank, self.shard_count = 0, 1

    def __len__(self):
        batches = utils.shard_steps(len(self.indices), self.batch_size or 1, self.shard_count)
        return batches if self._limit is None else min(batches, self._limit)

    def sharded(self, rank, count, seed):
        """A copy giving process ``rank`` of ``count`` its share of each step's ``count * batch_size`` files
        (fastconv.distribute); every process shuffles with ``seed``, so the shares are disjoint."""
        if len(self.indices) < count:
            raise ValueError(f"{len(self.indices)} files cannot be shared by {count} processes")
        return self._copy(shard_rank=rank, shard_count=count, rng=np.random.default_rng(seed))

    def _copy(self, **changes):
        """This dataset with some attributes changed (its files and decoding threads shared)."""
        copy = ImageDataset.__new__(ImageDataset)
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def take(self, count):
        """The first ``count`` batches of each epoch, as a dataset of its own (``train_dataset.take(1)``)."""
        count = positive_int(count, "take(count)")
        return self._copy(_limit=count if self._limit is None else min(self._limit, count))

    def __iter__(self):
        order = self.rng.permutation(self.indices) if self.shuffle else self.indices
        step = self.batch_size or 1
        bounds = [utils.shard_bounds(len(order), step, self.shard_rank, self.shard_count, number) for number in range(len(self))]
        batches = [order[first:last] for first, last in bounds]
        pending = None
        for number, indices in enumerate(batches):
            # the next batch decodes in the background while this one is used
            current = pending if pending is not None else self.files.prefetcher.submit(self.files.batch, indices)
            pending = self.files.prefetcher.submit(self.files.batch, batches[number + 1]) if number + 1 < len(batches) else None
            batch = current.result()
            yield self._typed(batch)

    def _typed(self, batch):
        """Keras 3's types: int labels int32, binary labels (N, 1); a batch size of None yields single images."""
        images, labels = (batch, None) if self.files.class_mode is None else batch
        if self.batch_size is None:
            images = images[0]
            labels = None if labels is None else labels[0]
        if labels is None:
            return images
        if self.label_mode == "int":
            labels = labels.astype(np.int32)
        elif self.label_mode == "binary":
            labels = labels.astype(np.float32).reshape(*labels.shape, 1)
        return images, labels

    def __repr__(self):
        return f"<ImageDataset: {len(self.indices)} files, {len(self)} batches of {self.batch_size}, classes {self.class_names}>"

