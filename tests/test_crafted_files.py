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


def _entry(config, index):
    return config["config"]["layers"][index]


USERS_CLASSES = {
    "own-module": (lambda c: _entry(c, 1).update(module="mylayers"), r"layer 'conv2d': the class 'Conv2D' comes from module 'mylayers'"),
    "registered-layer": (lambda c: _entry(c, 1).update(module="mylayers", registered_name="Custom>Conv2D"),
                         r"layer 'conv2d': the class 'Conv2D' comes from module 'mylayers', registered as 'Custom>Conv2D'"),
    "registered-name-only": (lambda c: _entry(c, 3).update(registered_name="Custom>Conv2D"), r"layer 'conv2d_1': the class 'Conv2D' .* registered as 'Custom>Conv2D'"),
    "activation": (lambda c: _entry(c, 8)["config"].update(activation={"module": "my_acts", "class_name": "function", "config": "my_acts>softmax", "registered_name": "function"}),
                   r"layer 'dense_1': the function 'my_acts>softmax' comes from module 'my_acts'"),
    "activation-registered": (lambda c: _entry(c, 8)["config"].update(activation={"module": "my_acts", "class_name": "function", "config": "softmax", "registered_name": "my_acts>softmax"}),
                              r"layer 'dense_1': the function 'softmax' .* registered as 'my_acts>softmax'"),
    "initializer": (lambda c: _entry(c, 7)["config"]["kernel_initializer"].update(module="my_inits", registered_name="my_inits>GlorotUniform"),
                    r"layer 'dense': the class 'GlorotUniform' comes from module 'my_inits'"),
}  # fmt: skip


@pytest.mark.parametrize("change", sorted(USERS_CLASSES))
def test_a_users_own_class_or_function_is_refused_not_replaced_by_fastconvs(tmp_path, change):
    edit, message = USERS_CLASSES[change]
    path = edited_copy(tmp_path, "mnist_convnet.keras", edit)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value) and "user's own code" in str(error.value)


def test_a_users_own_optimizer_is_refused_and_compile_false_skips_it(tmp_path):
    def own_optimizer(config):
        config["compile_config"]["optimizer"].update(module="my_optimizers", registered_name="Custom>RMSprop")

    path = edited_copy(tmp_path, "mnist_convnet.keras", own_optimizer)
    with pytest.raises(ValueError, match=r"compile setting 'rm_sprop': the class 'RMSprop' comes from module 'my_optimizers'") as error:
        models.load_model(path)
    assert str(path) in str(error.value)
    assert models.load_model(path, compile=False).optimizer is None
