"""The layer protocol, weights, and the symbolic tensors of the functional API.

A layer declares its weights in ``build(input_shape)``, says what it outputs
in ``compute_output_shape``, and computes in a forward/backward pair:

* ``call(x, training) -> (z, cache)`` — the layer's own computation before its
  activation, returning what its backward pass needs;
* ``backward_call(grad_z, cache, need_input_grad) -> grad_x`` — stores the
  gradients of its weights in ``weight.grad``.

``forward``/``backward`` wrap these with the layer's activation; a model may
stop before the last layer's activation (``logits=True``) to fuse it with
the loss. Layers reach the kernels only through ``fastconv.get_backend()``.
Shapes carry ``None`` for the batch axis, as in Keras: ``(None, 28, 28, 1)``.
"""

import contextlib
import contextvars

import numpy as np

from fastconv import activations, initializers, regularizers, utils
from fastconv.backends import checks, get_backend, to_numpy


def check_channels_last(layer, data_format):
    """Image layers take NHWC only; anything else is refused with the layer's name."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: fastconv is channels_last (NHWC), got data_format={data_format!r}")


def check_image_rank(layer, input_shape):
    """Image layers take (batch, height, width, channels)."""
    if len(input_shape) != 4:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) expects input of rank 4 (batch, height, width, channels), "
            f"got shape {tuple(input_shape)}"
        )


# Per thread (and per asyncio task): a gradient query in one thread never stops another thread's training from
# computing its weights' gradients.
_weight_gradients = contextvars.ContextVar("fastconv_weight_gradients", default=True)


def weight_gradients_enabled():
    """Whether backward passes in this thread compute and store the gradients of trainable weights (off inside
    :func:`input_gradients_only`)."""
    return _weight_gradients.get()


@contextlib.contextmanager
def input_gradients_only():
    """Inside the block, backward passes of this thread compute the gradients of inputs and activations only: no
    layer computes its weights' gradients, and every ``weight.grad`` keeps what it held (``fastconv.models.gradients``
    uses it). Other threads are not affected; training inside the block raises."""
    token = _weight_gradients.set(False)
    try:
        yield
    finally:
        _weight_gradients.reset(token)


class Weight:
    """A trainable (or frozen) array of a layer, named as Keras names it: ``conv2d/kernel:0``."""

    def __init__(self, layer, name, value, trainable=True, regularizer=None):
        self.layer = layer
        self.short_name = name
        self.value = value
        self._trainable = trainable
        self.regularizer = regularizer  # a penalty on the value added to the training loss (fastconv.regularizers)
        self.grad = None

    @property
    def name(self):
        return f"{self.layer.name}/{self.short_name}:0"

    @property
    def shape(self):
        return self.value.shape

    @property
    def trainable(self):
        return self._trainable and self.layer.trainable

    def check_assignable(self, value):
        """``value`` as a NumPy array of this weight's shape and a real number dtype; ValueError/TypeError otherwise."""
        value = np.asarray(to_numpy(value))
        if value.shape != tuple(self.shape):
            raise ValueError(f"weight {self.name} has shape {tuple(self.shape)}, cannot assign an array of shape {value.shape}")
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"weight {self.name} takes real numbers, got an array of dtype {value.dtype}")
        return value

    def assign(self, value):
        """The weight becomes a float32 copy of ``value``: the caller's array is never shared, so never changed."""
        self.store(self.check_assignable(value))

    def store(self, checked):
        """Keep a float32 copy of an array :meth:`check_assignable` returned."""
        self.value = np.array(checked, dtype=np.float32, order="C", copy=True)

    def numpy(self):
        """A host copy of the value, wherever the backend keeps it."""
        return np.array(to_numpy(self.value))

    def to_backend(self, backend):
        """Move the value to where ``backend`` keeps its arrays (no copy when it is there already)."""
        self.value = backend.to_device(self.value)

    def __repr__(self):
        return f"<Weight {self.name} shape={self.shape} trainable={self.trainable}>"


def assign_all(weights, arrays, owner):
    """Assign copies of ``arrays`` to ``weights``, all or none: every array is checked before the first is set."""
    arrays = list(arrays)
    if len(arrays) != len(weights):
        raise ValueError(f"{owner} has {len(weights)} weights, got {len(arrays)} arrays")
    checked = [weight.check_assignable(array) for weight, array in zip(weights, arrays)]
    for weight, array in zip(weights, checked):
        weight.store(array)


