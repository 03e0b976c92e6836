"""Model (functional): the graph of layers, and the model as a layer.

A model is a chain of layers from its input to its output, and itself a
layer (so a model can sit inside another, as ``model.add(conv_base)``).
Training (compile, fit, evaluate, predict) lives apart in
:class:`fastconv.models.training.Trainer`, which the model mixes in.
"""

import numpy as np

from fastconv import activations
from fastconv.backends import get_backend, to_numpy
from fastconv.layers.base import InputLayer, KerasTensor, Layer, assign_all, check_unique_names, register_class
from fastconv.layers.pooling import MaxPooling2D
from fastconv.models.summary import print_summary
from fastconv.models.training import NonFiniteLoss, Trainer

__all__ = ["Model", "NonFiniteLoss"]


class Model(Trainer, Layer):
    """``Model(inputs, outputs)`` as in Keras' functional API (single input, single output)."""

    keras_class_name = "Functional"
    _relu_pools = frozenset()  # indices of the max pools that apply the ReLU backward of the layer before (_plan_fusion)

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._layers = []
        self._graph_shapes = {}  # id(layer) -> its output's shape in this model (a nested model's, with sizes known)
        if inputs is not None or outputs is not None:
            self._init_graph(inputs, outputs)

    # --- structure ---------------------------------------------------------

    def _init_graph(self, inputs, outputs):
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
        if not isinstance(inputs, KerasTensor) or not isinstance(outputs, KerasTensor):
            raise ValueError("Model(inputs, outputs) takes one keras.Input tensor and one output tensor")
        chain, tensor = [], outputs
        while tensor is not None and tensor is not inputs:
            chain.append(tensor.layer)
            self._graph_shapes[id(tensor.layer)] = tuple(tensor.shape)
            tensor = tensor.inbound
        if tensor is None:
            raise ValueError(f"Model {self.name!r}: the outputs {outputs} are not computed from the inputs {inputs}")
        self._layers = [inputs.layer, *reversed(chain)]
        check_unique_names(self, self._layers)
        self.input_shape, self.output_shape = inputs.shape, outputs.shape
        self._batch_input_shape = inputs.shape
        self.built = True
        self._plan_fusion()

    def output_shape_of(self, layer):
        """``layer``'s output shape in this model: as the graph computed it (a base without known sizes, called on
        180x180 images, gives (None, 5, 5, 512) here, as Keras' summary shows), else the layer's own."""
        return self._graph_shapes.get(id(layer), layer.output_shape)

    @property
    def layers(self):
        """The layers, the InputLayer first (as Keras lists a functional model's)."""
        return list(self._layers)

    @property
    def _compute_layers(self):
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in model {self.name!r}; it has {[layer.name for layer in self.layers]}")

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Setting it sets every layer's flag too, as in Keras (``conv_base.trainable = False``)."""
        self._trainable = bool(value)
        for layer in getattr(self, "_layers", []):
            layer.trainable = self._trainable

    @property
    def weights(self):
        return [weight for layer in self._layers for weight in layer.weights]

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, arrays):
        """Copies of ``arrays`` become the weights, all or none (every shape is checked first)."""
        assign_all(self.weights, arrays, f"model {self.name!r}")

    def _require_built(self):
        if not self.built:
            raise ValueError(
                f"Model {self.name!r} has not been built yet: give its first layer an input_shape, "
                "or call it on data (fit, predict) first"
            )

    def summary(self, line_length=None, print_fn=None):
        self._require_built()
        print_summary(self, line_length=line_length, print_fn=print_fn)

    # --- the model as a layer -------------------------------------------------

    def check_input_shape(self, input_shape):
        self._require_built()
        expected = self.input_shape
        if len(input_shape) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], input_shape[1:])):
            raise ValueError(f"Model {self.name!r} expects input of shape {tuple(expected)}, got {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        """The output shape for inputs of ``input_shape``: the model's own, or, for a model built with sizes not
        known yet (None, as ``VGG16(include_top=False)``), its layers' shapes followed from the sizes given."""
        if all(size is not None for size in self.input_shape[1:]):
            return self.output_shape
        shape = tuple(input_shape)
        for layer in self._compute_layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def build_for(self, input_shape):
        """Check ``input_shape`` and return the output shape; the model keeps its own shapes (Keras': a model
        without known sizes called on (None, 180, 180, 3) still takes any size)."""
        self.check_input_shape(tuple(input_shape))
        return tuple(self.compute_output_shape(input_shape))

    def forward(self, x, training=False, logits=False):
        layers = self._compute_layers
        caches = []
        for index, layer in enumerate(layers):
            last_logits = logits and index == len(layers) - 1
            x, cache = layer.forward(x, training=training, logits=last_logits)
            if layer.activity_regularizer is not None:
                cache = _ActivityCache(layer, cache, x, last_logits)
            caches.append(cache)
        return x, caches

    def backward(self, grad, caches, need_input_grad=True, logits=False):
        layers = self._compute_layers
        trainable = [index for index, layer in enumerate(layers) if layer.trainable_weights]
        # Layers before the first trainable one need no backward pass unless the caller wants our input gradient.
        stop = 0 if need_input_grad else (trainable[0] if trainable else len(layers))
        pre_activation = False  # True: grad is of the layer's output before its ReLU (the pool after it took that step)
        for index in range(len(layers) - 1, stop - 1, -1):
            layer, cache = layers[index], caches[index]
            if isinstance(cache, _ActivityCache):
                grad, cache = cache.add_gradient(grad), cache.cache
            needs_input = need_input_grad or index > stop
            if pre_activation:
                grad, pre_activation = layer.backward_from_pre_activation(grad, cache, needs_input), False
            elif index > stop and index in self._relu_pools:
                grad, pre_activation = layer.backward_through_relu(grad, cache), True
            else:
                grad = layer.backward(grad, cache, need_input_grad=needs_input, logits=logits and index == len(layers) - 1)
        return grad if need_input_grad else None

    def _plan_fusion(self):
        """Decide, once the layers are known, which max pools apply the backward of the ReLU before them
        (:func:`_pool_after_relu`); ``backward`` follows this plan."""
        layers = self._compute_layers
        self._relu_pools = frozenset(index for index in range(1, len(layers)) if _pool_after_relu(layers[index - 1], layers[index]))

    def regularization_loss(self, caches):
        """The penalties of the last forward pass that made ``caches``: every trainable weight's regularizer on its
        value, and every activity regularizer on its layer's output (nested models included), as Keras' ``losses``."""
        penalty = sum(weight.regularizer(to_numpy(weight.value)) for weight in self.trainable_weights if weight.regularizer is not None)
        return penalty + _activity_penalties(caches)

    def _output_activation(self):
        layer = self._compute_layers[-1] if self._compute_layers else None
        if isinstance(layer, Model):
            return layer._output_activation()
        return None if layer is None or layer.activation is None else layer.activation.name

    # --- saving (fastconv.models.saving) -------------------------------------

    def save(self, filepath, overwrite=True, include_optimizer=True, save_format=None):
        """Keras 3's ``.keras`` archive when ``filepath`` ends in ``.keras``, else legacy HDF5 (both open in Keras 3).
        Under a distribution strategy only rank 0 writes (every replica holds the same weights)."""
        from fastconv.models import saving

        if self.distribution is not None and not self.distribution.is_chief:
            return

        saving.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True, save_format=None):
        """Keras 3's weights layout when ``filepath`` ends in ``.weights.h5``, else the legacy HDF5 layout; only rank
        0 writes under a distribution strategy."""
        from fastconv.models import saving

        if self.distribution is not None and not self.distribution.is_chief:
            return

        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False):
        from fastconv.models import saving

        saving.load_weights(self, filepath, by_name=by_name, skip_mismatch=skip_mismatch)

    # --- configuration -------------------------------------------------------

    def get_config(self):
        layers = []
        for layer in self._layers:
            config = layer.get_config()
            if isinstance(layer, InputLayer):
                config = {"name": layer.name, "batch_input_shape": list(layer.output_shape)}
            layers.append({"class_name": "InputLayer" if isinstance(layer, InputLayer) else type(layer).__name__, "config": config})
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config):
        from fastconv.layers import deserialize

        layer_configs = config["layers"]
        tensor = inputs = None
        for layer_config in layer_configs:
            layer = deserialize(layer_config)
            if isinstance(layer, InputLayer):
                tensor = inputs = KerasTensor(layer.output_shape, layer=layer)
            else:
                tensor = layer(tensor)
        model = cls(inputs, tensor, name=config["name"])
        model.restore_trainable(config)
        return model

    def restore_trainable(self, config):
        """The model's own saved flag, leaving each layer's own (already restored) flag as it was saved."""
        self._trainable = bool(config.get("trainable", True))


