"""Training, apart from the graph: compile, one step, and the loops of fit, evaluate and predict.

:class:`Trainer` is mixed into :class:`fastconv.models.Model` (as Keras keeps its trainer apart from
its graph). One training step runs forward through the model, takes the loss and its gradient — from
the logits when the output activation fuses with the loss — runs backward, and lets the optimizer
update every trainable weight. The kernels are reached only through ``fastconv.get_backend()``.

What it needs of the model: ``forward``/``backward`` over its layers, ``weights``, ``output_shape``,
``built``/``build_for``/``check_input_shape``, and ``_output_activation()``.
"""

import contextlib
import math

import numpy as np

from fastconv import losses as losses_module
from fastconv import metrics as metrics_module
from fastconv import optimizers as optimizers_module
from fastconv.backends import get_backend
from fastconv.callbacks import CallbackList, History, Progbar
from fastconv.layers.base import weight_gradients_enabled
from fastconv.models import data as data_module


# The distribution strategies whose scope() is open, innermost last (fastconv.distribute pushes them here: this floor
# never imports that one). ``compile`` records the innermost as the model's ``distribution``.
STRATEGY_SCOPES = []


def current_strategy():
    """The strategy whose ``scope()`` is open, or None."""
    return STRATEGY_SCOPES[-1] if STRATEGY_SCOPES else None


class NonFiniteLoss(FloatingPointError):
    """The loss of a training batch is NaN or infinite; the step was not applied (the weights are those before it)."""

    def __init__(self, message, loss, step=None):
        super().__init__(message)
        self.loss, self.step = loss, step


def _refuse_non_finite(loss, what, weights=()):
    """One rule for every loss: a NaN or infinite loss never reaches the weights (NonFiniteLoss; ``weights``' gradients
    are dropped)."""
    if not math.isfinite(loss):
        for weight in weights:
            weight.grad = None
        raise NonFiniteLoss(f"{what} is {loss}; the step was not applied", loss)


def _check_fit_keywords(kwargs):
    """Keras' ``fit`` keywords that fastconv accepts and has no use for; anything else is a TypeError."""
    ignored = set(kwargs) - {"workers", "use_multiprocessing", "max_queue_size", "class_weight", "sample_weight"}
    if ignored:
        raise TypeError(f"fit() got unexpected arguments {sorted(ignored)}")
    if kwargs.get("class_weight") is not None or kwargs.get("sample_weight") is not None:
        raise ValueError("fit(): class_weight and sample_weight are not supported")


def _end_on_non_finite_loss(error, epoch, params, callback_list):
    """A training batch's loss was NaN or infinite: raise, naming where, or with TerminateOnNaN end quietly."""
    if not callback_list.terminates_on_nan:
        raise NonFiniteLoss(
            f"fit stopped at epoch {epoch + 1}/{params['epochs']}, step {error.step}/{params['steps']}: the loss is "
            f"{error.loss}; the weights are those before this step (pass callbacks=[TerminateOnNaN()] "
            "to end training quietly instead)",
            error.loss, error.step,
        ) from None  # fmt: skip
    if params["verbose"]:
        print()
    callback_list.on_train_batch_end(error.step - 1, {"loss": error.loss})  # TerminateOnNaN says so and stops training


