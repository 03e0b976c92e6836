"""Keras-style callbacks: History, the progress bar, EarlyStopping, ModelCheckpoint and TerminateOnNaN, and the
:class:`CallbackList` through which ``fit`` calls them."""

import math
import string
import sys
import time
import warnings


class Callback:
    """Hooks a model calls during ``fit``; ``self.model`` and ``self.params`` are set before training starts.

    ``params`` holds ``epochs``, ``steps`` (per epoch), ``verbose`` and ``metrics``: the keys the
    epoch logs will have (``loss``, the compiled metrics, and their ``val_`` twins with validation).
    """

    # True for a callback whose job is to write files: under a distribution strategy only rank 0 runs it.
    writes_files = False

    model = None
    params = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...


class CallbackList:
    """The callbacks of one ``fit``, each event handed to every one of them in order (Keras' ``CallbackList``; ``fit``
    puts its History last, as Keras 3 does).

    Refuses anything that is not a :class:`Callback` before any of them is touched; then gives each the model
    and the fit's ``params``.
    """

    def __init__(self, callbacks, model, params):
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be fastconv.callbacks.Callback instances, got {type(callback).__name__}")
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    @property
    def terminates_on_nan(self):
        """Whether a :class:`TerminateOnNaN` is among them (then a NaN loss ends ``fit`` quietly)."""
        return any(isinstance(callback, TerminateOnNaN) for callback in self.callbacks)

    def on_train_begin(self):
        for callback in self.callbacks:
            callback.on_train_begin()

    def on_train_end(self):
        for callback in self.callbacks:
            callback.on_train_end()

    def on_epoch_begin(self, epoch):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch)

    def on_epoch_end(self, epoch, logs):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs):
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


class History(Callback):
    """``history.history['loss']`` etc.: one value per epoch, keys as the metric names given to compile."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def format_logs(logs):
    """Keras' ' - loss: 0.1234' formatting (scientific below 1e-3)."""
    parts = []
    for key, value in logs.items():
        parts.append(f" - {key}: {value:.4f}" if abs(value) > 1e-3 else f" - {key}: {value:.4e}")
    return "".join(parts)


def format_duration(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


class Progbar:
    """Keras' progress bar: ``375/938 [===========>..................] - ETA: 6s - loss: 0.2471``.

    On a terminal the line is redrawn at most every 0.1 s; elsewhere (logs,
    notebooks' captured output, CI) only the finished line is printed.
    """

    width = 30

    def __init__(self, target, verbose=1, stream=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def _bar(self, current):
        digits = len(str(self.target))
        filled = int(self.width * current / self.target)
        arrow = "=" * max(filled - 1, 0) + (">" if current < self.target else "=") if filled else ""
        return f"{current:{digits}d}/{self.target} [{arrow}{'.' * (self.width - len(arrow))}]"

    def update(self, current, logs):
        if self.verbose != 1 or not self.interactive:
            return
        now = time.perf_counter()
        if current < self.target and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        eta = (now - self.start) / current * (self.target - current)
        self.stream.write(f"\r{self._bar(current)} - ETA: {format_duration(eta)}{format_logs(logs)}")
        self.stream.flush()

    def finish(self, logs):
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.target, 1)
        step_time = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
        if self.verbose == 1:
            line = f"{self._bar(self.target)} - {format_duration(elapsed)} {step_time}{format_logs(logs)}"
        else:
            line = f"{self.target}/{self.target} - {format_duration(elapsed)} - {step_time}{format_logs(logs)}"
        self.stream.write(("\r" if self.interactive else "") + line + "\n")
        self.stream.flush()


class TerminateOnNaN(Callback):
    """Keras' callback: end training quietly when a batch's loss is NaN or infinite.

    Without it, ``fit`` raises instead. Either way the step with the bad loss is never applied.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _is_nan(value):
    try:
        return math.isnan(value)
    except TypeError:
        return False


def _monitor_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", restore_best_weights=False):
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = _monitor_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def _improved(self, value):
        if _is_nan(value):  # a NaN is never an improvement, and never the best to beat
            return False
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait, self.best, self.best_weights, self.stopped_epoch = 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"EarlyStopping: {self.monitor!r} is not among the logged values {sorted(logs or {})}", stacklevel=2)
            return
        if self._improved(value):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping")


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after each epoch to ``filepath.format(epoch=..., **logs)``."""

    writes_files = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False, mode="auto"):
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def on_train_begin(self, logs=None):
        """Refuse, before the first epoch, a filepath that names a value the logs will not have."""
        try:
            fields = {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(self.filepath) if field}
        except ValueError as error:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} is not a valid format string: {error}") from None
        available = ["epoch", *((self.params or {}).get("metrics") or [])]
        missing = sorted(fields - set(available))
        if missing and self.params is not None:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} names {missing}, which this fit() will not log; "
                f"it can use {available}"
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"ModelCheckpoint: {self.monitor!r} is not among the logged values {sorted(logs)}", stacklevel=2)
                return
            if _is_nan(value):
                return  # never the best, and never what later values are compared with
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                return
            self.best = value
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)
