"""Real Keras 3 opens files fastconv wrote and predicts with them: the reverse direction of tests/test_keras_files.py.

    python tests/keras_files/check_with_keras.py CASES.json

CASES.json lists ``{"file", "kind": "model" | "weights", "builder", "x", "expected", "iterations"}``: a file
fastconv saved, how to open it (``keras.saving.load_model``, or ``load_weights`` into the model that
``make_keras_files.<builder>(keras)`` builds), an ``.npy`` of inputs and an ``.npy`` of fastconv's
predictions, and (for a compiled model) the optimizer's iteration count fastconv saved; with ``"y"`` (an ``.npy``
of targets) and ``"loss"``, the loss fastconv's ``evaluate`` gave, which Keras' must match. Prints one JSON
line per case with Keras' relative error, the trainable flags Keras sees, its optimizer, iteration count
and the sum of each RMSprop slot; exits 1 if any case fails.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_keras_files  # noqa: E402

RTOL = 1e-5


def check(keras, case):
    if case["kind"] == "model":
        model = keras.saving.load_model(case["file"])
    else:
        model = getattr(make_keras_files, case["builder"])(keras)[0]
        model.load_weights(case["file"])
    x, expected = np.load(case["x"]), np.load(case["expected"])
    predicted = model.predict(x, verbose=0)
    error = float(np.abs(predicted - expected).max() / np.abs(expected).max())
    result = {
        "file": Path(case["file"]).name,
        "relative_error": error,
        "frozen": sorted(layer.name for layer in _all_layers(model) if not layer.trainable),
        "trainable_weights": len(model.trainable_weights),
    }
    if case["kind"] == "model" and getattr(model, "optimizer", None) is not None:
        result["optimizer"] = type(model.optimizer).__name__
        result["learning_rate"] = float(np.asarray(model.optimizer.learning_rate))
        result["iterations"] = int(np.asarray(model.optimizer.iterations))
        slots = getattr(model.optimizer, "_velocities", None) or []  # RMSprop's, in the order of the trainable weights
        result["velocity_sums"] = [float(np.asarray(slot).sum(dtype=np.float64)) for slot in slots]
    loss_ok = True
    if case.get("loss") is not None:  # the loss Keras reports, regularizers' penalties included, against fastconv's
        result["loss"] = float(model.evaluate(x, np.load(case["y"]), verbose=0))
        loss_ok = abs(result["loss"] - case["loss"]) <= RTOL * abs(case["loss"])
    result["ok"] = error <= RTOL and loss_ok and result.get("iterations", case.get("iterations")) == case.get("iterations")
    return result


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def main():
    import keras

    cases = json.loads(Path(sys.argv[1]).read_text())
    failed = 0
    for case in cases:
        try:
            result = check(keras, case)
        except Exception as error:  # report every case, then fail
            result = {"file": Path(case["file"]).name, "ok": False, "error": f"{type(error).__name__}: {error}"}
        failed += not result["ok"]
        print(json.dumps(result), flush=True)
    print(json.dumps({"keras": keras.__version__, "cases": len(cases), "failed": failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
