"""The training loop never goes on silently wrong: NaN losses, bad arguments, callbacks, threads."""

import threading

import numpy as np
import pytest

import fastconv
from fastconv import callbacks, layers, models, optimizers
from fastconv.backends.blas_threads import blas_thread_count
from fastconv.utils import set_random_seed, to_categorical


@pytest.fixture(autouse=True)
def fresh_names():
    fastconv.clear_session()
    set_random_seed(0)


def classifier(activation="softmax", units=3):
    return models.Sequential(
        [
            layers.Conv2D(4, (3, 3), activation="relu", input_shape=(6, 6, 1)),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(units, activation=activation),
        ]
    )


def data(n=32, classes=3):
    rng = np.random.default_rng(2)
    return rng.standard_normal((n, 6, 6, 1)).astype(np.float32), rng.integers(0, classes, n)


def poison(model):
    """Make the first layer's kernel NaN from the second step on, as a diverging run would."""
    layer = model.layers[0]
    original = layer.call
    calls = {"count": 0}

    def call(x, training):
        calls["count"] += 1
        if calls["count"] == 2:
            layer.kernel.value[...] = np.nan
        return original(x, training)

    layer.call = call


# --- 7. one rule for every loss ----------------------------------------------------------


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
    x, y = data()
    targets = {"one-hot": to_categorical(y, 3), "sparse": y, "binary": (y > 0).astype(np.float32)}[labels]
    model = classifier(activation, units)
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
    x, y = data()
    model = classifier()
    model.compile(optimizer=optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    poison(model)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert history.epoch == [] and model.stop_training
    assert all(np.isfinite(w).all() for w in model.get_weights()[1:])


def test_train_on_batch_refuses_a_nan_step():
    x, y = data(8)
    model = classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.layers[-1].kernel.value[...] = np.inf
    before = model.get_weights()
    with pytest.raises(models.NonFiniteLoss, match="the step was not applied"):
        model.train_on_batch(x, y)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)


# --- 10. arguments that used to be coerced or ignored -------------------------------------


def test_sparse_labels_must_be_whole_numbers():
    x, y = data(8)
    model = classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects integer class labels, got labels such as 1.7"):
        model.fit(x, np.where(np.arange(8) == 3, 1.7, 1.0), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y batch of shape \(8,\) contains NaN"):
        model.evaluate(x, np.where(np.arange(8) == 0, np.nan, 1.0), verbose=0)
    model.fit(x, y.astype(np.float32), epochs=1, verbose=0)  # whole floats are labels, as in Keras


def test_batch_size_steps_and_validation_split_are_honoured_or_refused():
    x, y = data(8)
    model = classifier()
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
    x, y = data(8)
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


# --- 13. threads ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_concurrent_predicts_leave_blas_threads_as_they_were_and_agree(backend_name):
    before = blas_thread_count()
    if before is None:
        pytest.skip("SciPy's BLAS does not report its thread count")
    with fastconv.use_backend(backend_name):
        model = models.Sequential([layers.Conv2D(16, (3, 3), activation="relu", input_shape=(28, 28, 1)), layers.Flatten(), layers.Dense(10)])
        x = np.random.default_rng(0).standard_normal((64, 28, 28, 1)).astype(np.float32)
        expected = model.predict(x, batch_size=8)
        results, errors = [], []

        def work():
            try:
                for _ in range(15):
                    results.append(model.predict(x, batch_size=8))
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert blas_thread_count() == before, "concurrent kernels left OpenBLAS at another thread count"
    assert len(results) == 45 and all(np.array_equal(r, expected) for r in results)


# --- 14. callbacks and NaN ----------------------------------------------------------------


class Scripted(callbacks.Callback):
    """Replaces the epoch's val_loss by a scripted value, before the callbacks after it see it."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_early_stopping_and_checkpoint_survive_a_nan_first_value(tmp_path):
    x, y = data(16)
    model = classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.h5"), monitor="val_loss", save_best_only=True)
    values = [float("nan"), 0.9, 0.8, 0.7]
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, validation_data=(x, y), callbacks=[Scripted(values), stopper, checkpoint])
    assert not model.stop_training and stopper.best == 0.7  # improvements after the NaN count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-2.h5", "best-3.h5", "best-4.h5"]


def test_checkpoint_filepath_naming_a_missing_log_fails_before_training():
    x, y = data(8)
    model = classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    checkpoint = callbacks.ModelCheckpoint("model-{epoch:02d}-{val_loss:.2f}.h5")
    with pytest.raises(ValueError, match=r"names \['val_loss'\], which this fit\(\) will not log; it can use \['epoch', 'loss'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
