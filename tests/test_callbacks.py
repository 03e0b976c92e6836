"""Keras' callbacks in fit: EarlyStopping and ModelCheckpoint (NaN values, filepaths naming what the fit will not
log), the progress bar and epoch lines."""

import io
import re

import numpy as np
import pytest

from builders import conv_classifier, labelled_images, small_classifier, tiny_data
from fastconv import callbacks, models, optimizers


pytestmark = pytest.mark.usefixtures("fresh_names")


class Scripted(callbacks.Callback):
    """Replaces the epoch's val_loss by a scripted value, before the callbacks after it see it."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_early_stopping_and_checkpoint_survive_a_nan_first_value(tmp_path):
    x, y = labelled_images(16)
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.h5"), monitor="val_loss", save_best_only=True)
    values = [float("nan"), 0.9, 0.8, 0.7]
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, validation_data=(x, y), callbacks=[Scripted(values), stopper, checkpoint])
    assert not model.stop_training and stopper.best == 0.7  # improvements after the NaN count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-2.h5", "best-3.h5", "best-4.h5"]


def test_checkpoint_filepath_naming_a_missing_log_fails_before_training():
    x, y = labelled_images(8)
    model = conv_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    checkpoint = callbacks.ModelCheckpoint("model-{epoch:02d}-{val_loss:.2f}.h5")
    with pytest.raises(ValueError, match=r"names \['val_loss'\], which this fit\(\) will not log; it can use \['epoch', 'loss'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)


def test_callbacks_early_stopping_and_checkpoint(tmp_path):
    x, y = tiny_data()
    model = small_classifier()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="categorical_crossentropy")  # nothing improves
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "epoch{epoch:02d}.h5"), monitor="val_loss")
    history = model.fit(x, y, epochs=10, batch_size=16, validation_data=(x, y), callbacks=[stopper, checkpoint], verbose=0)
    assert len(history.epoch) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch01.h5", "epoch02.h5", "epoch03.h5"]
    assert models.load_model(tmp_path / "epoch03.h5").count_params() == model.count_params()


def test_progress_bar_and_epoch_lines(capsys):
    x, y = tiny_data()
    model = small_classifier()
    model.fit(x, y, epochs=1, batch_size=16, verbose=1)
    out = capsys.readouterr().out
    assert re.search(r"Epoch 1/1\n4/4 \[==============================\] - \d+s \d+[mu]s/step - loss: \d\.\d{4} - accuracy: \d\.\d{4}\n", out), out
    model.fit(x, y, epochs=2, batch_size=16, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out
    assert re.search(r"Epoch 2/2\n4/4 - \d+s - \d+[mu]s/step - loss: \S+ - accuracy: \S+ - val_loss: \S+ - val_accuracy: \S+\n", out), out
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_redraws_on_a_terminal():
    stream = io.StringIO()
    stream.isatty = lambda: True
    bar = callbacks.Progbar(10, verbose=1, stream=stream)
    bar.update(3, {"loss": 0.5})
    bar.finish({"loss": 0.25})
    text = stream.getvalue()
    assert text.startswith("\r 3/10 [========>.....................] - ETA: ")
    assert "\r10/10 [==============================]" in text and text.endswith("- loss: 0.2500\n")
