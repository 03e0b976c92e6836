"""Images as Keras' ``keras.preprocessing.image``: loading, conversion, and ImageDataGenerator.

Decoding and warping use Pillow. Each random augmentation (rotation, shifts,
shear, zoom) is composed into one affine matrix and applied as one Pillow
warp; ``fill_mode`` is obtained by padding the source with NumPy's matching
mode (``nearest`` = edge, ``reflect`` = symmetric, ``wrap``) just as far as the
warp reaches, or by Pillow's fill colour (``constant``). Batches from
directories are decoded by background threads, one batch ahead.
"""

import math
import os
import struct
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastconv import utils
from fastconv.shapes import positive_int

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
_RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_COLOR_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}
_PAD_MODES = {"nearest": "edge", "reflect": "symmetric", "wrap": "wrap"}


def _check_target_size(target_size):
    if target_size is None:
        return None
    size = tuple(target_size) if isinstance(target_size, (tuple, list)) else None
    if size is None or len(size) != 2:
        raise ValueError(f"target_size must be (height, width) with positive ints, got {target_size!r}")
    return tuple(positive_int(d, "target_size") for d in size)


_WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # 16- and 32-bit integer grayscale


def _convert(image, color_mode):
    """``image`` in ``color_mode``'s Pillow mode.

    Wide grayscale (16-bit PNGs) keeps its range in grayscale mode, as Keras does; for rgb and rgba
    it is scaled to 8 bits (value / 257, rounded: 65535 -> 255), where Pillow's own conversion would
    clip every value above 255 to white.
    """
    mode = _COLOR_MODES[color_mode]
    if image.mode in _WIDE_GRAY_MODES:
        if color_mode == "grayscale":
            return image.copy()
        levels = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(levels, mode="L").convert(mode)
    return image.convert(mode)


# What Pillow's decoders raise for a damaged or crafted file: OSError and SyntaxError mostly, but a bad header
# field is a plain ValueError in some (PPM's maxval, a PFM scale, a token too long), and others reach for
# struct.error, IndexError or ZeroDivisionError.
_DECODING_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError,
                    ZeroDivisionError, struct.error, Image.DecompressionBombError)  # fmt: skip


def load_img(path, grayscale=False, color_mode="rgb", target_size=None, interpolation="nearest"):
    """A PIL image from ``path``, converted to ``color_mode`` and resized to ``target_size`` = (height, width).

    A missing file raises FileNotFoundError; a file Pillow cannot decode, or one larger than Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), raises ValueError naming it.
    16-bit grayscale images keep their range in grayscale mode (as Keras) and are scaled to
    8 bits in rgb/rgba mode.
    """
    color_mode = "grayscale" if grayscale else color_mode
    if color_mode not in _COLOR_MODES:
        raise ValueError(f"color_mode must be one of {sorted(_COLOR_MODES)}, got {color_mode!r}")
    if interpolation not in _RESAMPLING:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLING)}, got {interpolation!r}")
    target_size = _check_target_size(target_size)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as opened:
            image = _convert(opened, color_mode)
    except _DECODING_ERRORS as error:
        raise ValueError(f"cannot decode image {path}: {error}") from None
    if target_size is not None and image.size != (target_size[1], target_size[0]):
        image = image.resize((target_size[1], target_size[0]), _RESAMPLING[interpolation])
    return image


def img_to_array(img, dtype="float32"):
    """(height, width, channels) array of a PIL image (grayscale gets one channel)."""
    array = np.asarray(img, dtype=dtype)
    return array[:, :, None] if array.ndim == 2 else array


