"""``fastconv.preprocessing``: Keras' image loading and ImageDataGenerator (``image``), and the second edition's
``image_dataset_from_directory`` (also ``fastconv.utils.image_dataset_from_directory``, where Keras 3 has it)."""

from fastconv.preprocessing import image
from fastconv.preprocessing.image_dataset import ImageDataset, image_dataset_from_directory

__all__ = ["ImageDataset", "image", "image_dataset_from_directory"]
