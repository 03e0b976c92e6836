"""An optimizer's state in a file, in the orders the Keras generations write it.

fastconv writes Keras 3's order, in legacy HDF5 (``optimizer_weights``, names such as
``rmsprop/conv2d_kernel_velocity``) and in Keras 3's weights file (``optimizer/vars/0, 1, ...``):

    iteration (int64), learning_rate (float32), then for each trainable weight in order, each of its
    slots (Adam: momentum, velocity; RMSprop: velocity; SGD with momentum: momentum).

It reads that order, the one of tf.keras 2.11+ (the same without learning_rate: ``iteration:0``,
``Adam/m/dense/kernel:0``, ``Adam/v/dense/kernel:0``, ...) and the one of Keras 2 up to 2.10 and of
fastconv 0.2 (``Adam/iter:0``, then every weight's first slot, then every weight's second slot).
A layout it does not know (Keras 2.0-2.3's ``training/Adam/Variable:0``) leaves the optimizer fresh
with a warning, as Keras does; state that does not fit the model is refused.
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


def _layout(names, slot_count):
    """'keras3', 'tf_keras' (interleaved, no learning rate), 'grouped' (Keras <= 2.10, fastconv 0.2) or None.

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
    return None


def read_state(optimizer, weights, names, read, source):
    """The state for ``optimizer`` over ``weights`` from a file's entries, checked, without changing the optimizer:
    ``(iterations, slots, learning_rate)`` for :func:`apply_state`, or None when the file holds none to restore.

    names: the entries' names in the file's order (Keras 3's weights file: "0", "1", ...).
    read(index, shape, kinds): the checked array of entry ``index``. ValueError naming ``source`` when the state
    does not fit the model or lies outside the optimizer's domain (:meth:`~fastconv.optimizers.Optimizer.check_state`).
    """
    if not names:
        return None
    kinds, count = len(optimizer.slot_names), len(weights)
    layout = _layout(names, kinds * count)
    if layout is None:
        warnings.warn(
            f"{source}: the optimizer state is in a layout fastconv does not know ({names[:2]}...); "
            "the optimizer starts fresh, as Keras does with such files",
            stacklevel=4,
        )
        return None
    first_slot = 2 if layout == "keras3" else 1
    if len(names) not in (first_slot, first_slot + kinds * count):
        raise ValueError(
            f"{source}: the saved optimizer state has {len(names)} entries ({names[:3]}...); {type(optimizer).__name__} "
            f"over the model's {count} trainable weights has {first_slot + kinds * count}"
        )
    iterations = int(read(0, (), "iu"))
    learning_rate = None
    if layout == "keras3":
        learning_rate = check_learning_rate(read(1, (), "f"), f"{source}: the saved optimizer state")
    slots = [[None] * count for _ in range(kinds)]
    if len(names) > first_slot:
        for position in range(kinds * count):
            weight_index, kind = (position // kinds, position % kinds) if layout != "grouped" else (position % count, position // count)
            slots[kind][weight_index] = read(first_slot + position, tuple(weights[weight_index].shape), "f")
    else:  # saved before the first step: Keras 3 keeps the iteration count and learning rate only
        slots = [[np.zeros(w.shape, np.float32) for w in weights] for _ in range(kinds)]
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
