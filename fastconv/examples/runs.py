"""What every example script shares: the ``--backend`` and ``--seed`` arguments and what they set, the training time
less Numba's compilation, how a History is written, and the checkpoint after every epoch that ``--resume`` goes on
from."""

import json
from pathlib import Path

import fastconv
from fastconv.backends import compile_time
from fastconv.callbacks import Callback
from fastconv.models import load_model
from fastconv.models.atomic import atomic_path
from fastconv.utils import set_random_seed


def add_run_arguments(parser):
    parser.add_argument("--backend", default=None, help="cython (default), numba, reference or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, dropout, shuffling and augmentation")


def start_run(args):
    """Select the backend (if one was named) and seed fastconv's random draws."""
    if args.backend:
        fastconv.set_backend(args.backend)
    set_random_seed(args.seed)


def training_time(seconds, compile_seconds):
    """``(seconds of training, a note)``: ``seconds`` of a fit less the one-time Numba compilation that happened in
    it, so that throughput figures count training alone; the note says what was left out ('' when nothing was)."""
    if compile_seconds < 0.5:
        return seconds, ""
    return seconds - compile_seconds, f" (not counting {compile_seconds:.0f} s of one-time Numba compilation)"


def compile_seconds():
    """Seconds of Numba compilation so far in this process (see :mod:`fastconv.backends.compile_time`)."""
    return compile_time.seconds()


def write_history(history, path):
    """A History (or its dict) as JSON at ``path``, written atomically: a run stopped mid-write leaves the previous
    file, never half of one. NaN and infinite values are kept (as JSON's NaN / Infinity, which ``json`` reads back)."""
    logs = getattr(history, "history", history)
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(logs, indent=1))


def checkpoint_paths(folder, name):
    """(model file, History file) of run ``name``'s checkpoint in ``folder``: ``checkpoint_<name>.h5`` / ``.json``."""
    return Path(folder) / f"checkpoint_{name}.h5", Path(folder) / f"checkpoint_{name}.json"


def has_checkpoint(folder, name):
    return all(path.is_file() for path in checkpoint_paths(folder, name))


def load_checkpoint(folder, name):
    """(model, History dict) of run ``name``'s last finished epoch: the model with its trainable flags and optimizer
    state, as saved after that epoch."""
    model_path, history_path = checkpoint_paths(folder, name)
    history = json.loads(history_path.read_text())
    print(f"resuming after epoch {len(history.get('loss', []))} from {model_path}")
    return load_model(model_path), history


class EpochCheckpoint(Callback):
    """Save the model (weights, trainable flags, optimizer state) and the whole History so far after every epoch,
    both files written atomically, as :func:`checkpoint_paths` names them; ``history`` holds every epoch's logs,
    those of ``earlier_history`` (a resumed run's) first."""

    writes_files = True  # under a distribution strategy, rank 0's job

    def __init__(self, folder, name, earlier_history=None):
        self.model_path, self.history_path = checkpoint_paths(folder, name)
        self.history = {key: list(values) for key, values in (earlier_history or {}).items()}

    @property
    def epochs_done(self):
        return len(self.history.get("loss", []))

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.model.save(self.model_path)
        write_history(self.history, self.history_path)


class CachedValidation(Callback):
    """Validation on features that frozen layers computed once: the validation images are not augmented, so the
    frozen layers give the same features every epoch. ``head``, the layers after them (shared with the model), is
    evaluated on all of them at each epoch's end, and ``val_loss`` and ``val_<metric>`` join the epoch's logs as
    ``validation_data`` would put them there (callbacks after this one, ``ModelCheckpoint`` say, see them)."""

    def __init__(self, head, features, labels, metric="accuracy", batch_size=20):
        self.head, self.features, self.labels = head, features, labels
        self.metric, self.batch_size = metric, batch_size

    def on_epoch_end(self, epoch, logs=None):
        loss, score = self.head.evaluate(self.features, self.labels, batch_size=self.batch_size, verbose=0)
        logs["val_loss"], logs[f"val_{self.metric}"] = float(loss), float(score)
        print(f"epoch {epoch + 1}: val_loss {loss:.4f} - val_{self.metric} {score:.4f} (cached features)")
