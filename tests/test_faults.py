"""Faults a user meets by accident or by someone else's design (issue 10).

* NaN and ±inf through every kernel of every backend, as the float64 reference has them;
* a model file killed half-way through its save (SIGKILL in a subprocess, repeated);
* crafted HDF5 files that point outside themselves, or are damaged;
* training resumed from a saved model equals the run that never stopped, bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastconv
from conftest import CUDA_SIMULATOR, RTOL, assert_matches, of_magnitudes
from fastconv import layers, models, optimizers
from fastconv.backends import checks
from fastconv.utils import set_random_seed, to_categorical

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN arithmetic in the reference, on purpose
not_under_simulator = pytest.mark.skipif(CUDA_SIMULATOR, reason="host-side test: runs in the ordinary suite")
# Under the CUDA simulator every GPU thread is a Python thread: one seed and small shapes there.
SEEDS = [0] if CUDA_SIMULATOR else [0, 1, 2]
# (x, kernel): a general patch, and a short one (KH*KW*C <= 32, filters in eights: the Cython kernels' own product)
CONV_SHAPES = [((1, 4, 4, 2), (3, 3, 2, 2))] if CUDA_SIMULATOR else [((2, 7, 6, 3), (3, 3, 3, 4)), ((2, 7, 6, 3), (3, 3, 3, 16))]


# --- NaN and infinity through every kernel ------------------------------------------


def sprinkle(rng, array, count=2):
    """A copy of ``array`` with ``count`` NaN, ``count`` +inf and ``count`` -inf at random places."""
    array = array.copy()
    flat = array.reshape(-1)
    places = rng.choice(flat.size, size=min(3 * count, flat.size), replace=False)
    for value, chunk in zip((np.nan, np.inf, -np.inf), np.array_split(places, 3)):
        flat[chunk] = value
    return array


def finite_part(array):
    return np.where(np.isfinite(array), array, 0).astype(array.dtype)


def assert_same_values(actual, expected, what, magnitude=None):
    """NaN, +inf and -inf at the same places as the reference; the finite rest within RTOL."""
    actual = np.asarray(checks.host_array(actual), dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    for label, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        wrong = np.flatnonzero(mask(actual) != mask(expected))
        assert wrong.size == 0, f"{what}: {label} differs from the reference at flat positions {wrong[:8]}"
    finite = np.isfinite(expected)
    if finite.any():
        scale = None if magnitude is None else np.asarray(magnitude)[finite]
        assert_matches(actual[finite], expected[finite], what, RTOL, scale)


def _arrays(rng, *shapes):
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _conv(rng, poisoned, shapes):
    x_shape, kernel_shape = shapes
    x, kernel, bias = _arrays(rng, x_shape, kernel_shape, (kernel_shape[3],))
    grad_out = rng.standard_normal((*x_shape[:3], kernel_shape[3])).astype(np.float32)
    args = {"x": x, "kernel": kernel, "bias": bias, "grad_out": grad_out}
    args[poisoned] = sprinkle(rng, args[poisoned], 1)
    return args


CONV_CASES = ["x", "kernel", "bias", "grad_out"]


@pytest.mark.parametrize("shapes", CONV_SHAPES, ids=lambda shapes: f"kernel{shapes[1]}")
@pytest.mark.parametrize("poisoned", CONV_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_carries_nan_and_inf_as_the_reference(backend, reference, conv_algorithm, poisoned, seed, shapes):
    a = _conv(np.random.default_rng(seed), poisoned, shapes)
    x, kernel, bias, grad_out = a["x"], a["kernel"], a["bias"], a["grad_out"]
    finite = [finite_part(v) for v in (x, kernel, bias, grad_out)]
    forward = (x, kernel, bias, (1, 1), "same")
    assert_same_values(backend.conv2d_forward(*forward), reference.conv2d_forward(*forward), f"conv forward ({poisoned})",
                       of_magnitudes(reference.conv2d_forward, finite[0], finite[1], finite[2], (1, 1), "same"))  # fmt: skip
    # the fused ReLU epilogue (each backend's own, the short-patch product's among them): NaN stays NaN, -inf gives 0
    assert_same_values(backend.conv2d_forward(*forward, True), reference.conv2d_forward(*forward, True), f"conv forward + relu ({poisoned})",
                       of_magnitudes(reference.conv2d_forward, finite[0], finite[1], finite[2], (1, 1), "same"))  # fmt: skip
    inputs = (grad_out, kernel, x.shape, (1, 1), "same")
    assert_same_values(backend.conv2d_backward_input(*inputs), reference.conv2d_backward_input(*inputs), f"conv grad_x ({poisoned})",
                       of_magnitudes(reference.conv2d_backward_input, finite[3], finite[1], x.shape, (1, 1), "same"))  # fmt: skip
    kernel_args = (x, grad_out, kernel.shape, (1, 1), "same")
    got = backend.conv2d_backward_kernel(*kernel_args)
    expected = reference.conv2d_backward_kernel(*kernel_args)
    magnitudes = of_magnitudes(reference.conv2d_backward_kernel, finite[0], finite[3], kernel.shape, (1, 1), "same")
    for g, e, m, label in zip(got, expected, magnitudes, ("grad_kernel", "grad_bias")):
        assert_same_values(g, e, f"conv {label} ({poisoned})", m)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_carries_nan_and_inf_as_the_reference(backend, reference, seed, padding):
    rng = np.random.default_rng(seed)
    x = sprinkle(rng, rng.standard_normal((2, 4, 5, 2) if CUDA_SIMULATOR else (2, 5, 6, 3)).astype(np.float32), 3)
    x[0, :2, :2, 0] = np.nan  # a window of NaN alone
    x[1, :2, :2, 1] = -np.inf  # a window of -inf alone: its first pixel wins, as np.argmax says
    y, argmax = backend.max_pool2d_forward(x, (2, 2), None, padding)
    expected_y, expected_argmax = reference.max_pool2d_forward(x, (2, 2), None, padding)
    assert_same_values(y, expected_y, "max pool forward")
    np.testing.assert_array_equal(checks.host_array(argmax), expected_argmax, err_msg="max pool argmax (first NaN, else first max)")
    grad_out = sprinkle(rng, rng.standard_normal(y.shape).astype(np.float32), 1)
    assert_same_values(backend.max_pool2d_backward(grad_out, argmax, x.shape),
                       reference.max_pool2d_backward(grad_out, expected_argmax, x.shape), "max pool backward")  # fmt: skip
    assert_same_values(backend.avg_pool2d_forward(x, (2, 3), (1, 2), padding), reference.avg_pool2d_forward(x, (2, 3), (1, 2), padding), "avg pool forward")
    grad_avg = sprinkle(rng, rng.standard_normal(reference.avg_pool2d_forward(x, (2, 3), (1, 2), padding).shape).astype(np.float32), 1)
    assert_same_values(backend.avg_pool2d_backward(grad_avg, x.shape, (2, 3), (1, 2), padding),
                       reference.avg_pool2d_backward(grad_avg, x.shape, (2, 3), (1, 2), padding), "avg pool backward")  # fmt: skip


@pytest.mark.parametrize("poisoned", ["x", "kernel", "grad_out"])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_dense_carries_nan_and_inf_as_the_reference(backend, reference, poisoned, seed):
    rng = np.random.default_rng(seed)
    args = dict(zip(("x", "kernel", "bias", "grad_out"), _arrays(rng, (5, 7), (7, 4), (4,), (5, 4))))
    args[poisoned] = sprinkle(rng, args[poisoned], 1)
    x, kernel, bias, grad_out = args["x"], args["kernel"], args["bias"], args["grad_out"]
    assert_same_values(backend.dense_forward(x, kernel, bias), reference.dense_forward(x, kernel, bias), f"dense forward ({poisoned})",
                       of_magnitudes(reference.dense_forward, finite_part(x), finite_part(kernel), bias))  # fmt: skip
    got = backend.dense_backward(grad_out, x, kernel)
    expected = reference.dense_backward(grad_out, x, kernel)
    magnitudes = of_magnitudes(reference.dense_backward, finite_part(grad_out), finite_part(x), finite_part(kernel))
    for g, e, m, label in zip(got, expected, magnitudes, ("grad_x", "grad_kernel", "grad_bias")):
        assert_same_values(g, e, f"dense {label} ({poisoned})", m)


@pytest.mark.parametrize("seed", SEEDS)
def test_activations_carry_nan_and_inf_as_the_reference(backend, reference, seed):
    rng = np.random.default_rng(seed)
    x = sprinkle(rng, rng.standard_normal((6, 5)).astype(np.float32), 2)
    grad_out = sprinkle(rng, rng.standard_normal((6, 5)).astype(np.float32), 1)
    for name in ("relu", "sigmoid", "softmax"):
        forward, backward = getattr(backend, f"{name}_forward"), getattr(backend, f"{name}_backward")
        y = forward(x)
        expected_y = getattr(reference, f"{name}_forward")(x)
        assert_same_values(y, expected_y, f"{name} forward")
        y_host = np.ascontiguousarray(checks.host_array(y))
        assert_same_values(backward(grad_out, y_host), getattr(reference, f"{name}_backward")(grad_out, y_host), f"{name} backward")
    assert np.isnan(checks.host_array(backend.relu_forward(np.array([np.nan], np.float32)))[0]), "relu(NaN) must be NaN"


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_losses_carry_nan_and_inf_as_the_reference(backend, reference, seed):
    rng = np.random.default_rng(seed)
    logits = sprinkle(rng, rng.standard_normal((6, 4)).astype(np.float32), 1)
    one_hot = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]
    probabilities = rng.random((6, 4)).astype(np.float32)
    for name, targets in (("softmax_cross_entropy", one_hot), ("sigmoid_binary_cross_entropy", probabilities)):
        loss, grad = getattr(backend, name)(logits, targets)
        expected_loss, expected_grad = getattr(reference, name)(logits, targets)
        assert np.isnan(loss) == np.isnan(expected_loss) and np.isinf(loss) == np.isinf(expected_loss), f"{name}: loss {loss} vs {expected_loss}"
        assert_same_values(grad, expected_grad, f"{name} gradient")


@not_under_simulator
def test_a_history_write_that_fails_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    """The examples' History JSON (every epoch's checkpoint of listing 5.14's run, the final histories) goes through
    ``runs.write_history``: a write that dies half-way leaves the previous file whole. Writing it in place, as
    ``cats_dogs`` and ``vgg16_transfer`` did, left half a file."""
    from fastconv.examples.runs import write_history

    path = tmp_path / "history_augmented.json"
    write_history({"loss": [0.69, float("nan")], "val_acc": [0.5, float("inf")]}, path)
    before = path.read_text()
    assert json.loads(before)["loss"][1] != json.loads(before)["loss"][1], "NaN stays NaN"
    real_write_text = Path.write_text

    def dies_half_way(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        write_history({"loss": [0.69, 0.5, 0.4], "val_acc": [0.5, 0.6, 0.7]}, path)
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file left behind"


# --- a save killed half-way --------------------------------------------------------------

_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fastconv import layers, models
    path = sys.argv[1]
    versions = []
    for value in (1.0, 2.0):  # two models whose every weight is its version number
        model = models.Sequential([layers.Dense(1500, input_shape=(1500,)), layers.Dense(300)])
        model.set_weights([np.full_like(w, value) for w in model.get_weights()])
        versions.append(model)
    versions[0].save(path)
    print("saved", flush=True)
    while True:  # nothing but saves, ~10 MB each, until killed
        for model in versions:
            model.save(path)
    """
)


