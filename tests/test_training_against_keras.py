"""fastconv trains as Keras 3 does: the same model, weights and batches, step after step, on each backend.

Keras 3 on TensorFlow (``pip install '.[bench]'``) runs the same builders in its own process
(tests/keras_files/train_with_keras.py). Each case takes ``STEPS`` optimizer steps; then every loss along the way,
and every weight at the end, must agree. Two float32 implementations that sum in different orders drift apart a
little with each step, so the weights are compared against two scales: the weight's own magnitude (``RTOL`` of it)
and how far training moved it (``TRAVEL_RTOL`` of that): a wrong gradient, learning rate, optimizer slot or
trainable flag moves a weight by a different amount altogether. Frozen weights must not move at all in either.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from conftest import relative_error

KERAS_FILES = Path(__file__).resolve().parent / "keras_files"
sys.path.insert(0, str(KERAS_FILES))
import make_keras_files as notes  # noqa: E402
import train_with_keras  # noqa: E402  (the builders, with fastconv as keras)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (pip install '.[bench]')")

STEPS = 8
BATCH = 8
RTOL = 1e-5  # of each weight tensor's largest magnitude, and of each loss
TRAVEL_RTOL = 1e-3  # of the largest distance training moved the tensor (2e-4 at most seen)


def _case(builder):
    """(initial weights, x, y): seeded weights as the Keras files' and STEPS batches of the builder's inputs."""
    model, input_shape, targets = train_with_keras.BUILDERS[builder](fastconv)
    rng = np.random.default_rng([notes.SEED, len(builder), 2])
    scale = 255.0 if builder == "vgg16_fine_tuning" else 1.0  # preprocess_input expects 0-255 pixels
    x = rng.uniform(0, scale, (STEPS, BATCH, *input_shape)).astype(np.float32)
    if targets == "binary":
        y = rng.integers(0, 2, (STEPS, BATCH, 1)).astype(np.float32)
    elif targets.startswith("onehot"):
        classes = int(targets.removeprefix("onehot"))
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, (STEPS, BATCH))]
    else:
        y = rng.integers(0, 10, (STEPS, BATCH)).astype(np.int64)
    return notes.seeded_weights(model, builder), x, y


@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory):
    """{builder: (initial weights, x, y, Keras' losses, Keras' final weights)}, Keras run once per builder."""
    folder = tmp_path_factory.mktemp("train_with_keras")
    cases, paths = {}, []
    for builder in train_with_keras.BUILDERS:
        weights, x, y = cases[builder] = _case(builder)
        np.savez(folder / f"{builder}.npz", builder=builder, x=x, y=y, **{f"weights_{index}": w for index, w in enumerate(weights)})
        paths += [str(folder / f"{builder}.npz"), str(folder / f"{builder}.result.npz")]
    done = subprocess.run([sys.executable, str(KERAS_FILES / "train_with_keras.py"), *paths], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {}
    for builder, (weights, x, y) in cases.items():
        with np.load(folder / f"{builder}.result.npz") as result:
            runs[builder] = (weights, x, y, result["loss"], [result[f"weights_{index}"] for index in range(len(weights))])
    return runs


@pytest.mark.parametrize("builder", list(train_with_keras.BUILDERS))
def test_every_step_and_weight_is_keras_own(keras_runs, builder, backend_name):
    weights, x, y, keras_losses, keras_weights = keras_runs[builder]
    with fastconv.use_backend(backend_name):
        fastconv.clear_session()
        losses, trained = train_with_keras.train(fastconv, builder, weights, x, y)
    assert relative_error(losses, keras_losses) <= RTOL, f"{builder}: losses {losses} against Keras' {keras_losses}"
    model = train_with_keras.BUILDERS[builder](fastconv)[0]
    names = [w.name for w in model.weights]
    for name, initial, ours, theirs in zip(names, weights, trained, keras_weights):
        travel = np.abs(theirs - initial).max()
        if travel == 0:  # frozen in Keras: frozen here too
            np.testing.assert_array_equal(ours, initial, err_msg=f"{builder}: {name} is frozen in Keras but moved")
            continue
        difference = np.abs(ours - theirs).max()
        assert difference <= RTOL * np.abs(theirs).max(), f"{builder}: {name} differs by {difference:.2e}, |w| {np.abs(theirs).max():.2e}"
        assert difference <= TRAVEL_RTOL * travel, f"{builder}: {name} differs by {difference:.2e}; training moved it {travel:.2e}"