def array_to_img(x, scale=True):
    """A PIL image from a (height, width, 1|3|4) array; ``scale`` maps its range onto 0-255 first."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"array_to_img expects (height, width, 1, 3 or 4 channels), got shape {x.shape}")
    if scale:
        x = x - x.min()
        peak = x.max()
        x = x / peak * 255 if peak > 0 else x
    pixels = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def affine_warp(image, matrix, fill_mode="nearest", cval=0.0):
    """Warp an (H, W, C) array: output pixel (row, col) takes input (row', col', 1) = matrix @ (row, col, 1).

    uint8 RGB/RGBA/gray images are warped in one Pillow call; anything else channel by channel
    as 32-bit float images. Bilinear sampling, as Keras' default (order 1).
    """
    if fill_mode not in (*_PAD_MODES, "constant"):
        raise ValueError(f"fill_mode must be 'nearest', 'constant', 'reflect' or 'wrap', got {fill_mode!r}")
    height, width = image.shape[:2]
    pad_top = pad_bottom = pad_left = pad_right = 0
    if fill_mode in _PAD_MODES:
        # How far outside the image the warp reaches, from the four corners (+2 for bilinear neighbours).
        corners = matrix[:2, :2] @ np.array([[0, 0, height - 1, height - 1], [0, width - 1, 0, width - 1]]) + matrix[:2, 2:]
        pad_top, pad_left = (int(max(0, math.ceil(-corners[i].min()) + 2)) for i in (0, 1))
        pad_bottom = int(max(0, math.ceil(corners[0].max() - (height - 1)) + 2))
        pad_right = int(max(0, math.ceil(corners[1].max() - (width - 1)) + 2))
        image = np.pad(image, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode=_PAD_MODES[fill_mode])
    # Pillow maps output (x, y) = (col, row) to input (a x + b y + c, d x + e y + f).
    coefficients = (matrix[1, 1], matrix[1, 0], matrix[1, 2] + pad_left, matrix[0, 1], matrix[0, 0], matrix[0, 2] + pad_top)
    warp = dict(resample=Image.Resampling.BILINEAR)
    if image.dtype == np.uint8 and image.shape[2] in (1, 3, 4):
        source = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        fill = int(round(cval)) if source.mode == "L" else (int(round(cval)),) * image.shape[2]
        warped = np.asarray(source.transform((width, height), Image.Transform.AFFINE, coefficients, fillcolor=fill, **warp))
        return warped[:, :, None] if warped.ndim == 2 else warped
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32), mode="F").transform(
            (width, height), Image.Transform.AFFINE, coefficients, fillcolor=float(cval), **warp))
        for c in range(image.shape[2])
    ]  # fmt: skip
    return np.stack(channels, axis=2).astype(image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32)


class ImageDataGenerator:
    """Keras' ImageDataGenerator: rescaling and random augmentation, fed by ``flow`` or ``flow_from_directory``.

    ``rotation_range`` and ``shear_range`` in degrees; shift ranges as fractions of the size (or pixels
    when ≥ 1); ``zoom_range`` a float z (zoom in [1 - z, 1 + z]) or a pair.
    """

    def __init__(self, rescale=None, rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0, shear_range=0.0,
                 zoom_range=0.0, horizontal_flip=False, vertical_flip=False, fill_mode="nearest", cval=0.0,
                 preprocessing_function=None, dtype="float32"):  # fmt: skip
        if fill_mode not in (*_PAD_MODES, "constant"):
            raise ValueError(f"fill_mode must be 'nearest', 'constant', 'reflect' or 'wrap', got {fill_mode!r}")
        if np.isscalar(zoom_range):
            zoom_range = (1 - zoom_range, 1 + zoom_range)
        if len(zoom_range) != 2 or min(zoom_range) <= 0:
            raise ValueError(f"zoom_range must be a float or a pair of positive floats, got {zoom_range!r}")
        self.rescale = rescale
        self.rotation_range, self.shear_range = float(rotation_range), float(shear_range)
        self.width_shift_range, self.height_shift_range = float(width_shift_range), float(height_shift_range)
        self.zoom_range = tuple(float(z) for z in zoom_range)
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.fill_mode, self.cval = fill_mode, cval
        self.preprocessing_function = preprocessing_function
        self.dtype = dtype

    @property
    def augments(self):
        return bool(self.rotation_range or self.width_shift_range or self.height_shift_range or self.shear_range
                    or self.zoom_range != (1.0, 1.0))  # fmt: skip

    def random_matrix(self, height, width, rng):
        """One random affine map (3x3, on (row, col, 1)) about the image centre, as Keras composes it."""
        theta = np.deg2rad(rng.uniform(-self.rotation_range, self.rotation_range)) if self.rotation_range else 0.0
        shift_rows = rng.uniform(-self.height_shift_range, self.height_shift_range) if self.height_shift_range else 0.0
        shift_cols = rng.uniform(-self.width_shift_range, self.width_shift_range) if self.width_shift_range else 0.0
        shift_rows *= height if abs(shift_rows) < 1 and self.height_shift_range < 1 else 1
        shift_cols *= width if abs(shift_cols) < 1 and self.width_shift_range < 1 else 1
        shear = np.deg2rad(rng.uniform(-self.shear_range, self.shear_range)) if self.shear_range else 0.0
        zoom_rows, zoom_cols = rng.uniform(*self.zoom_range, 2) if self.zoom_range != (1.0, 1.0) else (1.0, 1.0)
        rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        shift = np.array([[1, 0, shift_rows], [0, 1, shift_cols], [0, 0, 1]])
        shearing = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        zoom = np.array([[zoom_rows, 0, 0], [0, zoom_cols, 0], [0, 0, 1]])
        centre = np.array([[1, 0, height / 2 - 0.5], [0, 1, width / 2 - 0.5], [0, 0, 1]])
        back = np.array([[1, 0, -(height / 2 - 0.5)], [0, 1, -(width / 2 - 0.5)], [0, 0, 1]])
        return centre @ rotation @ shift @ shearing @ zoom @ back

    def random_transform(self, x, seed=None, rng=None):
        """One randomly augmented copy of an (H, W, C) image (uint8 or float)."""
        rng = rng or np.random.default_rng(seed)
        if self.augments:
            x = affine_warp(x, self.random_matrix(x.shape[0], x.shape[1], rng), self.fill_mode, self.cval)
        if self.horizontal_flip and rng.random() < 0.5:
            x = x[:, ::-1]
        if self.vertical_flip and rng.random() < 0.5:
            x = x[::-1]
        return x

    def standardize(self, x):
        """Rescale (and the user's preprocessing function), as float32."""
        x = np.asarray(x, dtype=self.dtype)
        if self.preprocessing_function is not None:
            x = self.preprocessing_function(x)
        if self.rescale:
            x = x * np.asarray(self.rescale, dtype=self.dtype)
        return x

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None):
        """Endless batches of augmented copies of the (N, H, W, C) array ``x`` (with ``y``)."""
        return NumpyArrayIterator(self, x, y, batch_size, shuffle, seed)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None, class_mode="categorical",
                            batch_size=32, shuffle=True, seed=None, follow_links=False, interpolation="nearest", workers=2,
                            verbose=True, on_error="raise"):  # fmt: skip
        """Endless batches from ``directory/<class>/**/<image>``; classes are the sorted sub-folder names.

        ``on_error``: what a file that cannot be decoded does. ``"raise"`` (the default) raises a
        ValueError naming it, once, and the next batch goes on after it; ``"skip"`` warns naming it
        and fills its place in the batch from the images that follow (not in Keras).
        """
        return DirectoryIterator(self, directory, target_size, color_mode, classes, class_mode, batch_size, shuffle, seed,
                                 interpolation, workers, verbose, follow_links=follow_links, on_error=on_error)  # fmt: skip


