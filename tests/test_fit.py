"""fit's arguments and the events its callbacks see, in Keras' order (``fastconv.callbacks.CallbackList``)."""

import numpy as np
import pytest

from fastconv import callbacks, layers, models


pytestmark = pytest.mark.usefixtures("fresh_names")


def compiled_model():
    model = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=32):
    rng = np.random.default_rng(5)
    return rng.standard_normal((n, 4, 4, 1)).astype(np.float32), rng.integers(0, 3, n)


class Recorder(callbacks.Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin", self.model is not None, dict(self.params)))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_callbacks_see_every_event_in_order_with_the_params_of_the_fit():
    x, y = data()
    recorder = Recorder()
    history = compiled_model().fit(x, y, batch_size=8, epochs=3, initial_epoch=1, validation_split=0.25, verbose=0,
                                   callbacks=[recorder])  # fmt: skip
    params = {"epochs": 3, "steps": 3, "verbose": 0, "metrics": ["loss", "accuracy", "val_loss", "val_accuracy"]}
    batch_logs = ["accuracy", "loss"]
    epoch_logs = ["accuracy", "loss", "val_accuracy", "val_loss"]
    expected = [("train_begin", True, params)]
    for epoch in (1, 2):  # 24 training samples of 32 in batches of 8; the last 8 validate
        expected += [("epoch_begin", epoch), *[("batch_end", batch, batch_logs) for batch in range(3)]]
        expected.append(("epoch_end", epoch, epoch_logs))
    assert recorder.events == [*expected, ("train_end",)]
    assert history.epoch == [1, 2] and sorted(history.history) == epoch_logs


def test_stop_training_set_by_a_callback_ends_fit_after_that_epoch():
    class StopAfterFirst(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    x, y = data()
    recorder = Recorder()
    history = compiled_model().fit(x, y, epochs=5, verbose=0, callbacks=[StopAfterFirst(), recorder])
    assert history.epoch == [0]
    assert recorder.events[-1] == ("train_end",)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"workers_count": 2}, TypeError, r"fit\(\) got unexpected arguments \['workers_count'\]"),
        ({"class_weight": {0: 1.0}}, ValueError, r"class_weight and sample_weight are not supported"),
        ({"validation_split": 0.5, "validation_data": "given"}, ValueError, r"give validation_split or validation_data, not both"),
        ({"validation_split": 1.5}, ValueError, r"validation_split must be in \(0, 1\), got 1.5"),
        ({"callbacks": ["history"]}, TypeError, r"callbacks must be fastconv.callbacks.Callback instances, got str"),
    ],
)
def test_fit_refuses_arguments_it_cannot_honour_before_training(arguments, error, message):
    x, y = data()
    model = compiled_model()
    recorder = Recorder()
    before = model.get_weights()
    arguments = dict(arguments)
    if arguments.get("validation_data") == "given":
        arguments["validation_data"] = (x, y)
    arguments["callbacks"] = [recorder, *arguments.get("callbacks", [])]
    with pytest.raises(error, match=message):
        model.fit(x, y, verbose=0, **arguments)
    assert recorder.events == [] and recorder.model is None  # refused before any callback was touched
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