register_class(Model, "Functional")  # Keras 3 writes a functional model's class as 'Functional'


def _pool_after_relu(previous, layer):
    """Whether ``layer`` can apply the backward of ``previous``'s ReLU in its own: a max pool with no activation of
    its own right after a plain layer whose activation is ReLU (``MaxPooling2D.backward_through_relu``), and whose
    output no activity regularizer takes a gradient from (that gradient joins before the ReLU's backward)."""
    return (
        isinstance(layer, MaxPooling2D)
        and layer.activation is None
        and not isinstance(previous, Model)
        and previous.activation is activations.RELU
        and previous.activity_regularizer is None
    )


class _ActivityCache:
    """A layer's cache with what its activity regularizer needs: its output (after the activation, which a fused
    loss leaves to the loss: ``logits``) and the penalty on it, the regularizer's value divided by the batch size
    (as Keras 3 and tf.keras do: measured with Keras 3.15, whose ``model.losses`` hold it so)."""

    def __init__(self, layer, cache, output, logits):
        self.layer, self.cache, self.logits = layer, cache, logits
        backend = get_backend()
        activated = layer.activation.forward(output) if logits and layer.activation is not None else output
        self.output = backend.to_host(activated)
        self.batch = max(1, self.output.shape[0])
        self.penalty = layer.activity_regularizer(self.output) / self.batch

    def add_gradient(self, grad):
        """``grad`` (of the layer's output, or of its logits) plus the penalty's gradient with respect to the same."""
        backend = get_backend()
        penalty_grad = self.layer.activity_regularizer.gradient(self.output) / np.float32(self.batch)
        if self.logits and self.layer.activation is not None:
            penalty_grad = backend.to_host(self.layer.activation.backward(backend.to_device(penalty_grad), backend.to_device(self.output)))
        return backend.to_device(backend.to_host(grad) + penalty_grad)


def _activity_penalties(caches):
    """The activity penalties held in a model's caches, those of nested models included."""
    total = 0.0
    for cache in caches:
        if isinstance(cache, _ActivityCache):
            total += cache.penalty
            cache = cache.cache
        if isinstance(cache, list):  # a nested model's caches
            total += _activity_penalties(cache)
    return total