def check_layer_name(name):
    """A layer name is a non-empty str without '/' (it names a group in saved files)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"a layer name must be a non-empty string without '/', got {name!r}")
    return name


def check_unique_names(model, layers):
    """Refuse, when a layer joins a model, a name another of its layers has (saved files key weights by name)."""
    seen = {}
    for layer in layers:
        if layer.name in seen and seen[layer.name] is not layer:
            raise ValueError(
                f"model {model.name!r}: all layers must have unique names; {layer.name!r} is already the name of a layer "
                f"in this model ({type(seen[layer.name]).__name__} and {type(layer).__name__})"
            )
        seen[layer.name] = layer


class KerasTensor:
    """A symbolic tensor: a shape with ``None`` batch and the layer call that produced it."""

    def __init__(self, shape, layer=None, inbound=None):
        self.shape = tuple(shape)
        self.layer = layer  # the layer whose output this is
        self.inbound = inbound  # that layer's input tensor (None for an Input)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        producer = f", produced by {self.layer.name!r}" if self.layer else ""
        return f"<KerasTensor shape={self.shape}{producer}>"


def _as_batch_shape(shape):
    return (None, *tuple(int(d) if d is not None else None for d in shape))


# Saved configs name classes ("Conv2D", "Sequential", "Functional"); each layer class registers itself here as it is
# defined (models too, from their own modules), so that rebuilding a model never imports upward.
_SAVED_CLASSES = {}


def register_class(cls, *names):
    """Let saved configs name ``cls`` by ``names`` (default: its class name); returns ``cls``."""
    for name in names or (cls.__name__,):
        _SAVED_CLASSES[name] = cls
    return cls


def saved_class(name):
    """The class a saved config calls ``name``, or None."""
    return _SAVED_CLASSES.get(name)


class Layer:
    """Base of every layer; see the module docstring for the protocol."""

    keras_class_name = None  # the class name Keras gives this layer's type in configs and summaries (default: ours)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _SAVED_CLASSES.setdefault(cls.__name__, cls)  # a user's class never replaces a built-in of the same name

    @property
    def type_name(self):
        """The class name Keras would write for this layer: ``Conv2D``, ``Functional`` for a functional model."""
        return self.keras_class_name or type(self).__name__

    def __init__(self, name=None, trainable=True, input_shape=None, batch_input_shape=None, dtype=None, activation=None,
                 activity_regularizer=None):  # fmt: skip
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"fastconv layers compute in float32, got dtype={dtype!r}")
        self.name = check_layer_name(name) if name is not None else utils.unique_name(type(self).__name__)
        self.trainable = trainable
        self.built = False
        self.activation = activations.get(activation)
        self.activity_regularizer = regularizers.get(activity_regularizer)  # a penalty on the output (Model.forward)
        self._weights = []
        self.input_shape = None
        self.output_shape = None
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = _as_batch_shape(input_shape)
        else:
            self._batch_input_shape = None

    # --- weights -----------------------------------------------------------

    def set_weight_options(self, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer):
        """Keras' kernel_/bias_initializer (names or callables ``shape -> array``) and kernel_/bias_regularizer
        (``fastconv.regularizers``: objects, names or configs) arguments."""
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def weight_options_config(self):
        return {
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }

    def add_weight(self, name, shape, initializer, trainable=True, regularizer=None):
        value = np.asarray(initializer(tuple(shape)))
        if value.shape != tuple(shape):
            raise ValueError(f"layer {self.name!r}: the initializer of {name!r} returned shape {value.shape}, expected {tuple(shape)}")
        # A copy: a custom initializer may hand back an array its caller keeps.
        weight = Weight(self, name, np.array(value, dtype=np.float32, order="C", copy=True), trainable, regularizer)
        self._weights.append(weight)
        return weight

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self):
        return [w for w in self.weights if not w.trainable]

    def get_weights(self):
        """The weights as NumPy arrays, in Keras' order and shapes (kernel, then bias)."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, arrays):
        """Copies of ``arrays`` (Keras' order and shapes) become the weights, all or none."""
        assign_all(self.weights, arrays, f"layer {self.name!r}")

    def count_params(self):
        return int(sum(w.value.size for w in self.weights))

    # --- shapes ------------------------------------------------------------

    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def build_for(self, input_shape):
        """Build on first use, check the input shape, record input and output shapes; returns the output shape."""
        input_shape = tuple(input_shape)
        self.check_input_shape(input_shape)
        if not self.built:
            self.build(input_shape)
            self.built = True
        output_shape = tuple(self.compute_output_shape(input_shape))
        self.input_shape, self.output_shape = input_shape, output_shape
        return output_shape

    def check_input_shape(self, input_shape):
        """Raise ``ValueError`` naming the layer and both shapes when ``input_shape`` cannot feed this layer."""
        if self.built and self.input_shape is not None and tuple(input_shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(
                f"Layer {self.name!r} was built for input shape {self.input_shape}, got input of shape {tuple(input_shape)}"
            )

    # --- computation -------------------------------------------------------

    # Whether call() applies the activation as its kernel writes the output (a Conv2D's ReLU), so that forward does
    # not apply it again: decided when the layer is built (Conv2D.build).
    activation_in_call = False

    def call(self, x, training):
        """x -> (z, cache): the layer's computation before its activation (or after it: ``activation_in_call``)."""
        return x, None

    def backward_call(self, grad_z, cache, need_input_grad):
        """grad of z -> grad of x (None when not needed); stores weight gradients in ``weight.grad``."""
        return grad_z

    def forward(self, x, training=False, logits=False):
        """x -> (y, cache); with ``logits=True`` the activation is left to the caller (a fused loss). Where ``call``
        applies the activation itself (``activation_in_call``), y is what it returns."""
        if logits and self.activation_in_call:
            raise ValueError(
                f"Layer {self.name!r} applies its activation {self.activation} in its own kernel: a loss cannot take "
                "its output as logits"
            )
        z, cache = self.call(x, training)
        if self.activation is None or logits:
            return z, (cache, None)
        y = z if self.activation_in_call else self.activation.forward(z)
        return y, (cache, y)

    def backward(self, grad_y, cache, need_input_grad=True, logits=False):
        """grad of y -> grad of x (None when not needed); stores weight gradients in ``weight.grad``."""
        call_cache, y = cache
        grad_z = grad_y if self.activation is None or logits else self.activation.backward(grad_y, y)
        return self.backward_call(grad_z, call_cache, need_input_grad)

    def backward_from_pre_activation(self, grad_z, cache, need_input_grad=True):
        """grad of z, the output before the activation -> grad of x: for a layer whose activation's backward the next
        layer applied (a max pool after a ReLU: ``Model``'s fusion plan)."""
        return self.backward_call(grad_z, cache[0], need_input_grad)

    def __call__(self, inputs, training=None):
        """On a :class:`KerasTensor`, record the call (functional API); on an array, compute: ``training`` None (the
        default) is inference for most layers (Dropout passes its input on) while the random image layers transform,
        as in Keras 3 (``data_augmentation(images)``)."""
        if isinstance(inputs, KerasTensor):
            return KerasTensor(self.build_for(inputs.shape), layer=self, inbound=inputs)

        backend = get_backend()
        x = checks.as_real_float32(inputs, f"the input of layer {self.name!r}")
        self.build_for((None, *x.shape[1:]))
        for weight in self.weights:
            weight.to_backend(backend)
        y = backend.to_host(self.forward(backend.to_device(x), training=training)[0])
        # A layer that passes its input on (Dropout, a random layer in inference, an empty Sequential) must not hand
        # the caller's own array back: the result is the caller's to change.
        return y.copy() if isinstance(inputs, np.ndarray) and np.may_share_memory(y, inputs) else y

    # --- configuration -----------------------------------------------------

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class InputLayer(Layer):
    """The model's entry: holds the input shape, computes nothing."""

    def __init__(self, input_shape=None, batch_input_shape=None, name=None, **kwargs):
        if input_shape is None and batch_input_shape is None:
            raise ValueError("InputLayer needs input_shape (without the batch axis), e.g. input_shape=(28, 28, 1)")
        super().__init__(name=name or utils.unique_name("Input", zero_based=False), input_shape=input_shape, batch_input_shape=batch_input_shape, **kwargs)
        self.input_shape = self.output_shape = self._batch_input_shape
        self.built = True

    def check_input_shape(self, input_shape):
        expected = self._batch_input_shape
        if len(input_shape) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], input_shape[1:])):
            raise ValueError(f"Input {self.name!r} expects shape {expected}, got data of shape {tuple(input_shape)}")


def Input(shape=None, batch_size=None, name=None, batch_shape=None):
    """A symbolic input of ``shape`` (without the batch axis): the start of a functional model."""
    if shape is None and batch_shape is None:
        raise ValueError("Input needs a shape, e.g. Input(shape=(28, 28, 1))")
    batch_shape = tuple(batch_shape) if batch_shape is not None else (batch_size, *tuple(shape))
    layer = InputLayer(batch_input_shape=batch_shape, name=name)
    return KerasTensor(layer.output_shape, layer=layer, inbound=None)
