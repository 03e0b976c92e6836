"""Datasets: ``fastconv.datasets.mnist.load_data()`` as in Keras, from data shipped inside the package."""

from fastconv.datasets import mnist

__all__ = ["mnist"]
