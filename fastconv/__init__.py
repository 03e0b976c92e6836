"""fastconv: compiled convolution kernels for Python, NHWC float32, Keras conventions.

>>> import fastconv
>>> fastconv.set_backend("numba")          # or "cython" (default), "reference"
>>> kernels = fastconv.get_backend()
>>> y = kernels.conv2d_forward(x_nhwc, kernel, bias, strides=(1, 1), padding="same")
"""

from fastconv.backends import available_backends, get_backend, set_backend, use_backend

__version__ = "0.1.0"
__all__ = ["available_backends", "get_backend", "set_backend", "use_backend", "__version__"]