class Iterator:
    """Endless, reshuffled each epoch; also a Sequence: ``len()`` batches, ``it[i]`` is batch i of this epoch."""

    def __init__(self, count, batch_size, shuffle, seed):
        self.n, self.batch_size, self.shuffle = count, positive_int(batch_size, "batch_size"), shuffle
        self.rng = np.random.default_rng(seed)
        self.order_rng = self.rng  # the epochs' orders: a generator of their own once sharded
        self.shard_rank, self.shard_count = 0, 1
        self.batch_index = 0
        self.epoch_order = self._order()

    def _order(self):
        return self.order_rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def __len__(self):
        return utils.shard_steps(self.n, self.batch_size, self.shard_count)

    def indices(self, index):
        first, last = utils.shard_bounds(self.n, self.batch_size, self.shard_rank, self.shard_count, index)
        return self.epoch_order[first:last]

    def sharded(self, rank, count, seed):
        """This iterator, changed to give process ``rank`` of ``count`` its share of each step's ``count *
        batch_size`` samples (fastconv.distribute): the epochs' orders come from ``seed``, the same on every process,
        and the augmentations from ``seed`` and ``rank``. Starts a new epoch."""
        if self.n < count:
            raise ValueError(f"{self.n} samples cannot be shared by {count} processes")
        self.shard_rank, self.shard_count = rank, count
        self.order_rng, self.rng = np.random.default_rng(seed), np.random.default_rng([seed, rank])
        self.batch_index, self.epoch_order = 0, self._order()
        return self

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range: this iterator has {len(self)} batches")
        return self.batch(self.indices(index))

    def __iter__(self):
        return self

    def __next__(self):
        batch = self[self.batch_index]
        self._advance()
        return batch

    def _advance(self):
        self.batch_index += 1
        if self.batch_index >= len(self):
            self.batch_index = 0
            self.epoch_order = self._order()

    def batch(self, indices):
        raise NotImplementedError


