"""Real Keras 3 trains a model step by step from given weights on given batches: the other side of
tests/test_training_against_keras.py, run in its own process (TensorFlow stays out of the suite's).

    python tests/keras_files/train_with_keras.py CASE.npz RESULT.npz [CASE.npz RESULT.npz ...]

Each CASE.npz holds ``builder`` (a name in :data:`BUILDERS`), ``weights_<i>`` (the model's weights in
``get_weights()`` order), ``x`` and ``y`` (one batch per step on the first axis). RESULT.npz gets ``loss``
(one per step, the value ``train_on_batch`` returned) and ``weights_<i>`` after the last step. TensorFlow runs on
one thread: its sums then come in one fixed order, and the result is the same every time.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_keras_files as notes  # noqa: E402


def vgg16_fine_tuning(keras):
    """Listings 8.23-8.27 (2nd edition) on 32x32 images, with VGG16's structure at 1/16 of its filters:
    ``preprocess_input`` on the symbolic input, the base nested in the model, the classifier, then the base trainable
    with all but its last four layers frozen, RMSprop(1e-5). The listings' augmentation and dropout are left out:
    their random draws cannot be the same in two frameworks."""
    layers = keras.layers
    conv_base = notes.vgg16_base(keras, (32, 32, 3))
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.applications.vgg16.preprocess_input(inputs)
    x = conv_base(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="vgg16_fine_tuning")
    conv_base.trainable = True
    for layer in conv_base.layers[:-4]:
        layer.trainable = False
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), metrics=["accuracy"])
    return model, (32, 32, 3), "binary"


# The notes' models whose training step is deterministic (no dropout, no augmentation), and the loss and optimizer
# each covers: listing 5.3's MNIST convnet (RMSprop, categorical cross-entropy), listing 8.1's (sparse categorical
# cross-entropy), a small model with every other layer (Adam), the fine-tuning of listings 8.23-8.27.
BUILDERS = {builder.__name__: builder for builder in (notes.mnist_convnet, notes.functional_convnet, notes.every_layer, vgg16_fine_tuning)}


def train(keras, builder, weights, x, y):
    """``train_on_batch`` on each (x[step], y[step]): (losses, weights after the last step)."""
    model = BUILDERS[builder](keras)[0]
    model.set_weights(weights)
    losses = [model.train_on_batch(x[step], y[step])[0] for step in range(len(x))]
    return np.array(losses, dtype=np.float64), [np.asarray(w) for w in model.get_weights()]


def main():
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    paths = sys.argv[1:]
    for case_path, result_path in zip(paths[::2], paths[1::2]):
        with np.load(case_path) as case:
            count = sum(key.startswith("weights_") for key in case.files)
            weights = [case[f"weights_{index}"] for index in range(count)]
            losses, trained = train(keras, str(case["builder"]), weights, case["x"], case["y"])
        np.savez(result_path, loss=losses, **{f"weights_{index}": array for index, array in enumerate(trained)})


if __name__ == "__main__":
    main()
