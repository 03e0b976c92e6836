"""``model.summary()``: Keras 2's table, column for column."""

from fastconv.layers.base import InputLayer


def _shape_text(model, layer):
    output_shape = model.output_shape_of(layer)
    shape = tuple(output_shape) if output_shape is not None else "multiple"
    return f"[{shape}]" if isinstance(layer, InputLayer) else str(shape)


def print_summary(model, line_length=None, print_fn=None):
    """Layer (type) / Output Shape / Param #, then total, trainable and non-trainable counts."""
    print_fn = print_fn or print
    line_length = line_length or 65
    positions = [int(line_length * p) for p in (0.45, 0.85, 1.0)]

    def row(fields):
        line = ""
        for index, field in enumerate(fields):
            if index > 0:
                line = line[:-1] + " "
            line += str(field)
            line = line[: positions[index]]
            line += " " * (positions[index] - len(line))
        print_fn(line)

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    row(["Layer (type)", "Output Shape", "Param #"])
    print_fn("=" * line_length)
    layers = model.layers
    for index, layer in enumerate(layers):
        row([f"{layer.name} ({layer.type_name})", _shape_text(model, layer), layer.count_params()])
        print_fn("=" * line_length if index == len(layers) - 1 else "_" * line_length)
    weights = {id(w): w for w in model.weights}.values()
    trainable = sum(w.value.size for w in weights if w.trainable)
    total = sum(w.value.size for w in weights)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
