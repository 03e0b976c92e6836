"""Seeing what a convnet learns, the chapter's last two recipes as calls (PNG files through Pillow):

* :func:`filter_patterns` — listings 5.32-5.39: the input that maximises one filter's mean activation, found by
  gradient ascent from a grey image with noise, the gradient normalised, 40 steps; :func:`save_filter_patterns`
  writes a layer's grid of them;
* :func:`grad_cam` — listings 5.40-5.44: a class activation map, the conv layer's output weighted by the mean
  gradient of the class score per channel, through ReLU; :func:`save_grad_cam` lays it over the photo.

Intermediate activations (listings 5.25-5.31) are :func:`fastconv.plot.activations`. All of them rest on
:func:`fastconv.models.gradients.gradient`, on whichever backend is in use.
"""

from pathlib import Path

import numpy as np

from fastconv.callbacks import Progbar
from fastconv.models.atomic import atomic_path
from fastconv.models.gradients import flat_layers, gradient, layer_outputs, output_index
from fastconv.preprocessing.image import img_to_array, load_img

# --- filter patterns ----------------------------------------------------------------------------------------------


def _filter_count(model, layer_name):
    leaves = flat_layers(model)
    shape = leaves[output_index(model, leaves, layer_name)][1].output_shape
    if shape is None or len(shape) != 4:
        raise ValueError(f"model {model.name!r}: layer {layer_name!r} has output shape {shape}; filter patterns need a conv layer's (N, H, W, C)")
    return shape[3]


def filter_patterns(model, layer_name, filter_indices, size=None, steps=40, step=1.0, batch_size=16, seed=0, verbose=1):
    """The input patterns that most excite the given filters of ``layer_name``, as (len(filter_indices), H, W, C)
    uint8 images (listing 5.38's ``generate_pattern``, then listing 5.37's ``deprocess_image``).

    For each filter: start from ``uniform(0, 1) * 20 + 128`` noise, and ``steps`` times add ``step`` times the
    gradient of the filter's mean activation with respect to the image, divided by its root mean square (+ 1e-5).
    size: the image's side; default the model's input size (a model with a fixed input takes nothing else).
    batch_size filters are ascended together, one image each (samples do not interact, so each gets exactly the
    gradient it would get alone).
    """
    channels = _filter_count(model, layer_name)
    filter_indices = [int(index) for index in filter_indices]
    bad = [index for index in filter_indices if not 0 <= index < channels]
    if bad:
        raise ValueError(f"layer {layer_name!r} has {channels} filters; filter indices {bad} are out of range")
    height, width = (size, size) if size is not None else model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(f"model {model.name!r} takes any image size: pass size")
    rng = np.random.default_rng(seed)
    images = rng.random((len(filter_indices), height, width, model.input_shape[3])) * 20 + 128.0
    progbar = Progbar(steps * -(-len(filter_indices) // batch_size), verbose)
    done = 0
    for start in range(0, len(filter_indices), batch_size):
        chunk = filter_indices[start : start + batch_size]
        image = images[start : start + len(chunk)]
        for _ in range(steps):
            output, grad = gradient(model, image, of=layer_name, output_grad=lambda output: _channel_mean_grad(output, chunk))
            # A NaN activation has a zero gradient through ReLU: the output is checked too, not only the gradient.
            _check_finite(output[np.arange(len(chunk)), :, :, chunk], f"filter patterns of {layer_name!r}: the output of filters {chunk}")
            _check_finite(grad, f"filter patterns of {layer_name!r}: the gradient for filters {chunk}")
            rms = np.sqrt(np.mean(np.square(grad, dtype=np.float64), axis=(1, 2, 3), keepdims=True))
            image += grad / (rms + 1e-5) * step
            done += 1
            progbar.update(done, {})
    progbar.finish({})
    return np.stack([deprocess_image(image) for image in images])


def _channel_mean_grad(output, channel_per_sample):
    """d/d output of sum over samples of the mean of each sample's own channel: 1 / (H * W) there, 0 elsewhere."""
    seed = np.zeros_like(output)
    height, width = output.shape[1:3]
    seed[np.arange(len(channel_per_sample)), :, :, channel_per_sample] = 1.0 / (height * width)
    return seed


def deprocess_image(image):
    """Listing 5.37's ``deprocess_image``, the display of an image found by gradient ascent: centred, std 0.1 around 0.5, clipped, 0-255."""
    image = np.asarray(image, dtype=np.float64)
    _check_finite(image, "deprocess_image: the image")
    image = (image - image.mean()) / (image.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def pattern_grid(patterns, columns=8, margin=5):
    """Listing 5.39's grid: the (count, H, W, C) uint8 patterns in rows of ``columns``, black margins between."""
    patterns = np.asarray(patterns)
    count, height, width, channels = patterns.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * height + (rows - 1) * margin, columns * width + (columns - 1) * margin, channels), dtype=np.uint8)
    for index, pattern in enumerate(patterns):
        row, column = divmod(index, columns)
        top, left = row * (height + margin), column * (width + margin)
        grid[top : top + height, left : left + width] = pattern
    return grid


def save_filter_patterns(model, layer_name, path, filters=64, size=None, columns=8, **ascent):
    """Write the grid of the first ``filters`` filters' patterns of ``layer_name`` as a PNG; returns the path.

    Listing 5.39 draws 64 filters at size 64 for each of block1_conv1 ... block4_conv1 of VGG16. ``ascent`` goes to
    :func:`filter_patterns` (steps, step, batch_size, seed, verbose).
    """
    count = min(filters, _filter_count(model, layer_name))
    patterns = filter_patterns(model, layer_name, range(count), size=size, **ascent)
    return _save_png(pattern_grid(patterns, columns=min(columns, count)), path)


# --- class activation maps ----------------------------------------------------------------------------------------


def last_conv_layer(model):
    """The path of the last layer of ``model`` (nested models included) whose output is an image (N, h, w, channels)
    and that has weights: the layer Grad-CAM looks at by default (``'vgg16/block5_conv3'`` in listing 5.20's model)."""
    found = [path for path, layer in flat_layers(model) if layer.weights and layer.output_shape is not None and len(layer.output_shape) == 4]
    if not found:
        raise ValueError(f"model {model.name!r} has no conv layer (a layer with weights and an (N, h, w, channels) output)")
    return found[-1]


def grad_cam(model, image, conv_layer=None, class_index=None):
    """Grad-CAM of one image: returns ``(heatmap, class_index, score)``.

    image: (H, W, C), preprocessed as the model takes it. conv_layer: the name or path of a layer with an
    (N, h, w, channels) output (``'block5_conv3'``, or ``'vgg16/block5_conv3'``); default
    :func:`last_conv_layer`.
    class_index: the class whose score is explained; default the predicted class. With one sigmoid unit (cats vs
    dogs) class 1 is the unit's output p and class 0 is 1 - p, as ``flow_from_directory`` numbers the classes.
    heatmap: (h, w) float64 in [0, 1], the channels of ``conv_layer``'s output weighted by the spatial mean of the
    score's gradient, averaged, through ReLU and divided by its maximum (all zeros where nothing speaks for the class).
    """
    batch = np.asarray(image)[None]
    if batch.ndim != 4:
        raise ValueError(f"grad_cam takes one (H, W, C) image, got shape {np.shape(image)}")
    conv_layer = last_conv_layer(model) if conv_layer is None else conv_layer
    outputs = layer_outputs(model, batch, [conv_layer, _last(model)])
    features, scores = outputs[conv_layer], outputs[_last(model)][0]
    if features.ndim != 4:
        raise ValueError(f"grad_cam: layer {conv_layer!r} has output shape {features.shape}; it needs a conv layer's (N, h, w, channels)")
    _check_finite(features, f"grad_cam: layer {conv_layer!r}'s output for this image")
    _check_finite(scores, f"grad_cam: model {model.name!r}'s output for this image")
    class_index, sign, score = _class_score(scores, class_index, model.name)
    score_grad = np.zeros((1, len(scores)), dtype=np.float32)
    score_grad[0, class_index if len(scores) > 1 else 0] = sign
    _, grads = gradient(model, batch, wrt=conv_layer, output_grad=score_grad)
    _check_finite(grads, f"grad_cam: the class score's gradient at {conv_layer!r}")
    channel_weights = grads[0].astype(np.float64).mean(axis=(0, 1))
    heatmap = np.maximum((features[0].astype(np.float64) * channel_weights).mean(axis=-1), 0)
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else heatmap), class_index, score


