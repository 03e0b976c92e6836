"""Pretrained networks in Keras' layout: ``from fastconv.applications import VGG16``.

Weights are never downloaded: ``weights='imagenet'`` looks for Keras' HDF5 file in
``$FASTCONV_HOME/models`` and then ``~/.keras/models`` (see :mod:`fastconv.applications.weights_files`).
"""

from fastconv.applications import vgg16
from fastconv.applications.vgg16 import VGG16

__all__ = ["VGG16", "vgg16"]
