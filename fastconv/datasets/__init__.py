"""Datasets: ``fastconv.datasets.mnist.load_data()`` as in Keras, from data shipped inside the package."""

from fastconv.datasets import dogs_vs_cats, mnist

__all__ = ["dogs_vs_cats", "mnist"]
