"""Files are replaced whole or not at all: a save killed half-way (SIGKILL, repeated), an error or a Ctrl-C during a
save, a History write that dies half-way; each leaves the previous file as it was and no temporary beside it."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastconv
from builders import small_classifier, tiny_data
from conftest import CUDA_SIMULATOR
from fastconv import layers, models

not_under_simulator = pytest.mark.skipif(CUDA_SIMULATOR, reason="host-side test: runs in the ordinary suite")


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


def test_saving_an_archive_is_atomic(tmp_path, monkeypatch):
    from fastconv.models import keras_archive

    model = small_classifier()  # compiled: its optimizer state is saved with it
    model.fit(*tiny_data(16), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # a Ctrl-C while the weights are written

    monkeypatch.setattr(keras_archive.optimizer_state, "entries", broken)
    for save in (lambda: model.save(path), lambda: model.save_weights(tmp_path / "m.weights.h5")):
        with pytest.raises(KeyboardInterrupt):
            save()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
