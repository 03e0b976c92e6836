"""Pictures of training (matplotlib, the optional ``[plot]`` extra): curves, activations, augmented samples.

* :func:`history` — listing 5.10's training/validation accuracy and loss, optionally smoothed as in
  listing 5.24 (exponential moving average);
* :func:`activations` — "visualizing what convnets learn": every channel of any layers for one image (filter
  patterns and class activation maps are :mod:`fastconv.visualize`);
* :func:`augmented_samples` — listing 5.12: augmented versions of one image.

Each writes a PNG to ``path`` and returns the path.
"""

from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("fastconv.plot needs matplotlib: pip install 'fastconv[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth_curve(points, factor=0.8):
    """Listing 5.24: each point becomes factor * previous smoothed point + (1 - factor) * itself."""
    smoothed = []
    for point in points:
        smoothed.append(smoothed[-1] * factor + point * (1 - factor) if smoothed else point)
    return smoothed


def history(history, path, smooth=None):
    """Accuracy and loss per epoch, training (dots) and validation (line), from a History or its dict."""
    plt = _pyplot()
    logs = getattr(history, "history", history)
    accuracy_key = next((key for key in ("acc", "accuracy") if key in logs), None)
    panels = [(accuracy_key, "accuracy")] if accuracy_key else []
    panels.append(("loss", "loss"))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels):
        for series, style, name in ((key, "bo", "Training"), (f"val_{key}", "b", "Validation")):
            if series not in logs:
                continue
            values = smooth_curve(logs[series], smooth) if smooth else logs[series]
            axis.plot(range(1, len(values) + 1), values, style, label=f"{name} {label}")
        axis.set_title(f"Training and validation {label}" + (f" (smoothed, {smooth})" if smooth else ""))
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _channel_image(channel):
    """Listing 5.25's display normalisation: centre, scale by the standard deviation, map to 0-255."""
    channel = channel - channel.mean()
    channel = channel / (channel.std() + 1e-5) * 64 + 128
    return np.clip(channel, 0, 255).astype(np.uint8)


def activations(model, image, layer_names, path, images_per_row=16):
    """Every channel of each named layer's output for one (H, W, C) image, one grid per layer (listings 5.25-5.31).

    layer_names: any layers of the model, by name or path (``'vgg16/block1_conv1'`` inside a nested model; see
    :mod:`fastconv.models.gradients`). An image layer's channels are drawn side by side, ``images_per_row`` to a
    row; a layer with a flat output (Flatten, Dense) as one strip of its units.
    """
    from fastconv.models.gradients import layer_outputs

    plt = _pyplot()
    outputs = layer_outputs(model, np.asarray(image)[None], list(layer_names))
    figure, axes = plt.subplots(len(layer_names), 1, figsize=(images_per_row, 2.2 * len(layer_names) * 2), squeeze=False)
    for axis, name in zip(axes[:, 0], layer_names):
        activation = outputs[name][0]
        if activation.ndim == 3:
            grid, title = _channel_grid(activation, images_per_row), f"{name}: {activation.shape[-1]} channels, {activation.shape[0]}x{activation.shape[1]}"
        else:
            grid, title = np.repeat(_channel_image(activation.reshape(1, -1)), 8, axis=0), f"{name}: {activation.size} units"
        axis.imshow(grid, aspect="auto", cmap="viridis")
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return Path(path)


def _channel_grid(activation, images_per_row):
    """The channels of one (h, w, channels) activation side by side, ``images_per_row`` to a row, as uint8."""
    height, width, channels = activation.shape
    rows = -(-channels // images_per_row)
    grid = np.zeros((height * rows, images_per_row * width), dtype=np.uint8)
    for channel in range(channels):
        row, col = divmod(channel, images_per_row)
        grid[row * height : (row + 1) * height, col * width : (col + 1) * width] = _channel_image(activation[:, :, channel])
    return grid


def augmented_samples(generator, image, path, count=4, seed=0):
    """Listing 5.12: ``count`` random augmentations of one (H, W, C) image by an ImageDataGenerator."""
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(1, count, figsize=(3 * count, 3), squeeze=False)
    for axis in axes[0]:
        sample = generator.random_transform(np.asarray(image), rng=rng)
        axis.imshow(np.clip(np.asarray(sample, dtype=np.float32) / (255.0 if np.asarray(image).max() > 1 else 1.0), 0, 1))
        axis.axis("off")
    figure.suptitle("augmented samples")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
