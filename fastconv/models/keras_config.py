"""Keras' model configurations, in and out: what ``model_config`` / ``config.json`` hold, as fastconv models.

Read: the configurations of Keras 2.x (tf.keras, tf_keras; ``batch_input_shape``, inbound nodes as
``[[["conv2d", 0, 0, {}]]]``), of Keras 3 (``batch_shape``, ``DTypePolicy``, inbound nodes as
``{"args": [{"class_name": "__keras_tensor__", ...}]}``) and of fastconv 0.2's first format. Each
Keras layer config becomes the arguments of the fastconv layer of the same class; every option is
either carried over, or checked to be at the value under which fastconv computes the same function
(``dilation_rate=(1, 1)``, no constraint, ``data_format='channels_last'`` ...). Anything else — a
layer class, an activation, an initializer, a non-default option, a graph that is not a single chain
— raises ``ValueError`` naming the file, the layer and the option: a model is never rebuilt as a
different one.

Written: Keras 3's configuration (as ``keras.Model.get_config`` and ``keras.saving`` write it), so
that Keras 3 rebuilds the same model from fastconv's files.
"""

import re

import numpy as np

from fastconv import activations, losses, metrics, optimizers, regularizers
from fastconv.layers.preprocessing import MEAN_PIXEL_BGR

# --- names -------------------------------------------------------------------

# Keras class names (of any generation) -> the fastconv class that computes the same.
FASTCONV_CLASS = {
    "InputLayer": "InputLayer", "Conv2D": "Conv2D", "Convolution2D": "Conv2D", "Dense": "Dense", "Flatten": "Flatten",
    "Dropout": "Dropout", "Activation": "Activation", "MaxPooling2D": "MaxPooling2D", "MaxPool2D": "MaxPooling2D",
    "AveragePooling2D": "AveragePooling2D", "AvgPool2D": "AveragePooling2D",
    "GlobalMaxPooling2D": "GlobalMaxPooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalAveragePooling2D": "GlobalAveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "Sequential": "Sequential", "Functional": "Model", "Model": "Model",
    "Rescaling": "Rescaling", "RandomFlip": "RandomFlip", "RandomRotation": "RandomRotation", "RandomZoom": "RandomZoom",
    "CaffePreprocessing": "CaffePreprocessing",  # never in a Keras file as such: read from and written as five ops
}  # fmt: skip


