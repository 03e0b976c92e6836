"""fit and train_on_batch: the events callbacks see, in Keras' order (``fastconv.callbacks.CallbackList``); a NaN loss
that stops training with the weights before it; arguments honoured or refused, never coerced or ignored."""

import numpy as np
import pytest

from builders import conv_classifier, labelled_images
from fastconv import callbacks, layers, models, optimizers
from fastconv.utils import to_categorical


pytestmark = pytest.mark.usefixtures("fresh_names")


def compiled_model():
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


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
    x, y = labelled_images()
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

    x, y = labelled_images()
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
    x, y = labelled_images()
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


# --- a NaN or infinite loss ----------------------------------------------------------------


def poison(model):
    """Make the first layer's kernel NaN from the second step on, as a diverging run would."""
    layer = model.layers[0]
    original = layer.forward
    calls = {"count": 0}

    def forward(x, training=False, logits=False):
        calls["count"] += 1
        if calls["count"] == 2:
            layer.kernel.value[...] = np.nan
        return original(x, training, logits)

    layer.forward = forward


@pytest.mark.parametrize(
    "loss, activation, units, labels",
    [
        ("categorical_crossentropy", "softmax", 3, "one-hot"),
        ("sparse_categorical_crossentropy", "softmax", 3, "sparse"),
        ("binary_crossentropy", "sigmoid", 1, "binary"),
        ("mse", None, 3, "one-hot"),
        ("categorical_crossentropy", None, 3, "one-hot"),  # not fused: the clipped general path
    ],
)
def test_a_nan_loss_stops_fit_naming_epoch_and_step_with_the_weights_before_it(loss, activation, units, labels):
    x, y = labelled_images()
    targets = {"one-hot": to_categorical(y, 3), "sparse": y, "binary": (y > 0).astype(np.float32)}[labels]
    model = conv_classifier(activation, units)
    model.compile(optimizer=optimizers.SGD(0.01), loss=loss)
    poison(model)
    seen = {}

    class Keep(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen["weights"] = [w.copy() for w in self.model.get_weights()[1:]]  # all but the poisoned kernel

    with pytest.raises(models.NonFiniteLoss, match=r"fit stopped at epoch 1/2, step 2/4: the loss is (nan|inf)") as error:
        model.fit(x, targets, epochs=2, batch_size=8, verbose=0, callbacks=[Keep()])
    assert error.value.step == 2
    for kept, now in zip(seen["weights"], model.get_weights()[1:]):
        np.testing.assert_array_equal(kept, now)  # the NaN step was not applied to any weight


def test_terminate_on_nan_ends_training_quietly(capsys):
    x, y = labelled_images()
    model = conv_classifier()
    model.compile(optimizer=optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    poison(model)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert history.epoch == [] and model.stop_training
    assert all(np.isfinite(w).all() for w in model.get_weights()[1:])


def test_train_on_batch_refuses_a_nan_step():
    x, y = labelled_images(8)
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.layers[-1].kernel.value[...] = np.inf
    before = model.get_weights()
    with pytest.raises(models.NonFiniteLoss, match="the step was not applied"):
        model.train_on_batch(x, y)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)


# --- arguments that used to be coerced or ignored -------------------------------------------


def test_sparse_labels_must_be_whole_numbers():
    x, y = labelled_images(8)
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects integer class labels, got labels such as 1.7"):
        model.fit(x, np.where(np.arange(8) == 3, 1.7, 1.0), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y batch of shape \(8,\) contains NaN"):
        model.evaluate(x, np.where(np.arange(8) == 0, np.nan, 1.0), verbose=0)
    model.fit(x, y.astype(np.float32), epochs=1, verbose=0)  # whole floats are labels, as in Keras


def test_batch_size_steps_and_validation_split_are_honoured_or_refused():
    x, y = labelled_images(8)
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be a positive int"):
            model.fit(x, y, batch_size=bad, verbose=0)
    with pytest.raises(ValueError, match=r"steps_per_epoch=2 is for generators"):
        model.fit(x, y, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match=r"steps=1 is for generators"):
        model.predict(x, steps=1)
    with pytest.raises(ValueError, match=r"validation_steps=1 is for generators"):
        model.fit(x, y, validation_data=(x, y), validation_steps=1, verbose=0)

    def batches():
        while True:
            yield x, y

    with pytest.raises(ValueError, match=r"validation_split needs arrays"):
        model.fit(batches(), steps_per_epoch=1, validation_split=0.5, verbose=0)


def test_numpy_integers_are_accepted_wherever_python_ints_are():
    x, y = labelled_images(8)
    model = models.Sequential(
        [
            layers.Conv2D(np.int64(4), (np.int32(3), np.int64(3)), strides=np.int64(1), input_shape=(6, 6, 1)),
            layers.MaxPooling2D(pool_size=np.int64(2)),
            layers.Flatten(),
            layers.Dense(np.int32(3), activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=np.int64(4), epochs=np.int64(2), verbose=0)
    assert len(history.epoch) == 2
    assert type(model.layers[0].kernel_size[0]) is int and type(model.layers[-1].units) is int


def test_history_and_the_epoch_line_come_after_the_callbacks_as_in_keras(capsys):
    """Keras 3 appends its History and progress bar after the user's callbacks: what a callback adds to an epoch's
    logs is recorded and shown."""

    class AddsLog(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = 1.5

    history = compiled_model().fit(*labelled_images(), epochs=1, verbose=2, callbacks=[AddsLog()])
    assert history.history["extra"] == [1.5]
    assert "extra: 1.5000" in capsys.readouterr().out