def _last(model):
    return flat_layers(model)[-1][0]


def _class_score(scores, class_index, model_name):
    """(class_index, sign of the output's gradient, score) for a softmax row or a single sigmoid unit."""
    if scores.ndim != 1:
        raise ValueError(f"grad_cam: model {model_name!r} outputs shape {scores.shape} per sample; it needs class scores (classes,)")
    if len(scores) == 1:
        class_index = int(scores[0] >= 0.5) if class_index is None else class_index
        if class_index not in (0, 1):
            raise ValueError(f"grad_cam: model {model_name!r} has one sigmoid unit, so class_index is 0 or 1, got {class_index}")
        return class_index, 1.0 if class_index == 1 else -1.0, float(scores[0] if class_index == 1 else 1 - scores[0])
    class_index = int(np.argmax(scores)) if class_index is None else class_index
    if not 0 <= class_index < len(scores):
        raise ValueError(f"grad_cam: model {model_name!r} has {len(scores)} classes, got class_index {class_index}")
    return class_index, 1.0, float(scores[class_index])


def jet(values):
    """OpenCV's COLORMAP_JET (listing 5.44), for values in [0, 1]: (..., 3) uint8 RGB, blue (0) to red (1)."""
    values = np.asarray(values, dtype=np.float64)[..., None]
    centres = np.array([3.0, 2.0, 1.0])  # red, green, blue
    return (np.clip(1.5 - np.abs(4 * values - centres), 0, 1) * 255).astype(np.uint8)


def save_grad_cam(photo, heatmap, path, alpha=0.4):
    """Listing 5.44: the heatmap, resized to the photo (bilinear) and coloured by :func:`jet`, times ``alpha`` added
    to the photo (clipped to 255); written as a PNG. photo: a path, or an (H, W, 3) array of 0-255 values."""
    from PIL import Image

    if isinstance(photo, (str, Path)):
        photo = img_to_array(load_img(photo))  # a damaged file is a ValueError naming it
    photo = np.asarray(photo, dtype=np.float64)
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"save_grad_cam takes an (H, W, 3) photo, got shape {photo.shape}")
    heatmap = np.asarray(heatmap, dtype=np.float64)
    _check_finite(heatmap, "save_grad_cam: the heatmap")
    resized = Image.fromarray(heatmap.astype(np.float32)).resize((photo.shape[1], photo.shape[0]), Image.BILINEAR)
    colours = jet(np.clip(np.asarray(resized), 0, 1)).astype(np.float64)
    return _save_png(np.clip(colours * alpha + photo, 0, 255).astype(np.uint8), path)


def _check_finite(values, what):
    """A NaN or infinity would become an arbitrary grey or colour in a picture: refuse it, saying where it came from."""
    if not np.isfinite(values).all():
        raise ValueError(f"{what} contains NaN or infinity (do the model's weights?)")


def _save_png(pixels, path):
    from PIL import Image

    path = Path(path)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return path