def snake_case(class_name):
    """Keras' ``naming.to_snake_case``: ``MaxPooling2D`` -> ``max_pooling2d`` (the names of Keras 3's weight groups)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# --- reading: options ----------------------------------------------------------


def _is_one(value):
    return value in (1, [1, 1], (1, 1))


def _is_channels_last(value):
    return value in (None, "channels_last")


def _is_float32(value):
    if isinstance(value, dict):  # Keras 3 DTypePolicy / tf.keras Policy
        value = (value.get("config") or {}).get("name")
    return value in (None, "float32")


# Options every layer may carry, with the values at which fastconv computes the same thing.
_COMMON_NEUTRAL = {"dtype": _is_float32, "autocast": lambda v: True}
_WEIGHTED_NEUTRAL = {
    "kernel_constraint": None, "bias_constraint": None, "lora_rank": None, "lora_alpha": lambda v: True, "quantization_config": None,
}  # fmt: skip
_REGULARIZERS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
# The random image layers: how Keras makes its random numbers (tf_keras' rng_type, an older value_range) changes no
# definition of what they compute.
_RANDOM_NEUTRAL = {"data_format": _is_channels_last, "rng_type": lambda v: True, "value_range": lambda v: True}
# class -> (options carried over as fastconv arguments, options that must be neutral)
_OPTIONS = {
    "InputLayer": ((), {"sparse": lambda v: not v, "ragged": lambda v: not v, "optional": lambda v: not v, "input_tensor": None}),
    "Conv2D": (
        ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "kernel_initializer", "bias_initializer",
         *_REGULARIZERS),
        {"data_format": _is_channels_last, "dilation_rate": _is_one, "groups": _is_one, **_WEIGHTED_NEUTRAL},
    ),
    "Dense": (("units", "activation", "use_bias", "kernel_initializer", "bias_initializer", *_REGULARIZERS), _WEIGHTED_NEUTRAL),
    "Flatten": ((), {"data_format": _is_channels_last}),
    "Dropout": (("rate", "seed"), {"noise_shape": None}),
    "Activation": (("activation",), {}),
    "MaxPooling2D": (("pool_size", "strides", "padding"), {"data_format": _is_channels_last}),
    "AveragePooling2D": (("pool_size", "strides", "padding"), {"data_format": _is_channels_last}),
    "GlobalMaxPooling2D": (("keepdims",), {"data_format": _is_channels_last}),
    "GlobalAveragePooling2D": (("keepdims",), {"data_format": _is_channels_last}),
    "CaffePreprocessing": ((), {}),
    "Rescaling": (("scale", "offset"), {}),
    "RandomFlip": (("mode", "seed"), _RANDOM_NEUTRAL),
    "RandomRotation": (("factor", "fill_mode", "interpolation", "seed", "fill_value"), _RANDOM_NEUTRAL),
    "RandomZoom": (("height_factor", "width_factor", "fill_mode", "interpolation", "seed", "fill_value"), _RANDOM_NEUTRAL),
}

_INITIALIZERS = {
    "GlorotUniform": "glorot_uniform", "glorot_uniform": "glorot_uniform", "Zeros": "zeros", "zeros": "zeros",
    "Ones": "ones", "ones": "ones", "HeNormal": "he_normal", "he_normal": "he_normal",
}  # fmt: skip


def _neutral(check, value):
    return check(value) if callable(check) else value == check


def _initializer(value):
    """A Keras initializer config (name or ``{'class_name': ..., 'config': ...}``) as a fastconv initializer name."""
    if isinstance(value, dict):
        class_name, config = value.get("class_name"), value.get("config") or {}
        if class_name == "VarianceScaling":  # Keras 2.0-2.2 wrote glorot_uniform and he_normal this way
            shape = (config.get("scale"), config.get("mode"), config.get("distribution"))
            if shape == (1.0, "fan_avg", "uniform"):
                return "glorot_uniform"
            if shape[:2] == (2.0, "fan_in") and shape[2] in ("normal", "truncated_normal"):
                return "he_normal"
        value = class_name
    if value not in _INITIALIZERS:
        raise ValueError(f"the initializer {value!r} is not one fastconv has ({', '.join(sorted(set(_INITIALIZERS.values())))})")
    return _INITIALIZERS[value]


def _activation(value):
    if isinstance(value, dict):  # Keras 3 may write a built-in activation as a serialized function
        value = value.get("config")
    try:
        activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(f"the activation {value!r} is not one fastconv has (linear, relu, sigmoid, softmax)") from None
    return value


# Regularizer configs of any generation (Keras 2's L1L2, tf.keras' L2, Keras 3's with its module) read alike.
_CONVERT = {
    "kernel_initializer": _initializer, "bias_initializer": _initializer, "activation": _activation,
    **{key: regularizers.get for key in _REGULARIZERS},
}  # fmt: skip


def layer_arguments(fastconv_class, config):
    """The fastconv constructor arguments for a Keras layer ``config``; ValueError naming any option fastconv lacks."""
    carried, neutral = _OPTIONS[fastconv_class]
    arguments = {"name": config.get("name")} if config.get("name") is not None else {}
    if "trainable" in config:
        arguments["trainable"] = bool(config["trainable"])
    for key in ("batch_input_shape", "batch_shape"):  # Keras 2 puts it on the first layer, Keras 3 on InputLayer
        if config.get(key) is not None:
            arguments["batch_input_shape"] = tuple(config[key])
    if fastconv_class == "InputLayer" and "batch_input_shape" not in arguments and config.get("shape") is not None:
        arguments["batch_input_shape"] = (config.get("batch_size"), *config["shape"])
    for key, value in config.items():
        if key in ("name", "trainable", "batch_input_shape", "batch_shape", "shape", "batch_size", "input_dim"):
            continue
        if key in carried:
            arguments[key] = _CONVERT[key](value) if key in _CONVERT and value is not None else value
        elif key in neutral or key in _COMMON_NEUTRAL:
            check = neutral.get(key, _COMMON_NEUTRAL.get(key))
            if not _neutral(check, value):
                raise ValueError(f"the option {key}={value!r} is not supported by fastconv")
        elif value is not None:
            raise ValueError(f"the option {key}={value!r} is not supported by fastconv")
    if fastconv_class == "Dense" and config.get("input_dim") is not None and "batch_input_shape" not in arguments:
        arguments["batch_input_shape"] = (None, config["input_dim"])
    return arguments


# --- reading: models -----------------------------------------------------------


def _inputs_of(entry, layer_name):
    """The names of the layers whose outputs feed this functional-graph entry (one call), Keras 2 or 3 style."""
    nodes = entry.get("inbound_nodes", [])
    if not nodes:
        return []
    if len(nodes) > 1:
        raise ValueError(f"layer {layer_name!r} is called {len(nodes)} times; fastconv models call each layer once")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [keras tensors], "kwargs": {...}}
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
        tensors = node.get("args", [])
        if len(tensors) == 1 and isinstance(tensors[0], list):
            tensors = tensors[0]
        names = []
        for tensor in tensors:
            if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"):
                raise ValueError(f"layer {layer_name!r} is called with the argument {str(tensor)[:80]}; fastconv takes one tensor")
            names.append(tensor["config"]["keras_history"][0])
    else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        names = [call[0] for call in node]
        kwargs = {k: v for call in node if len(call) > 3 for k, v in (call[3] or {}).items() if v is not None}
    # Keras 3.15 records training=False on a Dropout called while the graph is built; the model's own call overrides
    # it (fit trains, predict does not), as fastconv's does.
    if isinstance(kwargs.get("training"), bool):
        del kwargs["training"]
    if kwargs:
        raise ValueError(f"layer {layer_name!r} is called with the arguments {kwargs}, which fastconv does not support")
    return names


_OPS_MODULE = "keras.src.ops.numpy"


def _tensor(name, shape):
    return {"class_name": "__keras_tensor__", "config": {"shape": list(shape), "dtype": "float32", "keras_history": [name, 0, 0]}}


def caffe_preprocessing_entries(name, source_name, input_shape):
    """The five Keras 3 operations that ``keras.applications.vgg16.preprocess_input`` records on a symbolic tensor
    (``x[..., 2]``, ``x[..., 1]``, ``x[..., 0]``, stacked on the last axis, plus the negated mean pixel), named after
    ``name`` with the last (the Add) named ``name`` itself, reading ``source_name``'s output of ``input_shape``."""
    channel_shape = list(input_shape[:-1])
    picks = [f"{name}_get_item_{channel}" for channel in (2, 1, 0)]
    entries = [{
        "module": _OPS_MODULE, "class_name": "GetItem", "config": {"name": pick}, "registered_name": "GetItem", "name": pick,
        "inbound_nodes": [{"args": [_tensor(source_name, input_shape), [{"class_name": "__ellipsis__", "config": {}}, channel]],
                           "kwargs": {}}],
    } for pick, channel in zip(picks, (2, 1, 0))]  # fmt: skip
    entries.append({
        "module": _OPS_MODULE, "class_name": "Stack", "config": {"name": f"{name}_stack", "axis": -1}, "registered_name": "Stack",
        "name": f"{name}_stack", "inbound_nodes": [{"args": [[_tensor(pick, channel_shape) for pick in picks]], "kwargs": {}}],
    })  # fmt: skip
    mean = [[[(-MEAN_PIXEL_BGR).tolist()]]] if len(input_shape) == 4 else [(-MEAN_PIXEL_BGR).tolist()]
    entries.append({
        "module": _OPS_MODULE, "class_name": "Add", "config": {"name": name}, "registered_name": "Add", "name": name,
        "inbound_nodes": [{"args": [_tensor(f"{name}_stack", input_shape), {"class_name": "__tensor__", "config": {"value": mean, "dtype": "float32"}}],
                           "kwargs": {}}],
    })  # fmt: skip
    return entries