class NumpyArrayIterator(Iterator):
    def __init__(self, generator, x, y, batch_size, shuffle, seed):
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"flow expects x of shape (samples, height, width, channels), got {x.shape}")
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.generator, self.x, self.y = generator, x, None if y is None else np.asarray(y)
        super().__init__(len(x), batch_size, shuffle, seed)

    def batch(self, indices):
        images = np.stack([self.generator.standardize(self.generator.random_transform(self.x[i], rng=self.rng)) for i in indices])
        return images if self.y is None else (images, self.y[indices])


class _Failure:
    """An image that could not be loaded, and why (kept in place of the image by the decoding threads)."""

    def __init__(self, index, error):
        self.index, self.error = index, error


def _shutdown(*executors):
    for executor in executors:
        executor.shutdown(wait=False, cancel_futures=True)


def _folder_identity(path):
    """What makes two paths one folder: (device, inode) of what they resolve to; None if it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _image_files(folder, follow_links, not_followed=frozenset()):
    """The images below ``folder``, sub-folders included, in Keras' order (folders sorted, then names).

    With ``follow_links``, each real folder is visited once (a link back up, a loop, lists nothing again), and
    links into the folders of ``not_followed`` (the data directory, the other classes' folders) are not followed:
    their images would be listed again, under this class's label.
    """
    visited = set(not_followed) | {_folder_identity(folder)}
    walked = []
    for root, folders, files in os.walk(folder, followlinks=follow_links):
        if follow_links:
            kept = []
            for name in sorted(folders):
                identity = _folder_identity(Path(root) / name)
                if identity is not None and identity not in visited:
                    visited.add(identity)
                    kept.append(name)
            folders[:] = kept  # os.walk descends into these only
        walked.append((root, files))
    for root, files in sorted(walked, key=lambda entry: entry[0]):
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield Path(root) / name


class DirectoryIterator(Iterator):
    """Images of ``directory/<class>/`` (and its sub-folders), decoded by background threads.

    A file that cannot be decoded raises ValueError naming it when its batch is read (once: the
    next batch goes on after it), or with ``on_error="skip"`` is replaced by the next images.
    ``close()`` (or ``with``, or dropping the iterator) ends its threads.
    """

    def __init__(self, generator, directory, target_size, color_mode, classes, class_mode, batch_size, shuffle, seed,
                 interpolation, workers, verbose, follow_links=False, on_error="raise"):  # fmt: skip
        if class_mode not in ("binary", "categorical", "sparse", None):
            raise ValueError(f"class_mode must be 'binary', 'categorical', 'sparse' or None, got {class_mode!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if color_mode not in _COLOR_MODES:
            raise ValueError(f"color_mode must be one of {sorted(_COLOR_MODES)}, got {color_mode!r}")
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"image directory {directory} does not exist")
        self.directory = directory
        self.target_size = _check_target_size(target_size)
        if self.target_size is None:
            raise ValueError("flow_from_directory needs a target_size (height, width)")
        self.class_names = list(classes) if classes else sorted(p.name for p in directory.iterdir() if p.is_dir())
        if class_mode == "binary" and len(self.class_names) != 2:
            raise ValueError(f"class_mode='binary' needs 2 class folders, {directory} has {self.class_names}")
        self.class_indices = {name: index for index, name in enumerate(self.class_names)}
        self.filepaths, labels = [], []
        class_folders = {name: _folder_identity(directory / name) for name in self.class_names}
        for name in self.class_names:
            folder = directory / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder {folder} does not exist")
            not_followed = {_folder_identity(directory)} | {identity for other, identity in class_folders.items() if other != name}
            for path in _image_files(folder, follow_links, not_followed):
                self.filepaths.append(path)
                labels.append(self.class_indices[name])
        self.classes = np.array(labels, dtype=np.int64)
        self.samples = len(self.filepaths)
        if verbose:
            print(f"Found {len(self.filepaths)} images belonging to {len(self.class_names)} classes.")
        if not self.filepaths:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {directory}")
        self.generator, self.color_mode, self.class_mode, self.interpolation = generator, color_mode, class_mode, interpolation
        self.on_error = on_error
        self.skipped = set()  # indices of the files that could not be decoded (on_error="skip")
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fastconv-images")
        self.prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastconv-prefetch")
        self._close_threads = weakref.finalize(self, _shutdown, self.prefetcher, self.pool)
        self._pending = None
        super().__init__(len(self.filepaths), batch_size, shuffle, seed)

    # --- threads --------------------------------------------------------------

    def sharded(self, rank, count, seed):
        """:meth:`Iterator.sharded`, dropping the batch decoding in the background for the old order."""
        self._pending = None
        return super().sharded(rank, count, seed)

    def close(self):
        """End the decoding threads (also done when the iterator is collected); later ``next()`` raises."""
        self._pending = None
        self._close_threads()

    @property
    def closed(self):
        return not self._close_threads.alive

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # --- decoding -------------------------------------------------------------

    def _load(self, index, seed):
        image = load_img(self.filepaths[index], color_mode=self.color_mode, target_size=self.target_size,
                         interpolation=self.interpolation)  # fmt: skip
        # 8-bit images warp as uint8 in one Pillow call; wide ones (16-bit grayscale) keep their values as float32.
        image = img_to_array(image, dtype=np.uint8 if image.mode in ("L", "RGB", "RGBA") else np.float32)
        image = self.generator.random_transform(image, rng=np.random.default_rng(seed))
        return self.generator.standardize(image)

    def _load_or_failure(self, index, seed):
        if index in self.skipped:  # known bad (on_error="skip"): not decoded again
            return _Failure(index, None)
        try:
            return self._load(index, seed)
        except (ValueError, OSError) as error:  # undecodable, too large, or gone since the listing
            return _Failure(index, error)

    def _replacements(self, count, used, after):
        """Up to ``count`` indices of not-yet-skipped images that follow ``after`` in this epoch's order."""
        order = [int(i) for i in self.epoch_order]
        start = order.index(after) + 1 if after in order else 0
        return [i for i in order[start:] + order[:start] if i not in self.skipped and i not in used][:count]

    def batch(self, indices, seeds=None):
        """Decode, augment and rescale the images at ``indices`` in the worker threads."""
        if self.closed:
            raise RuntimeError(f"this iterator over {self.directory} is closed")
        indices = [int(i) for i in indices]
        seeds = self.rng.integers(0, 2**63, len(indices)) if seeds is None else seeds
        used, images, wanted = [], [], indices
        while wanted:
            failures = []
            for index, result in zip(wanted, self.pool.map(self._load_or_failure, wanted, seeds[: len(wanted)])):
                if isinstance(result, _Failure):
                    failures.append(result)
                else:
                    used.append(index)
                    images.append(result)
            if failures and self.on_error == "raise":
                raise failures[0].error
            for failure in failures:
                if failure.index not in self.skipped:
                    self.skipped.add(failure.index)
                    warnings.warn(f"skipped an image that cannot be loaded: {failure.error}", stacklevel=2)
            wanted = self._replacements(len(failures), set(used), indices[-1]) if failures else []
            if failures and not wanted:
                raise ValueError(f"no image under {self.directory} could be loaded to fill the batch (skipped {len(self.skipped)} files)")
        images = np.stack(images)
        labels = self.classes[used]
        if self.class_mode is None:
            return images
        if self.class_mode == "binary":
            return images, labels.astype(np.float32)
        if self.class_mode == "sparse":
            return images, labels
        return images, np.eye(len(self.class_names), dtype=np.float32)[labels]

    def __next__(self):
        # Decode the next batch in the background while the caller trains on this one. The
        # iterator moves on before this batch is awaited, so a bad file raises once, not forever.
        if self.closed:
            raise RuntimeError(f"this iterator over {self.directory} is closed")
        pending, self._pending = self._pending, None
        indices = self.indices(self.batch_index)
        seeds = self.rng.integers(0, 2**63, len(indices)) if pending is None else None
        self._advance()
        following = self.indices(self.batch_index)
        following_seeds = self.rng.integers(0, 2**63, len(following))  # drawn here: the generator is not thread-safe
        self._pending = self.prefetcher.submit(self.batch, following, following_seeds)
        return pending.result() if pending is not None else self.batch(indices, seeds)