@not_under_simulator
def test_a_save_killed_half_way_leaves_the_previous_file_loadable(tmp_path):
    """SIGKILL at random moments of back-to-back saves: the file always loads, whole, as one of the saves
    wrote it. Before atomic writes, most kills left a file that did not load."""
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    path = tmp_path / "model.h5"
    rng = np.random.default_rng(0)
    # The saver imports the fastconv under test, wherever it lies (the script's own folder would not find it).
    package_root = str(Path(fastconv.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    for trial in range(8):
        process = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout.readline().strip() == "saved"
        time.sleep(rng.uniform(0.05, 0.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        loaded = models.load_model(path)  # raises if the kill destroyed the file
        values = {float(v) for w in loaded.get_weights() for v in np.unique(w)}
        assert values in ({1.0}, {2.0}), f"trial {trial}: weights from two different saves: {sorted(values)}"


@not_under_simulator
def test_an_error_during_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    from fastconv.models import legacy_h5

    model = models.Sequential([layers.Dense(3, input_shape=(4,))])
    path = tmp_path / "model.h5"
    model.save(path)
    before = path.read_bytes()

    def broken(group, model):
        raise KeyboardInterrupt  # a Ctrl-C while the weights are written

    monkeypatch.setattr(legacy_h5, "write_weights", broken)
    for save in (model.save, model.save_weights):
        with pytest.raises(KeyboardInterrupt):
            save(path)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]
    monkeypatch.undo()
    link = tmp_path / "latest.h5"
    link.symlink_to(path)
    model.save(link)  # through a link: the file it names is replaced, the link stays a link
    assert link.is_symlink() and models.load_model(link).get_weights()[0].shape == (4, 3)


# --- crafted and damaged HDF5 files -----------------------------------------------------


def _saved_model(tmp_path):
    model = models.Sequential([layers.Dense(3, input_shape=(4,), name="dense")])
    model.compile(optimizer="rmsprop", loss="mse")
    path = tmp_path / "model.h5"
    model.save(path)
    return path


def _replace_kernel(path, make):
    """Replace the kernel dataset of layer 'dense' by what ``make(group, name)`` puts there."""
    with h5py.File(path, "a") as file:
        group = file["model_weights/dense/dense"]
        del group["kernel:0"]
        make(group, "kernel:0")


@not_under_simulator
def test_crafted_files_cannot_read_outside_themselves(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["kernel"] = np.arange(12, dtype=np.float32).reshape(4, 3)
    crafts = {
        "external storage": lambda g, n: g.create_dataset(n, shape=(4, 3), dtype="f4", external=[(str(secret), 0, 48)]),
        "external link": lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(other), "/kernel")),
        "virtual dataset": lambda g, n: g.create_virtual_dataset(n, _layout(other)),
    }
    messages = {"external storage": "external files", "external link": "external link", "virtual dataset": "virtual dataset"}
    for label, make in crafts.items():
        path = _saved_model(tmp_path)
        _replace_kernel(path, make)
        with pytest.raises(ValueError, match=messages[label]) as error:
            models.load_model(path)
        assert "kernel:0" in str(error.value) and str(path) in str(error.value), label
        model = models.Sequential([layers.Dense(3, input_shape=(4,), name="dense")])
        with pytest.raises(ValueError, match=messages[label]):
            model.load_weights(path)


def _layout(other):
    layout = h5py.VirtualLayout(shape=(4, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "kernel", shape=(4, 3))
    return layout


@not_under_simulator
def test_soft_links_are_followed_inside_the_file_only(tmp_path):
    path = _saved_model(tmp_path)
    with h5py.File(path, "a") as file:
        file["spare"] = np.asarray(file["model_weights/dense/dense/kernel:0"]) + 1
    _replace_kernel(path, lambda g, n: g.__setitem__(n, h5py.SoftLink("/spare")))
    loaded = models.load_model(path)
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(loaded.get_weights()[0], file["spare"][()])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["kernel"] = np.zeros((4, 3), np.float32)
    with h5py.File(path, "a") as file:
        del file["spare"]
        file["spare"] = h5py.ExternalLink(str(other), "/kernel")  # a soft link on to an external one
    with pytest.raises(ValueError, match="external link"):
        models.load_model(path)


@not_under_simulator
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f["model_weights/dense/dense"].__delitem__("kernel:0"), r"weight 'dense/kernel:0' of layer 'dense' is missing"),
        (lambda f: f["model_weights"].__delitem__("dense"), r"the group of layer 'dense' is missing"),
        (lambda f: _retype(f, np.int32), r"dtype int32; expected floating point"),
        (lambda f: _retype(f, "S4"), r"dtype \|S4; expected floating point"),
        (lambda f: f.attrs.__setitem__("model_config", "{not json"), r"'model_config' is not valid JSON"),
        (lambda f: _edit_json(f, "training_config", lambda c: c["optimizer_config"].__setitem__("class_name", "Adagrad")),
         r"the optimizer 'Adagrad' is not one fastconv has"),
        (lambda f: _edit_json(f, "model_config", lambda c: c["config"]["layers"][1]["config"].__setitem__("kernel_initializer", "lecun_normal")),
         r"layer 'dense' \(Dense\).*the initializer 'lecun_normal' is not one fastconv has"),
        (lambda f: _edit_json(f, "model_config", lambda c: c["config"]["layers"][1].__setitem__("class_name", "LSTM")),
         r"layer 'dense' is a LSTM, which fastconv does not have"),
        (lambda f: _reshape_slot(f), r"optimizer_weights/rmsprop/dense_kernel_velocity has shape \(2, 2\), expected \(4, 3\)"),
    ],
    ids=["missing-dataset", "missing-layer-group", "int-dtype", "bytes-dtype", "bad-json", "unknown-optimizer", "unknown-initializer",
         "unknown-layer", "optimizer-slot-shape"],
)  # fmt: skip
def test_damaged_files_give_errors_naming_the_file_and_the_layer(tmp_path, damage, message):
    path = _saved_model(tmp_path)
    with h5py.File(path, "a") as file:
        damage(file)
    with pytest.raises(ValueError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def _retype(file, dtype):
    group = file["model_weights/dense/dense"]
    values = np.asarray(group["kernel:0"])
    del group["kernel:0"]
    group["kernel:0"] = values.astype(dtype)


def _reshape_slot(file):
    group = file["optimizer_weights/rmsprop"]
    del group["dense_kernel_velocity"]
    group["dense_kernel_velocity"] = np.zeros((2, 2), np.float32)


def _edit_json(file, attribute, edit):
    config = json.loads(file.attrs[attribute])
    edit(config)
    file.attrs[attribute] = json.dumps(config)


# --- resuming equals never stopping -----------------------------------------------------


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
