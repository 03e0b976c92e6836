"""Training resumed from a saved model equals the run that never stopped, bit for bit: 2 epochs, save, load, 1 more
is 3 epochs straight, with every optimizer's iterations and slots saved."""

import numpy as np
import pytest

import fastconv
from conftest import CUDA_SIMULATOR
from fastconv import layers, models, optimizers
from fastconv.utils import set_random_seed, to_categorical

not_under_simulator = pytest.mark.skipif(CUDA_SIMULATOR, reason="host-side test: runs in the ordinary suite")


def _resume_model():
    return models.Sequential(
        [
            layers.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1)),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(3, activation="softmax"),
        ]
    )


_OPTIMIZERS = {
    "adam": lambda: optimizers.Adam(learning_rate=0.01),
    "rmsprop": lambda: optimizers.RMSprop(learning_rate=0.01),
    "sgd-nesterov": lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
}


def _run(optimizer, tmp_path, through_a_file):
    """Train 2 epochs, then (through a saved and reloaded model, or straight on) a third."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((48, 8, 8, 1)).astype(np.float32)
    y = to_categorical(rng.integers(0, 3, 48), 3)
    fastconv.clear_session()
    set_random_seed(3)
    model = _resume_model()
    model.compile(optimizer=_OPTIMIZERS[optimizer](), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    if through_a_file:
        path = tmp_path / f"resume-{optimizer}.h5"
        model.save(path)
        model = models.load_model(path)
    set_random_seed(11)  # the same shuffling and dropout from here on (loading draws initial weights first)
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=16, verbose=0)
    return model


@not_under_simulator
@pytest.mark.parametrize("optimizer", sorted(_OPTIMIZERS))
def test_resuming_from_a_saved_model_equals_the_run_that_never_stopped(tmp_path, backend_name, optimizer):
    """2 epochs -> save -> load -> 1 epoch is 3 epochs straight, bit for bit (optimizer iterations and slots saved)."""
    with fastconv.use_backend(backend_name):
        straight = _run(optimizer, tmp_path, through_a_file=False)
        resumed = _run(optimizer, tmp_path, through_a_file=True)
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 9
    for index, (a, b) in enumerate(zip(straight.get_weights(), resumed.get_weights())):
        np.testing.assert_array_equal(a, b, err_msg=f"weight {index} differs after resuming ({optimizer}, {backend_name})")
