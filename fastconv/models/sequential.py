"""Sequential: a stack of layers, each fed by the one before."""

from fastconv.layers.base import InputLayer, KerasTensor, Layer, check_unique_names
from fastconv.models.model import Model


class Sequential(Model):
    """``Sequential([layers...])`` or ``Sequential()`` then ``add``; built as soon as the input shape is known."""

    keras_class_name = "Sequential"

    def __init__(self, layers=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._input_layer = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor):  # Sequential([keras.Input(...), ...])
            layer = layer.layer
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("an InputLayer can only come first in a Sequential model")
            self._input_layer = layer
            self._rebuild()
            return
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"layer {layer.name!r} is already in model {self.name!r}")
        check_unique_names(self, [*self._layers, layer])
        if not self._layers and self._input_layer is None and layer._batch_input_shape is not None:
            self._input_layer = InputLayer(batch_input_shape=layer._batch_input_shape, name=f"{layer.name}_input")
        elif not self._layers and self._input_layer is None and isinstance(layer, Model) and layer.built:
            self._input_layer = InputLayer(batch_input_shape=layer.input_shape, name=f"{layer.name}_input")
        self._layers.append(layer)
        if self._input_layer is not None:
            self._rebuild()

    def pop(self):
        if not self._layers:
            raise TypeError("there are no layers in the model to pop")
        layer = self._layers.pop()
        self._rebuild()
        return layer

    def _rebuild(self):
        """Propagate the input shape through the stack (layers build on first use)."""
        if self._input_layer is None:
            self.built = False
            return
        shape = self._input_layer.output_shape
        self.input_shape = shape
        for layer in self._layers:
            shape = layer.build_for(shape)
            self._graph_shapes[id(layer)] = tuple(shape)
        self.output_shape = shape
        self.built = True
        self._plan_fusion()

    def build_for(self, input_shape):
        if self._input_layer is None:
            first = f"{self._layers[0].name}_input" if self._layers else None
            self._input_layer = InputLayer(batch_input_shape=tuple(input_shape), name=first)
            self._rebuild()
        self.check_input_shape(input_shape)
        return self.output_shape

    @property
    def layers(self):
        """The layers, without the input layer (as Keras lists a Sequential's)."""
        return list(self._layers)

    @property
    def _compute_layers(self):
        return self._layers

    def get_config(self):
        config = super().get_config()
        if self._input_layer is not None:
            config["layers"].insert(0, {"class_name": "InputLayer", "config": {"name": self._input_layer.name, "batch_input_shape": list(self._input_layer.output_shape)}})
        return config

    @classmethod
    def from_config(cls, config):
        from fastconv.layers import deserialize

        model = cls(name=config["name"])
        for layer_config in config["layers"]:
            model.add(deserialize(layer_config))
        model.restore_trainable(config)
        return model
