"""An optimizer's state in a file, in the orders the Keras generations write it.

fastconv writes Keras 3's order, in legacy HDF5 (``optimizer_weights``, names such as
``rmsprop/conv2d_kernel_velocity``) and in Keras 3's weights file (``optimizer/vars/0, 1, ...``):

    iteration (int64), learning_rate (float32), then for each trainable weight in order, each of its
    slots (Adam: momentum, velocity; RMSprop: velocity; SGD with momentum: momentum).

It reads that order, the one of tf.keras 2.11+ (the same without learning_rate: ``iteration:0``,
``Adam/m/dense/kernel:0``, ``Adam/v/dense/kernel:0``, ...), the one of tf.keras up to 2.10 and of
fastconv 0.2 (``Adam/iter:0``, then every weight's first slot, then every weight's second slot), and
the one of Keras 2.0-2.3 (``Adam/iterations:0``, ``training/Adam/Variable:0``, ... in the same grouped
order, with every variable the optimizer made: Adam's vhats, SGD's moments at momentum 0, and no
iteration count for RMSprop up to 2.2), which tf_keras also restores. A layout it does not know leaves
the optimizer fresh with a warning; state that does not fit the model is refused.
"""

import warnings

import numpy as np

from fastconv.optimizers import check_learning_rate


def entries(optimizer, weights):
    """[(name, array)] of the state of ``optimizer`` over ``weights``, in Keras 3's order and names."""
    iterations, slots = optimizer.get_state(weights)
    prefix = optimizer.name
    state = [(f"{prefix}/iteration", np.array(iterations, np.int64)), (f"{prefix}/learning_rate", np.array(optimizer.learning_rate, np.float32))]
    for index, weight in enumerate(weights):
        path = weight.name.removesuffix(":0").replace("/", "_")
        state += [(f"{prefix}/{path}_{slot_name}", kind[index]) for slot_name, kind in zip(optimizer.slot_names, slots)]
    return state


# Keras 2.0-2.3 (multi-backend Keras) saved every state variable its optimizer made, per weight: SGD a moment
# (with momentum 0 too), RMSprop an accumulator, Adam m, v and vhat (shape (1,) unless amsgrad).
_KERAS2_SLOTS_PER_WEIGHT = {"SGD": 1, "RMSprop": 1, "Adam": 3}


def _layout(names, slot_count):
    """'keras3', 'tf_keras' (interleaved, no learning rate), 'grouped' (tf.keras <= 2.10, fastconv 0.2), 'keras2'
    (Keras 2.0-2.3: ``Adam/iterations:0``, ``training/Adam/Variable:0``, ...; RMSprop up to 2.2 saved no
    iteration count) or None.

    Keras 3's weights layout numbers its entries ("0", "1", ...): Keras 3 writes 2 + slot_count of them,
    tf_keras (whose ``.weights.h5`` is in the same layout) 1 + slot_count.
    """
    first = names[0] if names else ""
    if first == "0":
        return "tf_keras" if len(names) in (1, 1 + slot_count) else "keras3"
    if first == "iteration" or first.endswith("/iteration"):
        return "keras3"
    if first == "iteration:0":
        return "tf_keras"
    if first.endswith("iter:0"):
        return "grouped"
    if first == "iterations:0" or first.endswith("/iterations:0") or first.startswith("training/"):
        return "keras2"
    return None


def _positions(layout, names, optimizer, count):
    """Where each part of the state is among the file's entries: ``(iteration, learning_rate, slots)``, the entry
    indices of the iteration count and the learning rate (None: not saved) and ``slots[kind][weight]`` (None: no
    slot saved, the state of a file written before the first step); a ValueError message when the count does not
    fit the model."""
    kinds = len(optimizer.slot_names)
    iteration = 0 if layout != "keras2" or "iterations:0" in names[0] else None
    learning_rate = 1 if layout == "keras3" else None
    first_slot = sum(index is not None for index in (iteration, learning_rate))
    per_weight = _KERAS2_SLOTS_PER_WEIGHT.get(type(optimizer).__name__, kinds) if layout == "keras2" else kinds
    expected = first_slot + per_weight * count
    if len(names) not in (first_slot, expected) or (layout == "keras2" and len(names) != expected):
        raise ValueError(
            f"the saved optimizer state has {len(names)} entries ({names[:3]}...); {type(optimizer).__name__} over the "
            f"model's {count} trainable weights has {expected}"
        )
    if len(names) == first_slot:  # saved before the first step: Keras 3 keeps the iteration count and learning rate only
        return iteration, learning_rate, [[None] * count for _ in range(kinds)]
    if layout in ("keras3", "tf_keras"):  # per weight, each of its slots
        return iteration, learning_rate, [[first_slot + w * kinds + k for w in range(count)] for k in range(kinds)]
    # 'grouped' and 'keras2': every weight's first slot, then every weight's second slot (Keras 2's vhats after them)
    return iteration, learning_rate, [[first_slot + k * count + w for w in range(count)] for k in range(kinds)]


def read_state(optimizer, weights, names, read, source):
    """The state for ``optimizer`` over ``weights`` from a file's entries, checked, without changing the optimizer:
    ``(iterations, slots, learning_rate)`` for :func:`apply_state`, or None when the file holds none to restore.

    names: the entries' names in the file's order (Keras 3's weights file: "0", "1", ...).
    read(index, shape, kinds): the checked array of entry ``index``. ValueError naming ``source`` when the state
    does not fit the model or lies outside the optimizer's domain (:meth:`~fastconv.optimizers.Optimizer.check_state`).
    """
    if not names:
        return None
    count = len(weights)
    layout = _layout(names, len(optimizer.slot_names) * count)
    if layout is None:
        warnings.warn(
            f"{source}: the optimizer state is in a layout fastconv does not know ({names[:2]}...); the optimizer "
            "starts fresh, so training continues from the saved weights but not from the saved state",
            stacklevel=4,
        )
        return None
    try:
        iteration, learning_rate, positions = _positions(layout, names, optimizer, count)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    iterations = int(read(iteration, (), "iu")) if iteration is not None else 0
    if learning_rate is not None:
        learning_rate = check_learning_rate(read(learning_rate, (), "f"), f"{source}: the saved optimizer state")
    slots = [
        [np.zeros(weight.shape, np.float32) if index is None else read(index, tuple(weight.shape), "f") for index, weight in zip(kind, weights)]
        for kind in positions
    ]
    try:
        optimizer.check_state(weights, iterations, slots)
    except ValueError as error:
        raise ValueError(f"{source}: the saved optimizer state: {error}") from None
    return iterations, slots, learning_rate


def apply_state(optimizer, weights, state):
    """Set what :func:`read_state` returned (None: nothing to set)."""
    if state is None:
        return
    iterations, slots, learning_rate = state
    optimizer.set_state(weights, iterations, slots)
    if learning_rate is not None and np.float32(learning_rate) != np.float32(optimizer.learning_rate):
        optimizer.learning_rate = learning_rate  # changed during training (a schedule, a callback): Keras 3 keeps it
