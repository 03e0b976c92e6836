"""Looking inside a model: any layer's output, and the gradient of any layer's output with respect to the input or
to any earlier layer's output — what Keras does with ``GradientTape`` for filter patterns and Grad-CAM.

A model is a chain of layers, and a nested model (``Sequential([conv_base, Flatten(), ...])``) is a chain inside
that chain, so :func:`flat_layers` lists the leaves in order. A name picks the output of a leaf (``'block5_conv3'``)
or of a nested model (``'vgg16'``: its last leaf's output); where a name is not unique in the whole tree, the path
``'vgg16/block5_conv3'`` is. Outputs are after the layer's activation, as Keras' ``layer.output``.

The model runs in inference mode (Dropout passes everything through) on the current backend; weights are not
touched and their ``.grad`` keeps what training left there.
"""

import numpy as np

from fastconv.backends import get_backend
from fastconv.layers.base import input_gradients_only
from fastconv.models import data as data_module
from fastconv.models.model import Model


def flat_layers(model):
    """The leaf layers of ``model`` in the order they compute, as ``(path, layer)``: ``('vgg16/block1_conv1', layer)``."""
    leaves = []
    for layer in model._compute_layers:
        if isinstance(layer, Model):
            leaves.extend((f"{layer.name}/{path}", leaf) for path, leaf in flat_layers(layer))
        else:
            leaves.append((layer.name, layer))
    return leaves


def _node_ends(leaves):
    """Every node's path (leaves and nested models) -> the index of the leaf whose output is the node's output."""
    ends = {}
    for index, (path, _) in enumerate(leaves):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            ends["/".join(parts[:depth])] = index  # a nested model ends at its last leaf
    return ends


def output_index(model, leaves, name):
    """The index in ``leaves`` of the layer whose output ``name`` (a path, or a name unique in the model's tree)
    is; ValueError naming the model and its layers otherwise."""
    ends = _node_ends(leaves)
    if name in ends:
        return ends[name]
    matches = [path for path in ends if path.rsplit("/", 1)[-1] == name]
    if len(matches) > 1:
        raise ValueError(f"model {model.name!r}: more than one layer is called {name!r} ({', '.join(matches)}); give its path")
    if not matches:
        raise ValueError(f"model {model.name!r} has no layer {name!r}; its layers are {list(ends)}")
    return ends[matches[0]]


def _prepare(model, x):
    """The model built for ``x`` and its weights on the backend; ``x`` as a checked float32 batch on the device."""
    batch = data_module.as_float_batch(x)
    if batch.ndim < 2:
        raise ValueError(f"model {model.name!r} takes a batch (samples first), got x of shape {batch.shape}")
    model._build_from_data(batch)
    backend = get_backend()
    model._place_weights(backend)
    return backend, backend.to_device(batch)


def layer_outputs(model, x, layer_names):
    """``{name: output}`` of the named layers (names or paths) for the batch ``x``, as NumPy arrays.

    Keras' ``Model(model.inputs, [model.get_layer(name).output ...]).predict(x)`` of listing 5.27. The forward pass
    stops at the last layer named.
    """
    leaves = flat_layers(model)
    wanted = {name: output_index(model, leaves, name) for name in layer_names}
    backend, tensor = _prepare(model, x)
    outputs = {}
    for index in range(max(wanted.values(), default=-1) + 1):
        tensor, _ = leaves[index][1].forward(tensor, training=False)
        for name, position in wanted.items():
            if position == index:
                outputs[name] = backend.to_host(tensor)
    return {name: outputs[name] for name in layer_names}


def gradient(model, x, of=None, wrt=None, output_grad=None):
    """The gradient of layer ``of``'s output (default: the model's output) with respect to the model input
    (``wrt=None``) or to layer ``wrt``'s output: returns ``(output_of, grad)``, NumPy float32.

    x: a batch, (N, ...) as the model takes it. ``of``/``wrt``: layer names or paths (module docstring); ``wrt``
    must come before ``of``. output_grad: the gradient of the scalar being differentiated with respect to ``of``'s
    output — an array of that output's shape, or a function of the output returning one (for a target that depends
    on it, such as the predicted class); default all ones, the gradient of the output's sum. A vector-Jacobian
    product: ``grad`` has ``x``'s shape (or ``wrt``'s output shape) and is ``d sum(output_grad * output_of) / d wrt``.

    Filter patterns: ``output_grad`` puts ``1 / (H * W)`` on one channel of a conv layer (its mean). Grad-CAM: a
    one-hot row on the class score, ``wrt`` the last conv layer. Samples are independent (no layer mixes them), so
    one call differentiates a different target per sample.
    """
    leaves = flat_layers(model)
    of_index = len(leaves) - 1 if of is None else output_index(model, leaves, of)
    wrt_index = -1 if wrt is None else output_index(model, leaves, wrt)
    if wrt_index >= of_index:
        raise ValueError(f"model {model.name!r}: the gradient of {of or 'the output'!r} is taken with respect to an earlier "
                         f"layer's output, and {wrt!r} does not come before it")  # fmt: skip
    backend, tensor = _prepare(model, x)
    caches = []
    for _, layer in leaves[: of_index + 1]:
        tensor, cache = layer.forward(tensor, training=False)
        caches.append(cache)
    output_of = backend.to_host(tensor)
    seed = _output_grad(output_grad, output_of, of or model.name)
    grad = backend.to_device(seed)
    with input_gradients_only():
        for index in range(of_index, wrt_index, -1):
            grad = leaves[index][1].backward(grad, caches[index], need_input_grad=True)
    return output_of, np.array(backend.to_host(grad), dtype=np.float32)


def _output_grad(output_grad, output_of, of_name):
    """The seed of the backward pass as a fresh float32 array of ``output_of``'s shape."""
    if output_grad is None:
        return np.ones_like(output_of, dtype=np.float32)
    if callable(output_grad):
        output_grad = output_grad(output_of.copy())
    seed = np.array(output_grad, dtype=np.float32, order="C", copy=True)
    if seed.shape != output_of.shape:
        raise ValueError(f"output_grad has shape {seed.shape}, but the output of {of_name!r} has shape {output_of.shape}")
    if not np.isfinite(seed).all():
        raise ValueError(f"output_grad for {of_name!r} contains NaN or infinity")
    return seed
