"""VGG16 (Simonyan & Zisserman, 2014) with Keras' exact layer names, shapes and weight layout.

    conv_base = VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))   # listing 5.16
    features = conv_base.predict(preprocess_input(images_0_255))                          # (N, 4, 4, 512)

Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (the 13 convolutions) or the full file
with the 1000-way head load layer by layer; see :func:`VGG16` for where they are looked for.
"""

from pathlib import Path

import numpy as np

from fastconv.applications.weights_files import find_weights_file
from fastconv.layers import Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, MaxPooling2D
from fastconv.layers.base import KerasTensor
from fastconv.layers.preprocessing import MEAN_PIXEL_BGR, CaffePreprocessing, caffe_preprocess
from fastconv.models import Model

__all__ = ["BLOCK_FILTERS", "MEAN_PIXEL_BGR", "VGG16", "WEIGHTS_FILE", "WEIGHTS_FILE_NO_TOP", "preprocess_input"]

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
WEIGHTS_FILE_NO_TOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Filters of the convolutions of each block; every convolution is 3x3, stride 1, 'same', ReLU.
BLOCK_FILTERS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
DEFAULT_SIZE, MIN_SIZE = 224, 32


def _input_shape(input_shape, include_top, weights):
    """Keras' ``_obtain_input_shape`` for channels_last: the head fixes 224x224x3; ImageNet weights need 3 channels;
    without the head and an ``input_shape`` the base takes images of any size, (None, None, 3)."""
    if input_shape is None:
        return (DEFAULT_SIZE, DEFAULT_SIZE, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"VGG16: input_shape must be (height, width, channels), got input_shape={input_shape}")
    if include_top and weights == "imagenet" and input_shape != (DEFAULT_SIZE, DEFAULT_SIZE, 3):
        raise ValueError(
            f"VGG16: with include_top=True and weights='imagenet', input_shape must be (224, 224, 3), got {input_shape}"
        )
    if weights == "imagenet" and input_shape[2] != 3:
        raise ValueError(f"VGG16: ImageNet weights take 3 input channels (RGB), got input_shape={input_shape}")
    if any(size is not None and size < MIN_SIZE for size in input_shape[:2]):
        raise ValueError(f"VGG16: input size must be at least {MIN_SIZE}x{MIN_SIZE}; got input_shape={input_shape}")
    return input_shape


def _weights_path(weights, include_top):
    if weights is None:
        return None
    if weights == "imagenet":
        return find_weights_file(WEIGHTS_FILE if include_top else WEIGHTS_FILE_NO_TOP, "VGG16")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16: weights must be None, 'imagenet' or the path of a weights file; {path} does not exist")
    return path


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000):
    """Keras' ``keras.applications.VGG16``, same arguments and defaults, as a functional ``Model`` named ``vgg16``.

    include_top: add ``flatten``, ``fc1`` (4096), ``fc2`` (4096) and ``predictions`` (``classes``, softmax).
    weights: ``None`` (Glorot-initialised), ``'imagenet'`` (Keras' HDF5 file from ``$FASTCONV_HOME/models`` or
    ``~/.keras/models``; never downloaded) or the path of a weights file in Keras' layout (loaded by layer order, as Keras does).
    input_shape: (H, W, 3), at least 32x32; default (224, 224, 3), or with ``include_top=False`` (None, None, 3):
    images of any size, the output's size following from what the model is called on (listing 8.23's base). With
    ``include_top=False`` the output is (None, H/32, W/32, 512) rounded down: (None, 4, 4, 512) at 150x150.
    pooling: without the head, ``None`` (4D output), ``'avg'`` or ``'max'`` (global pooling to (None, 512)).
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"VGG16: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"VGG16: with weights='imagenet' and include_top=True, classes must be 1000, got {classes}")
    if input_tensor is not None and not isinstance(input_tensor, KerasTensor):
        raise TypeError(f"VGG16: input_tensor must be a fastconv.Input(...) tensor, got {type(input_tensor).__name__}")
    shape = _input_shape(input_tensor.shape[1:] if input_tensor is not None else input_shape, include_top, weights)
    weights_path = _weights_path(weights, include_top)
    image = input_tensor if input_tensor is not None else Input(shape=shape)

    x = image
    for block, filters in enumerate(BLOCK_FILTERS, start=1):
        for index, count in enumerate(filters, start=1):
            x = Conv2D(count, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{index}")(x)
        x = MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    if include_top:
        x = Flatten(name="flatten")(x)
        x = Dense(4096, activation="relu", name="fc1")(x)
        x = Dense(4096, activation="relu", name="fc2")(x)
        x = Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = GlobalMaxPooling2D()(x)
    model = Model(image, x, name="vgg16")
    if weights_path is not None:
        model.load_weights(weights_path)
    return model


def preprocess_input(x, data_format=None):
    """Keras' VGG16 preprocessing ('caffe' mode): RGB -> BGR, minus the ImageNet mean pixel, no scaling.

    x: (..., 3) RGB values on the 0-255 scale (any real dtype), channels last. Returns a new float32 array;
    unlike Keras, ``x`` itself is left unchanged. This is what the ImageNet weights expect; the notes'
    ``rescale=1./255`` feeds them inputs 255 times smaller, without the mean removed. On a symbolic tensor (an
    ``Input`` or a layer's output: listing 8.23) it adds the step to the functional model
    (:class:`~fastconv.layers.CaffePreprocessing`) and returns its output tensor.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"preprocess_input: fastconv is channels_last only, got data_format={data_format!r}")
    if isinstance(x, KerasTensor):
        return CaffePreprocessing()(x)
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects RGB images with 3 channels last, got an array of shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"preprocess_input expects real pixel values, got dtype {x.dtype}")
    return caffe_preprocess(x)
