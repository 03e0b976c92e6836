"""Runnable reproductions of the notes' listings (``python -m fastconv.examples.mnist``)."""
