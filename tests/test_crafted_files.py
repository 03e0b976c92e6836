"""Model files from strangers: crafted graphs and classes, damaged bytes, bombs, state outside its domain.

Every such file is refused with a ValueError that names the file and what is wrong, before the model or the
optimizer changes, in bounded time and space; none loads as a different model.
"""

import contextlib
import signal

import pytest

from file_edits import edited_copy, set_inbound
from fastconv import models

FUNCTIONAL_FILES = ["functional_convnet.keras", "functional_convnet.keras3.h5", "functional_convnet.keras2.h5"]


@contextlib.contextmanager
def within_seconds(seconds):
    """Fail the test, instead of hanging the suite, when the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- crafted graphs and classes -------------------------------------------------------------


@pytest.mark.parametrize("source", FUNCTIONAL_FILES)
def test_a_graph_with_a_cycle_is_refused_naming_the_file_and_the_layers_in_it(tmp_path, source):
    def cycle(config):  # the first convolution takes its input from the second pool, which comes after it
        entries = config["config"]["layers"]
        set_inbound(entries[1], entries[4]["name"])

    path = edited_copy(tmp_path, source, cycle)
    with within_seconds(20), pytest.raises(ValueError, match=r"cycle: 'conv2d_7' -> 'max_pooling2d_6' -> 'conv2d_8' -> 'max_pooling2d_7' -> 'conv2d_7'") as error:
        models.load_model(path)
    assert str(path) in str(error.value)
