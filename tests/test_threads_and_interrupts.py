"""Training beside other work: a gradient query in another thread, a Ctrl-C in the middle of a step, concurrent
predictions.

A step is all or nothing: the weights, the optimizer's slots and its iteration count move together, so a run
that was interrupted and resumed equals the run that never was.
"""

import os
import signal
import threading

import numpy as np
import pytest

import fastconv
from builders import small_classifier, tiny_data
from fastconv import layers, models
from fastconv.backends.blas_threads import blas_thread_count
from fastconv.layers.base import input_gradients_only
from fastconv.models.gradients import gradient
from fastconv.utils import set_random_seed

STEPS, BATCH = 4, 16


def _train(model, x, y, steps=STEPS):
    for step in range(steps):
        model.train_on_batch(x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH])


def _trained_alone():
    set_random_seed(0)
    model = small_classifier()
    x, y = tiny_data()
    _train(model, x, y)
    return model.get_weights()


def test_a_gradient_query_in_another_thread_leaves_training_exactly_as_alone():
    expected = _trained_alone()
    set_random_seed(0)
    model = small_classifier()
    other = small_classifier()
    x, y = tiny_data()
    inside, release = threading.Event(), threading.Event()
    last = other.layers[-1]
    plain_backward = last.backward_call

    def held_backward(*args, **kwargs):  # holds the query inside its input-gradients-only block
        inside.set()
        release.wait(30)
        return plain_backward(*args, **kwargs)

    last.backward_call = held_backward
    query = threading.Thread(target=gradient, args=(other, x[:2]))
    query.start()
    try:
        assert inside.wait(30)
        _train(model, x, y)
    finally:
        release.set()
        query.join(30)
    assert model.optimizer.iterations == STEPS
    for trained, alone in zip(model.get_weights(), expected):
        np.testing.assert_array_equal(trained, alone)


def test_training_inside_input_gradients_only_raises_and_changes_nothing():
    set_random_seed(0)
    model = small_classifier()
    x, y = tiny_data()
    model.train_on_batch(x[:BATCH], y[:BATCH])
    before = model.get_weights()
    with input_gradients_only():
        with pytest.raises(RuntimeError, match=r"cannot train inside input_gradients_only\(\)"):
            model.train_on_batch(x[:BATCH], y[:BATCH])
        with pytest.raises(RuntimeError, match=r"cannot train inside input_gradients_only\(\)"):
            model.fit(x, y, batch_size=BATCH, verbose=0)
    assert model.optimizer.iterations == 1
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)
    model.train_on_batch(x[:BATCH], y[:BATCH])  # outside the block it trains again
    assert model.optimizer.iterations == 2


def _state(model):
    iterations, slots = model.optimizer.get_state(model.weights)
    return iterations, model.get_weights(), [slot for kind in slots for slot in kind]


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler (a KeyboardInterrupt) for the test: a process started in the background by a
    non-interactive shell (``nohup ... &``, some CI runners) inherits SIGINT ignored, and fastconv then rightly
    ignores the held Ctrl-C too."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_a_ctrl_c_during_a_step_of_fit_leaves_a_whole_step_that_resumes_exactly(optimizer, ctrl_c_raises):
    x, y = tiny_data()
    set_random_seed(0)
    alone = small_classifier()
    alone.compile(optimizer=optimizer, loss="categorical_crossentropy")
    _train(alone, x, y, steps=3)

    set_random_seed(0)
    model = small_classifier()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    plain_update, calls = model.optimizer.update, []

    def update_then_ctrl_c(*args):  # Ctrl-C after the first weight of the third step has moved
        plain_update(*args)
        calls.append(1)
        if len(calls) == 1 + 2 * len(model.trainable_weights):
            os.kill(os.getpid(), signal.SIGINT)

    model.optimizer.update = update_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    iterations, weights, slots = _state(model)
    expected_iterations, expected_weights, expected_slots = _state(alone)
    assert iterations == expected_iterations == 3
    for actual, expected in zip(weights + slots, expected_weights + expected_slots):
        np.testing.assert_array_equal(actual, expected)
    model.optimizer.update = plain_update
    _train(model, x[3 * BATCH :], y[3 * BATCH :], steps=1)  # resumed: the fourth step, as an uninterrupted run's
    _train(alone, x[3 * BATCH :], y[3 * BATCH :], steps=1)
    for actual, expected in zip(model.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(actual, expected)


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