def _collapse_caffe_preprocessing(layers):
    """``layers`` with each run of Keras 3's five preprocess_input operations (see
    :func:`caffe_preprocessing_entries`) replaced by one ``CaffePreprocessing`` entry named as its Add; any other
    operation is left for the chain walk to refuse."""
    by_name = {entry.get("name"): entry for entry in layers if isinstance(entry, dict)}
    replaced, collapsed = set(), {}
    for entry in layers:
        found = _caffe_pattern(entry, by_name) if isinstance(entry, dict) and entry.get("class_name") == "Add" else None
        if found is None:
            continue
        source, parts = found
        replaced |= set(parts)
        collapsed[entry["name"]] = {"class_name": "CaffePreprocessing", "name": entry["name"], "config": {"name": entry["name"]},
                                    "inbound_nodes": [{"args": [source], "kwargs": {}}]}  # fmt: skip
    if not collapsed:
        return layers  # anything malformed is left for the chain walk to name
    dropped = replaced - set(collapsed)
    kept = [entry for entry in layers if not isinstance(entry, dict) or entry.get("name") not in dropped]
    return [collapsed.get(entry.get("name"), entry) if isinstance(entry, dict) else entry for entry in kept]


def _caffe_pattern(add, by_name):
    """(the source tensor, the names of the five entries) when ``add`` ends Keras' preprocess_input, else None."""
    try:
        (args,) = [node["args"] for node in add["inbound_nodes"]]
        stacked, constant = args
        value = np.asarray(constant["config"]["value"], dtype=np.float32).reshape(-1)
        stack = by_name[stacked["config"]["keras_history"][0]]
        if constant.get("class_name") != "__tensor__" or not np.array_equal(value, -MEAN_PIXEL_BGR):
            return None
        if stack.get("class_name") != "Stack" or stack["config"].get("axis") != -1:
            return None
        (stack_args,) = [node["args"] for node in stack["inbound_nodes"]]
        picks = [by_name[tensor["config"]["keras_history"][0]] for tensor in stack_args[0]]
        sources = []
        for pick, channel in zip(picks, (2, 1, 0)):
            (pick_args,) = [node["args"] for node in pick["inbound_nodes"]]
            tensor, index = pick_args
            if pick.get("class_name") != "GetItem" or index != [{"class_name": "__ellipsis__", "config": {}}, channel]:
                return None
            sources.append(tensor)
        if len(picks) != 3 or any(source != sources[0] for source in sources):
            return None
        return sources[0], [add["name"], stack["name"], *(pick["name"] for pick in picks)]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def _chain(config):
    """The functional graph's layer entries in order from its input to its output; ValueError unless a chain."""
    entries = {}
    for entry in _collapse_caffe_preprocessing(config["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"a layer of the graph must be {{'class_name': ..., 'config': {{...}}}}, got {str(entry)[:80]}")
        name = entry.get("name", entry["config"].get("name"))
        if not isinstance(name, str):
            raise ValueError(f"a layer of the graph has the name {str(name)[:80]}; names are strings")
        entries[name] = entry

    def ends(key):
        value = config.get(key)
        items = value if value and isinstance(value[0], list) else [value]  # [[name, 0, 0]] or [name, 0, 0]
        if len(items) != 1:
            raise ValueError(f"the model has {len(items)} {key.split('_')[0]}s; fastconv models take one input and one output")
        return items[0][0]

    first, last = ends("input_layers"), ends("output_layers")
    order, name, visited = [], last, []
    while True:
        if name not in entries:
            raise ValueError(f"the graph refers to a layer {name!r} that the configuration does not hold")
        if name in visited:  # a crafted graph: without this the walk never ends
            cycle = visited[visited.index(name):][::-1]  # in the direction data flows
            cycle.append(cycle[0])
            raise ValueError(f"the graph has a cycle: {' -> '.join(map(repr, cycle))}; a model's layers must form a chain from its input")
        visited.append(name)
        order.append(entries[name])
        sources = _inputs_of(entries[name], name)
        if not sources:
            break
        if len(sources) > 1:
            raise ValueError(f"layer {name!r} takes {len(sources)} inputs ({sources}); fastconv models are single chains")
        name = sources[0]
    if name != first:
        raise ValueError(f"the output is not computed from the input {first!r}")
    unused = [n for n in entries if n not in visited]
    if unused:
        raise ValueError(f"the layers {unused} are not on the path from the input to the output; fastconv models are single chains")
    return list(reversed(order))


def fastconv_config(keras_config, source):
    """A Keras model or layer config (any generation) as the config fastconv's ``layers.deserialize`` takes.

    ``source`` names the file in every error. Models come back as ``Sequential`` or ``Model`` with their
    layers in order (a functional graph flattened to its chain); layers as fastconv arguments. A config that
    names a user's own class or function (:func:`check_keras_classes`) is refused.
    """
    check_keras_classes(keras_config, source)
    return _converted(keras_config, source, 0)


_KERAS_PACKAGES = ("keras", "tf_keras")
MAX_NESTED_MODELS = 16  # models inside models; a crafted file could nest them until the interpreter's stack runs out


def check_keras_classes(config, source, owner_kind="layer"):
    """Refuse a config that names a class or function from someone's own code.

    Keras 3 records where each object's class comes from: ``module`` (``keras.layers``) and ``registered_name``
    (None for Keras' own; ``'Custom>Conv2D'`` or ``'my_acts>softmax'`` for what a user registered). Rebuilding
    such an object as fastconv's built-in of the same short name would be a different model, so it is a
    ValueError naming the file, the layer and the class, as Keras 3 refuses a class it cannot find.
    """
    stack = [(config, None)]
    while stack:
        value, owner = stack.pop()
        if isinstance(value, dict):
            inner = value.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                owner = f"{owner_kind} {inner['name']!r}"
            if "module" in value and "class_name" in value:
                _check_keras_class(value, owner, source)
            stack.extend((item, owner) for key, item in value.items() if key != "compile_config")  # checked if compiled
        elif isinstance(value, list):
            stack.extend((item, owner) for item in value)


def _check_keras_class(entry, owner, source):
    module, class_name, registered = entry.get("module"), entry.get("class_name"), entry.get("registered_name")
    package = module.split(".", 1)[0] if isinstance(module, str) else None
    if package in _KERAS_PACKAGES and registered in (None, class_name):
        return
    what = f"the function {entry.get('config')!r}" if class_name == "function" else f"the class {class_name!r}"
    where = f" {owner}:" if owner else ""
    raise ValueError(
        f"{source}:{where} {what} comes from module {module!r}, registered as {registered!r}: a user's own code, not "
        "Keras'. fastconv rebuilds Keras' built-in classes only, and will not put its own class of the same name in its place"
    )


def _converted(keras_config, source, depth):
    if not isinstance(keras_config, dict) or "class_name" not in keras_config:
        raise ValueError(f"{source}: a layer's configuration must be {{'class_name': ..., 'config': ...}}, got {str(keras_config)[:120]}")
    class_name, config = keras_config["class_name"], keras_config.get("config")
    if isinstance(config, list):  # Keras 2.0-2.2 wrote a Sequential's config as the list of its layers
        config = {"name": "sequential", "layers": config}
    if not isinstance(config, dict):
        raise ValueError(f"{source}: the configuration of a {class_name} is not a dict: {str(config)[:120]}")
    name = config.get("name")
    fastconv_class = FASTCONV_CLASS.get(class_name)
    if fastconv_class is None:
        raise ValueError(
            f"{source}: layer {name!r} is a {class_name}, which fastconv does not have "
            f"(it has {', '.join(sorted(set(FASTCONV_CLASS.values())))})"
        )
    if fastconv_class in ("Sequential", "Model"):
        if depth >= MAX_NESTED_MODELS:
            raise ValueError(f"{source}: model {name!r} is nested {depth} models deep; fastconv reads at most {MAX_NESTED_MODELS}")
        return _model_config(fastconv_class, config, source, depth)
    try:
        return {"class_name": fastconv_class, "config": layer_arguments(fastconv_class, config)}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{source}: layer {name!r} ({class_name}): {error}") from None


def _model_config(fastconv_class, config, source, depth):
    name = config.get("name")
    try:
        if not isinstance(config.get("layers"), list):
            raise ValueError("the configuration holds no list of layers")
        entries = _chain(config) if fastconv_class == "Model" and "input_layers" in config else config["layers"]
        if not _is_float32(config.get("dtype")):
            raise ValueError(f"the option dtype={config['dtype']!r} is not supported by fastconv")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ValueError(f"{source}: model {name!r}: {error}") from None
    layers = [_converted(entry, source, depth + 1) for entry in entries]
    if fastconv_class == "Sequential" and config.get("build_input_shape") and layers and layers[0]["class_name"] != "InputLayer":
        first = layers[0]["config"]
        if "batch_input_shape" not in first:  # Keras 3: a Sequential built on data keeps its input shape here
            layers.insert(0, {"class_name": "InputLayer", "config": {"batch_input_shape": tuple(config["build_input_shape"])}})
    return {"class_name": fastconv_class, "config": {"name": name, "trainable": bool(config.get("trainable", True)), "layers": layers}}


# --- reading: compile settings --------------------------------------------------------


_LOSSES = {
    "CategoricalCrossentropy": "categorical_crossentropy", "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "BinaryCrossentropy": "binary_crossentropy", "MeanSquaredError": "mean_squared_error",
}  # fmt: skip
_LOSS_NEUTRAL = {"from_logits": False, "label_smoothing": 0, "axis": -1, "ignore_class": None, "reduction": "sum_over_batch_size"}
_ACCURACY_FUNCTIONS = ("binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy")


def _loss(value):
    if isinstance(value, dict):
        class_name, config = value.get("class_name"), value.get("config") or {}
        if class_name not in _LOSSES:
            raise ValueError(f"the loss {class_name!r} is not one fastconv has")
        for key, setting in config.items():
            if key in _LOSS_NEUTRAL and setting != _LOSS_NEUTRAL[key] and not (key == "reduction" and setting in ("auto", "sum_over_batch_size")):
                raise ValueError(f"the loss option {key}={setting!r} ({class_name}) is not supported by fastconv")
        value = _LOSSES[class_name]
    losses.get(value)  # ValueError naming the loss when fastconv lacks it
    return value


def _metrics(value):
    """Keras' metrics (Keras 3: names; Keras 2: per output, MeanMetricWrapper dicts) as fastconv's metric names."""
    names = []
    for item in value or []:
        for metric in item if isinstance(item, list) else [item]:
            if isinstance(metric, dict):
                config = metric.get("config") or {}
                if metric.get("class_name") != "MeanMetricWrapper" or config.get("fn") not in _ACCURACY_FUNCTIONS:
                    raise ValueError(f"the metric {metric.get('class_name')} {config.get('name', '')!r} is not one fastconv has")
                metric = config.get("name")
            names.append(metric)
    metrics.check_metrics(names)
    return names


_OPTIMIZER_NEUTRAL = {
    "weight_decay": (None, 0, 0.0), "clipnorm": (None,), "global_clipnorm": (None,), "clipvalue": (None,),
    "use_ema": (False, None), "loss_scale_factor": (None,), "gradient_accumulation_steps": (None, 1), "decay": (0, 0.0, None),
    "centered": (False, None), "amsgrad": (False, None),
}  # fmt: skip
_OPTIMIZER_IGNORED = ("name", "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer")
_OPTIMIZER_ARGUMENTS = {
    "SGD": ("learning_rate", "lr", "momentum", "nesterov"),
    "RMSprop": ("learning_rate", "lr", "rho", "epsilon"),
    "Adam": ("learning_rate", "lr", "beta_1", "beta_2", "epsilon"),
}


def optimizer_from_config(value):
    """A Keras optimizer config (``{'class_name': 'RMSprop', 'config': {...}}``, or a name) as a fastconv optimizer."""
    if isinstance(value, str):
        return optimizers.get(value)
    class_name = str(value.get("class_name", "")).removeprefix("Custom>")  # tf.keras 2.11+ writes 'Custom>Adam'
    config = value.get("config") or {}
    if class_name not in _OPTIMIZER_ARGUMENTS:
        raise ValueError(f"the optimizer {class_name!r} is not one fastconv has (SGD, RMSprop, Adam)")
    arguments = {}
    for key, setting in config.items():
        if key in _OPTIMIZER_ARGUMENTS[class_name]:
            if isinstance(setting, dict):
                raise ValueError(f"the optimizer's {key} is a schedule ({setting.get('class_name')}); fastconv takes a number")
            if setting is not None:  # Keras 2.0 wrote epsilon=None for its default
                arguments[key] = setting
        elif key == "momentum" and class_name == "RMSprop":
            if setting not in (0, 0.0, None):
                raise ValueError(f"the option momentum={setting!r} of RMSprop is not supported by fastconv")
        elif key in _OPTIMIZER_NEUTRAL:
            if setting not in _OPTIMIZER_NEUTRAL[key]:
                raise ValueError(f"the optimizer option {key}={setting!r} ({class_name}) is not supported by fastconv")
        elif key not in _OPTIMIZER_IGNORED and setting is not None:
            raise ValueError(f"the optimizer option {key}={setting!r} ({class_name}) is not supported by fastconv")
    return optimizers.from_config(class_name, arguments)


def compile_arguments(training_config, source):
    """``(optimizer, loss, metrics)`` from a legacy ``training_config`` or a Keras 3 ``compile_config``."""
    check_keras_classes(training_config, source, "compile setting")
    try:
        for key in ("loss_weights", "weighted_metrics"):
            if training_config.get(key):
                raise ValueError(f"{key}={training_config[key]!r} is not supported by fastconv")
        loss = training_config.get("loss")
        if isinstance(loss, (list, dict)) and not (isinstance(loss, dict) and "class_name" in loss):
            raise ValueError(f"the model has a loss per output ({loss}); fastconv models have one output")
        loss = _loss(loss)
        optimizer_config = training_config.get("optimizer_config", training_config.get("optimizer"))
        optimizer = optimizer_from_config(optimizer_config if optimizer_config is not None else "rmsprop")
        return optimizer, loss, _metrics(training_config.get("metrics"))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{source}: cannot restore the compile settings: {error} (load_model(..., compile=False) skips them)") from None


# --- writing -------------------------------------------------------------------------

MODEL_TYPES = ("Sequential", "Functional")  # the type names of layers that are models


def is_keras_operation(layer):
    """Whether Keras 3 keeps ``layer`` as operations of the graph, not a layer: no weights group, no ``layer_names``
    entry (``preprocess_input`` on a symbolic tensor)."""
    return layer.type_name == "CaffePreprocessing"


def _input_config(name, batch_shape):
    return {"batch_shape": list(batch_shape), "dtype": "float32", "sparse": False, "name": name}


def _entry(class_name, config, archive, module="keras.layers", input_shape=None):
    entry = {"class_name": class_name, "config": config}
    if archive:
        entry = {"module": module, **entry, "registered_name": None}
        if input_shape is not None:
            entry["build_config"] = {"input_shape": list(input_shape)}
    return entry


def layer_config(layer, archive=False):
    """The Keras 3 ``{'class_name', 'config'}`` of a fastconv layer (a nested model included)."""
    if layer.type_name == "Sequential":
        return _entry("Sequential", sequential_config(layer, archive), archive, module="keras")
    if layer.type_name == "Functional":
        entry = _entry("Functional", functional_config(layer, archive), archive, module="keras.src.models.functional")
        if archive:
            entry["registered_name"] = "Functional"
        return entry
    if layer.type_name == "InputLayer":
        return _entry("InputLayer", _input_config(layer.name, layer.output_shape), archive)
    config = {key: value for key, value in layer.get_config().items() if key != "batch_input_shape"}
    config["dtype"] = "float32"
    if layer.type_name in ("Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
                           "RandomFlip", "RandomRotation", "RandomZoom"):
        config["data_format"] = "channels_last"
    return _entry(layer.type_name, config, archive, input_shape=layer.input_shape)


def sequential_config(model, archive=False):
    layers = [layer_config(layer, archive) for layer in model.layers]
    if model.built:
        input_layer = model._input_layer
        layers.insert(0, _entry("InputLayer", _input_config(input_layer.name, input_layer.output_shape), archive))
    config = {"name": model.name, "trainable": model.trainable, "dtype": "float32", "layers": layers}
    if model.built:
        config["build_input_shape"] = list(model.input_shape)
    return config


def functional_config(model, archive=False):
    layers, previous = [], None
    for layer in model.layers:
        if layer.type_name == "CaffePreprocessing":  # Keras 3 records preprocess_input as five operations
            layers += caffe_preprocessing_entries(layer.name, previous.name, model.output_shape_of(previous))
            previous = layer
            continue
        entry = layer_config(layer, archive)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [] if previous is None else [{
            "args": [{"class_name": "__keras_tensor__", "config": {
                "shape": list(model.output_shape_of(previous)), "dtype": "float32", "keras_history": [previous.name, 0, 0]}}],
            "kwargs": {},
        }]  # fmt: skip
        layers.append(entry)
        previous = layer
    return {
        "name": model.name, "trainable": model.trainable, "layers": layers,
        "input_layers": [model.layers[0].name, 0, 0], "output_layers": [model.layers[-1].name, 0, 0],
    }  # fmt: skip


def model_config(model, archive=False):
    """The whole model's Keras 3 config: ``model_config`` of a legacy HDF5 file, or ``config.json`` of an archive."""
    return layer_config(model, archive)


def optimizer_config(optimizer):
    """``{'class_name', 'config'}`` as Keras 3 writes it (every option fastconv lacks at its neutral value)."""
    config = {"name": optimizer.name, "learning_rate": optimizer.learning_rate, **optimizer.get_config()}
    class_name = type(optimizer).__name__
    if class_name == "RMSprop":
        config.update(momentum=0.0, centered=False)
    elif class_name == "Adam":
        config.update(amsgrad=False)
    return {"class_name": class_name, "config": config}


def training_config(model, archive=False):
    """The legacy ``training_config`` attribute, or (``archive=True``) Keras 3's ``compile_config``."""
    common = {
        "loss": model.loss.name, "loss_weights": None, "metrics": list(model.metric_names) or None, "weighted_metrics": None,
        "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False,
    }  # fmt: skip
    optimizer = optimizer_config(model.optimizer)
    if archive:
        return {"optimizer": {"module": "keras.optimizers", **optimizer, "registered_name": None}, **common}
    return {**common, "optimizer_config": optimizer}
