"""``fastconv.preprocessing.image``: Keras' image loading and ImageDataGenerator."""

from fastconv.preprocessing import image

__all__ = ["image"]