class Trainer:
    """compile / train_on_batch / fit / evaluate / predict for a model (see the module docstring)."""

    stop_training = False
    optimizer = loss = None  # set by compile
    metric_names = ()
    history = None  # the History of the last fit
    distribution = None  # the strategy (fastconv.distribute) this model was compiled under, or None

    # --- training configuration --------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Keras' compile: an optimizer (name or object), a loss name, metrics ['accuracy'] or ['acc']."""
        unsupported = set(kwargs) - {"loss_weights", "weighted_metrics", "run_eagerly", "jit_compile", "steps_per_execution"}
        if unsupported:
            raise TypeError(f"compile() got unexpected arguments {sorted(unsupported)}")
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='categorical_crossentropy'")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self.metric_names = metrics_module.check_metrics(metrics)
        self.distribution = current_strategy()
        self.stop_training = False

    def _require_compiled(self):
        if self.loss is None:
            raise RuntimeError(f"Model {self.name!r} must be compiled before training or evaluation: call model.compile(...)")

    def _build_from_data(self, x_batch):
        if not self.built:
            self.build_for((None, *np.shape(x_batch)[1:]))
        self.check_input_shape((None, *np.shape(x_batch)[1:]))

    def _place_weights(self, backend):
        """Weights live where the backend computes (on the GPU for 'cuda'); a no-op once they are there."""
        for weight in self.weights:
            weight.to_backend(backend)

    def _fused(self):
        return self.loss.fuses_with is not None and self.loss.fuses_with == self._output_activation()

    # --- steps ---------------------------------------------------------------

    def _loss_and_grad(self, outputs, targets, fused):
        if fused:
            return self.loss.from_logits(targets, outputs)
        backend = get_backend()
        loss, grad = self.loss(backend.to_host(targets), backend.to_host(outputs))
        return loss, backend.to_device(np.ascontiguousarray(grad, dtype=np.float32))

    def _metric_values(self, outputs, targets, fused):
        if not self.metric_names:
            return {}
        backend = get_backend()
        outputs, targets = backend.to_host(outputs), backend.to_host(targets)
        if metrics_module.accuracy_for(self.loss.name, outputs.shape) == "binary":
            value = metrics_module.binary_accuracy(targets, outputs, logits=fused)
        else:
            value = metrics_module.categorical_accuracy(targets, outputs)
        return {name: value for name in self.metric_names}

    def _targets(self, y_batch, batch_size):
        if y_batch is None:
            raise ValueError("training and evaluation need targets: pass y, or a generator yielding (x, y)")
        output_shape = (batch_size, *self.output_shape[1:])
        return get_backend().to_device(self.loss.targets(data_module.as_float_batch(y_batch, "y"), output_shape))

    def train_on_batch(self, x, y, return_dict=False):
        """One optimizer step on one batch; returns the loss (and metrics) of that batch before the step.

        A NaN or infinite loss raises :class:`NonFiniteLoss` and leaves the weights as they were.
        """
        logs = self._train_step(x, y)
        return self._format_logs(logs, return_dict)

    def _require_weight_gradients(self):
        if not weight_gradients_enabled():
            raise RuntimeError(
                f"model {self.name!r} cannot train inside input_gradients_only(): backward passes there compute no "
                "weight gradients; train outside the block"
            )

    def _forward_loss(self, x_batch, y_batch, training):
        """Forward one batch and take the loss: (logs, loss gradient, caches, fused)."""
        self._require_compiled()
        self._build_from_data(x_batch)
        backend = get_backend()
        self._place_weights(backend)
        x = backend.to_device(data_module.as_float_batch(x_batch))
        targets = self._targets(y_batch, x.shape[0])
        fused = self._fused()
        outputs, caches = self.forward(x, training=training, logits=fused)
        loss, grad = self._loss_and_grad(outputs, targets, fused)
        loss += self.regularization_loss(caches)  # Keras reports the loss with its regularizers' penalties
        return {"loss": loss, **self._metric_values(outputs, targets, fused)}, grad, caches, fused

    def _backward_with_penalties(self, grad, caches, fused):
        """Every trainable weight's gradient: the loss's (``backward``; activity penalties join there) plus its
        regularizer's."""
        self.backward(grad, caches, need_input_grad=False, logits=fused)
        backend = get_backend()
        for weight in self.trainable_weights:
            if weight.regularizer is not None and weight.grad is not None:
                penalty_grad = weight.regularizer.gradient(backend.to_host(weight.value))
                weight.grad = backend.to_device(backend.to_host(weight.grad) + penalty_grad)

    def compute_gradients(self, x_batch, y_batch, training=True):
        """Forward and backward on one batch: sets ``weight.grad`` of every trainable weight; returns the logs."""
        self._require_weight_gradients()
        logs, grad, caches, fused = self._forward_loss(x_batch, y_batch, training)
        self._backward_with_penalties(grad, caches, fused)
        return logs

    def _train_step(self, x_batch, y_batch):
        self._require_weight_gradients()
        logs, grad, caches, fused = self._forward_loss(x_batch, y_batch, training=True)
        if self.distribution is None:
            _refuse_non_finite(logs["loss"], "the loss of the batch")  # before the backward pass, which it would waste
            self._backward_with_penalties(grad, caches, fused)
        else:
            # every rank's gradients averaged; the loss travels with them, so a NaN on any rank stops every rank here
            self._backward_with_penalties(grad, caches, fused)
            loss_sum, count = self.distribution.average_gradients(self.weights, logs["loss"] * len(x_batch), len(x_batch))
            _refuse_non_finite(loss_sum / count, "the loss of the batch over all ranks", self.weights)
        self.optimizer.apply(self.weights)
        return logs

    def _test_step(self, x_batch, y_batch):
        return self._forward_loss(x_batch, y_batch, training=False)[0]

    def test_on_batch(self, x, y, return_dict=False):
        return self._format_logs(self._test_step(x, y), return_dict)

    def _format_logs(self, logs, return_dict):
        if return_dict:
            return logs
        values = [logs["loss"], *(logs[name] for name in self.metric_names)]
        return values[0] if len(values) == 1 else values

    # --- loops ---------------------------------------------------------------

    def _run_epoch(self, feeder, step, progbar=None, on_batch=None):
        """Run ``step`` over one epoch of ``feeder``; the logs are sample-weighted means."""
        totals, seen = {}, 0
        for index, (x_batch, y_batch) in enumerate(feeder.epoch()):
            try:
                logs = step(x_batch, y_batch)
            except NonFiniteLoss as error:
                error.step = index + 1
                raise
            count = len(x_batch)
            seen += count
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value * count
            means = {key: total / seen for key, total in totals.items()}
            if progbar is not None:
                progbar.update(index + 1, means)
            if on_batch is not None:
                on_batch(index, means)
        if self.distribution is not None:
            return self.distribution.mean_logs(totals, seen)
        return {key: total / seen for key, total in totals.items()}

    def _feeders(self, feeder, validation=None):
        """The feeders as this process takes them: its share of each under a distribution strategy."""
        if self.distribution is None:
            return feeder, validation
        return self.distribution.shard(feeder), None if validation is None else self.distribution.shard(validation)

    def _distributed(self):
        """Where a failure must end every rank: the strategy's guard, else nothing."""
        if self.distribution is None:
            return contextlib.nullcontext()
        # a NaN loss stops every rank at the same step (its loss travels with the gradients): no rank is left waiting
        return self.distribution.failures_end_every_rank(raised_on_every_rank=(NonFiniteLoss,))

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, **kwargs):  # fmt: skip
        """Train for ``epochs``; returns a :class:`~fastconv.callbacks.History` (also kept as ``model.history``).

        ``x``/``y`` arrays, or ``x`` a generator of ``(x, y)`` batches with ``steps_per_epoch``.
        ``validation_data`` is ``(x_val, y_val)`` or a generator (with ``validation_steps``).
        """
        _check_fit_keywords(kwargs)
        self._require_compiled()
        self._require_weight_gradients()
        with self._distributed():
            x, y, validation_data = data_module.split_validation(x, y, validation_split, validation_data)
            feeder = data_module.batches(x, y, batch_size, shuffle, steps_per_epoch, "steps_per_epoch")
            validation_batch_size = batch_size if validation_batch_size is None else validation_batch_size
            validation = data_module.validation_batches(validation_data, validation_steps, validation_batch_size)
            feeder, validation = self._feeders(feeder, validation)
            verbose, callbacks = self._synchronize_replicas(feeder, verbose, list(callbacks or []))
            history = History()
            params = self._fit_params(epochs, feeder.steps, verbose, validation is not None)
            callback_list = CallbackList([*callbacks, history], self, params)  # History last, as in Keras 3
            self.stop_training = False
            callback_list.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                finished = self._fit_epoch(epoch, params, feeder, validation, callback_list)
                if not finished or self.stop_training:
                    break
            callback_list.on_train_end()
            self.history = history
            return history

    def _synchronize_replicas(self, feeder, verbose, callbacks):
        """Under a distribution strategy: build the model from the data if it is not built, take rank 0's weights
        and optimizer state, and leave printing and the callbacks that write files to rank 0 (those that decide,
        such as EarlyStopping, run everywhere on the same averaged logs). Returns ``(verbose, callbacks)``."""
        if self.distribution is None:
            return verbose, callbacks
        if not self.built:
            for x_batch, _ in feeder.epoch():
                self._build_from_data(x_batch)
                break
        self.distribution.synchronize(self)
        if self.distribution.is_chief:
            return verbose, callbacks
        return 0, [callback for callback in callbacks if not getattr(callback, "writes_files", False)]

    def _fit_params(self, epochs, steps, verbose, validating):
        """The ``params`` every callback sees: ``metrics`` lists the keys the epoch logs will have."""
        log_keys = ["loss", *self.metric_names]
        validation_keys = [f"val_{key}" for key in log_keys] if validating else []
        return {"epochs": epochs, "steps": steps, "verbose": verbose, "metrics": log_keys + validation_keys}

    def _fit_epoch(self, epoch, params, feeder, validation, callback_list):
        """One epoch of ``fit``: train, validate, report; False when a NaN loss ended training (TerminateOnNaN)."""
        callback_list.on_epoch_begin(epoch)
        if params["verbose"]:
            print(f"Epoch {epoch + 1}/{params['epochs']}")
        progbar = Progbar(feeder.steps, params["verbose"])
        try:
            logs = self._run_epoch(feeder, self._train_step, progbar, callback_list.on_train_batch_end)
        except NonFiniteLoss as error:
            _end_on_non_finite_loss(error, epoch, params, callback_list)
            return False
        if validation is not None:
            validation_logs = self._run_epoch(validation, self._test_step)
            logs.update({f"val_{key}": value for key, value in validation_logs.items()})
        # The callbacks first, then the epoch's line, as Keras 3's History and progress bar come last: what a callback
        # adds to the logs is both recorded and shown.
        callback_list.on_epoch_end(epoch, logs)
        progbar.finish(logs)
        return True

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, **kwargs):
        """Keras 2's name for ``fit`` on a generator."""
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose=1, steps=None, return_dict=False, **kwargs):
        """Loss (and metrics) over the data, as Keras: a scalar, or [loss, metric, ...]."""
        self._require_compiled()
        with self._distributed():
            feeder, _ = self._feeders(data_module.batches(x, y, batch_size, False, steps, "steps"))
            verbose = verbose if self.distribution is None or self.distribution.is_chief else 0
            progbar = Progbar(feeder.steps, verbose)
            logs = self._run_epoch(feeder, self._test_step, progbar)
            progbar.finish(logs)
            return self._format_logs(logs, return_dict)

    def evaluate_generator(self, generator, steps=None, **kwargs):
        return self.evaluate(generator, steps=steps, **kwargs)

    def predict(self, x, batch_size=None, verbose=0, steps=None, **kwargs):
        """The model's outputs (with the output activation) for every sample, as one NumPy array."""
        backend = get_backend()
        feeder = data_module.batches(x, None, batch_size, False, steps, "steps")
        progbar = Progbar(feeder.steps, verbose)
        outputs = []
        for index, (x_batch, _) in enumerate(feeder.epoch()):
            self._build_from_data(x_batch)
            self._place_weights(backend)
            y, _ = self.forward(backend.to_device(data_module.as_float_batch(x_batch)), training=False)
            outputs.append(backend.to_host(y))
            progbar.update(index + 1, {})
        progbar.finish({})
        return np.concatenate(outputs)

    def predict_generator(self, generator, steps=None, **kwargs):
        return self.predict(generator, steps=steps, **kwargs)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=len(x))
