"""fastconv: compiled convolution kernels for Python, NHWC float32, behind a Keras-compatible API.

The notes' listings run with only the import changed::

    from fastconv import layers, models, optimizers      # for: from keras import layers, models, optimizers
    import fastconv as keras                             # for: keras.Input, keras.Model, keras.layers, ...

Kernels directly::

    backend = fastconv.get_backend()                     # "cython" (default), "numba", "reference"
    y = backend.conv2d_forward(x_nhwc, kernel, bias, strides=(1, 1), padding="same")
    fastconv.set_conv_algorithm("winograd")              # or "gemm"; "auto" (default) picks per layer shape
"""

from fastconv.backends import available_backends, get_backend, set_backend, use_backend
from fastconv.backends.algorithms import conv_algorithm, set_conv_algorithm
from fastconv.backends.threads import set_num_threads
from fastconv import activations, applications, callbacks, datasets, initializers, layers, losses, metrics, models, optimizers, preprocessing, regularizers, utils
from fastconv import distribute
from fastconv.layers import Input
from fastconv.models import Model, Sequential
from fastconv._version import __version__
from fastconv.utils import clear_session
from fastconv.info import show_config

# Keras 3 keeps it in keras.utils; fastconv.utils sits below the image code, so the package puts it there.
utils.image_dataset_from_directory = preprocessing.image_dataset_from_directory

__all__ = [
    "Input", "Model", "Sequential", "activations", "applications", "available_backends", "callbacks", "clear_session", "conv_algorithm", "datasets", "distribute",
    "get_backend", "initializers", "layers", "losses", "metrics", "models", "optimizers", "preprocessing", "regularizers", "set_backend",
    "set_conv_algorithm", "set_num_threads", "show_config", "use_backend",
    "utils", "__version__",
]  # fmt: skip
