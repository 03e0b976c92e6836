"""SGD, RMSprop and Adam against their formulas written out by hand."""

import numpy as np
import pytest

from fastconv import optimizers


class _OneWeight:
    """A stand-in layer holding one weight, for checking optimizer steps against their formulas."""

    trainable = True
    name = "w"


def _run_optimizer(optimizer, grads, start):
    from fastconv.layers.base import Weight

    weight = Weight(_OneWeight(), "kernel", np.array(start, dtype=np.float32))
    for grad in grads:
        weight.grad = np.array(grad, dtype=np.float32)
        optimizer.apply([weight])
    return weight.value.astype(np.float64)


GRADS = [[0.5, -1.0, 2.0], [0.1, -0.3, 1.5], [-0.2, 0.4, 1.0]]


START = [1.0, -2.0, 0.5]


def test_sgd_momentum_and_nesterov_formulas():
    lr, momentum = 0.1, 0.9
    w, v = np.array(START), np.zeros(3)
    w_nesterov, v_nesterov = np.array(START), np.zeros(3)
    for g in map(np.array, GRADS):
        v = momentum * v - lr * g
        w = w + v
        v_nesterov = momentum * v_nesterov - lr * g
        w_nesterov = w_nesterov + momentum * v_nesterov - lr * g
    np.testing.assert_allclose(_run_optimizer(optimizers.SGD(lr, momentum=momentum), GRADS, START), w, rtol=1e-6)
    np.testing.assert_allclose(_run_optimizer(optimizers.SGD(lr, momentum=momentum, nesterov=True), GRADS, START), w_nesterov, rtol=1e-6)
    np.testing.assert_allclose(_run_optimizer(optimizers.SGD(lr), GRADS, START), np.array(START) - lr * np.sum(GRADS, axis=0), rtol=1e-6)


def test_rmsprop_formula_and_old_lr_spelling():
    lr, rho, eps = 1e-3, 0.9, 1e-7
    w, mean_square = np.array(START), np.zeros(3)
    for g in map(np.array, GRADS):
        mean_square = rho * mean_square + (1 - rho) * g**2
        w = w - lr * g / np.sqrt(mean_square + eps)
    np.testing.assert_allclose(_run_optimizer(optimizers.RMSprop(), GRADS, START), w, rtol=1e-6)
    np.testing.assert_allclose(_run_optimizer(optimizers.RMSprop(lr=1e-3), GRADS, START), w, rtol=1e-6)
    assert optimizers.RMSprop(lr=1e-4).learning_rate == 1e-4


def test_adam_formula():
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7
    w, m, v = np.array(START), np.zeros(3), np.zeros(3)
    for t, g in enumerate(map(np.array, GRADS), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(_run_optimizer(optimizers.Adam(), GRADS, START), w, rtol=1e-6)


def test_get_state_gives_copies_and_set_state_takes_copies():
    """Neither the state handed out nor the arrays handed in stay shared with the optimizer."""
    from fastconv.layers.base import Weight

    weight = Weight(_OneWeight(), "kernel", np.array(START, dtype=np.float32))
    optimizer = optimizers.Adam()
    weight.grad = np.array(GRADS[0], dtype=np.float32)
    optimizer.apply([weight])
    iterations, slots = optimizer.get_state([weight])
    before = [np.array(slot) for kind in slots for slot in kind]
    for kind in slots:
        kind[0][...] = 7.0
    assert all(np.array_equal(a, b) for a, b in zip((s for kind in optimizer.get_state([weight])[1] for s in kind), before))
    given = [[np.ones(3, np.float32)], [np.ones(3, np.float32)]]
    optimizer.set_state([weight], iterations, given)
    given[0][0][...] = 9.0
    assert optimizer.get_state([weight])[1][0][0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "make, message",
    [(lambda: optimizers.SGD(momentum=float("nan")), r"SGD: momentum must be a finite number in \[0.0, 1.0\]"),
     (lambda: optimizers.SGD(momentum=0.9, nesterov="yes"), r"SGD: nesterov must be True or False"),
     (lambda: optimizers.RMSprop(rho=1.5), r"RMSprop: rho must be a finite number in \[0.0, 1.0\], got 1.5"),
     (lambda: optimizers.RMSprop(epsilon=-1e-7), r"RMSprop: epsilon must be a finite number"),
     (lambda: optimizers.Adam(beta_1=1.0), r"Adam: beta_1 must be a finite number in \[0.0, 1.0\), got 1.0"),
     (lambda: optimizers.Adam(epsilon=0), r"Adam: epsilon must be > 0")],
    ids=["sgd-nan-momentum", "sgd-nesterov-string", "rmsprop-rho", "rmsprop-epsilon", "adam-beta_1", "adam-epsilon"],
)  # fmt: skip
def test_settings_that_would_make_the_next_step_nan_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
