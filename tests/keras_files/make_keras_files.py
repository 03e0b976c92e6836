"""Make the Keras files that tests/test_keras_files.py loads: real Keras writes them, fastconv must read them.

    pip install ".[bench]"          # tensorflow-cpu==2.21.0 (Keras 3) and tf-keras==2.21.0 (Keras 2)
    python tests/keras_files/make_keras_files.py                      # all of them
    python tests/keras_files/make_keras_files.py --only every_layer   # one, the others kept
    python tests/keras_files/make_keras_files.py --preprocess-input   # preprocess_input.keras alone

For each of the notes' models — the MNIST convnet (listing 5.1), the cats-vs-dogs convnet with dropout
(listing 5.13), the functional convnet of listing 8.1, and a VGG16-based classifier whose base is frozen
(listing 5.20) — and a small model with every other layer and option fastconv has, trained with Adam —
both Keras generations build it, compile it as the notes do, set the same seeded random
weights and save it in every format they write. The small models first take one step on a fixed batch,
so that their files hold optimizer state:

* Keras 3:  ``<model>.keras3.h5`` (legacy HDF5), ``<model>.keras`` (archive), ``<model>.weights.h5``;
* Keras 2:  ``<model>.keras2.h5`` (legacy HDF5), ``<model>.keras2_weights.h5`` (``save_weights``, legacy HDF5),
  and for the VGG16 classifier ``vgg16_classifier.keras2.weights.h5``: tf_keras's ``save_weights`` to a
  ``.weights.h5`` name, which writes Keras 3's layout with tf_keras's optimizer state.

``expected.npz`` holds, per model, the fixed inputs ``<model>/x``, the targets ``<model>/y`` of that step,
and per generation what Keras computed: ``<model>/<gen>/predict`` on ``x`` (after the step, if any); for
the trained models the optimizer's iteration count and, for each trainable weight in order, the sum and
the first 16 values of each of its slots (``velocity_sum``, ``velocity_head``, and Adam's ``momentum_sum``,
``momentum_head``: enough to tell one slot from another without storing them twice); and for the models
whose step is deterministic (no dropout)
``<model>/<gen>/next_predict``, the predictions after one more step on (x, y). ``manifest.json`` says
who made what.

The builders are the notes' Keras code, written out here rather than imported from fastconv.examples: this
script is the independent side of the comparison and imports nothing of fastconv (the tests call the same
builders with ``fastconv`` as ``keras``, which is the point: the listings run with the import changed).

The files are kept small (about 8 MB in all): the cats-vs-dogs convnet keeps the notes' layers and
options with a quarter of their filters, on 48x48 images; the VGG16 base keeps VGG16's structure and
layer names with 1/16 of its filters, on 32x32 images. The MNIST convnets are the notes' own.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 2026
BATCH = 4
VGG_FILTERS = ((4, 4), (8, 8), (16, 16, 16), (32, 32, 32), (32, 32, 32))  # VGG16's, divided by 16
TRAINED = ("cats_dogs_convnet", "vgg16_classifier", "every_layer")  # small enough to hold optimizer state too
DETERMINISTIC_STEP = ("vgg16_classifier", "every_layer")  # no dropout


def mnist_convnet(keras):
    """Listing 5.1 and 5.2 (Sequential, input_shape on the first layer), compiled as in listing 5.3."""
    layers = keras.layers
    model = keras.models.Sequential(name="mnist_convnet")
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model, (28, 28, 1), "onehot10"


def cats_dogs_convnet(keras):
    """Listing 5.13: the cats-vs-dogs convnet with dropout (48x48 inputs and filters / 4 here)."""
    layers = keras.layers
    model = keras.models.Sequential(name="cats_dogs_convnet")
    model.add(layers.Conv2D(8, (3, 3), activation="relu", input_shape=(48, 48, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(16, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(32, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(32, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(512, activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=1e-4), metrics=["acc"])
    return model, (48, 48, 3), "binary"


def functional_convnet(keras):
    """Listing 8.1 (Deep Learning with Python, 2nd edition): the MNIST convnet in the functional API."""
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="functional_convnet")
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, (28, 28, 1), "labels10"


def vgg16_base(keras, input_shape):
    """VGG16's convolutional base (Keras' layer names, a functional model named 'vgg16'), 1/16 of the filters."""
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block, filters in enumerate(VGG_FILTERS, start=1):
        for index, count in enumerate(filters, start=1):
            x = layers.Conv2D(count, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{index}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def vgg16_classifier(keras):
    """Listing 5.20: a Dense classifier on a frozen VGG16 base, compiled as in listing 5.21."""
    layers = keras.layers
    conv_base = vgg16_base(keras, (32, 32, 3))
    model = keras.models.Sequential(name="vgg16_classifier")
    model.add(conv_base)
    model.add(layers.Flatten())
    model.add(layers.Dense(256, activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    conv_base.trainable = False
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=2e-5), metrics=["acc"])
    return model, (32, 32, 3), "binary"


def every_layer(keras):
    """Not from the notes: every other layer and option fastconv has, trained with Adam (two slots per weight)."""
    layers = keras.layers
    model = keras.models.Sequential(name="every_layer")
    model.add(layers.Conv2D(4, (3, 3), strides=(2, 2), padding="same", input_shape=(12, 12, 3)))
    model.add(layers.Activation("relu"))
    model.add(layers.AveragePooling2D((2, 2), strides=(1, 1), padding="same"))
    model.add(layers.Conv2D(5, (2, 2), use_bias=False, activation="sigmoid", kernel_initializer="he_normal"))
    model.add(layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same"))
    model.add(layers.GlobalAveragePooling2D(keepdims=True))
    model.add(layers.GlobalMaxPooling2D())
    model.add(layers.Dense(3, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005), loss="categorical_crossentropy", metrics=["accuracy"])
    return model, (12, 12, 3), "onehot3"


def augmented_convnet(keras):
    """Listings 8.14-8.16 (2nd edition) at 1/8 of the filters on 24x24 images: augmentation as a nested Sequential,
    Rescaling, the convnet with dropout. Augmentation and dropout do nothing in predict, so the predictions compare."""
    layers = keras.layers
    data_augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.2)], name="data_augmentation"
    )
    inputs = keras.Input(shape=(24, 24, 3))
    x = data_augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(filters=4, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=8, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="augmented_convnet")
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model, (24, 24, 3), "binary"


MODELS = (mnist_convnet, cats_dogs_convnet, functional_convnet, vgg16_classifier, every_layer, augmented_convnet)


def data(name, input_shape, targets):
    rng = np.random.default_rng([SEED, len(name)])
    x = rng.uniform(0, 1, (BATCH, *input_shape)).astype(np.float32)
    if targets == "binary":
        y = (np.arange(BATCH) % 2).astype(np.float32).reshape(BATCH, 1)
    elif targets.startswith("onehot"):
        classes = int(targets.removeprefix("onehot"))
        y = np.eye(classes, dtype=np.float32)[np.arange(BATCH) % classes]
    else:
        y = (np.arange(BATCH) % 10).astype(np.int64)
    return x, y


def seeded_weights(model, name):
    """Glorot-scaled kernels and small non-zero biases, the same for both generations."""
    rng = np.random.default_rng([SEED, len(name), 1])
    arrays = []
    for array in model.get_weights():
        if array.ndim == 1:
            arrays.append(rng.uniform(-0.1, 0.1, array.shape).astype(np.float32))
        else:
            fan_in, fan_out = int(np.prod(array.shape[:-1])), int(np.prod(array.shape[:-2])) * array.shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            arrays.append(rng.uniform(-limit, limit, array.shape).astype(np.float32))
    return arrays


def slots(model):
    """{kind: [slot of each trainable weight]}: RMSprop's velocities, Adam's momentums and velocities (both
    generations keep them as ``_velocities`` and ``_momentums``)."""
    kinds = {"velocity": model.optimizer._velocities}
    if hasattr(model.optimizer, "_momentums"):
        kinds["momentum"] = model.optimizer._momentums
    return {kind: [np.asarray(slot) for slot in values] for kind, values in kinds.items()}


def make(keras, generation, expected, builders=MODELS):
    saved = []
    for builder in builders:
        name = builder.__name__
        model, input_shape, targets = builder(keras)
        x, y = data(name, input_shape, targets)
        model.set_weights(seeded_weights(model, name))
        expected[f"{name}/x"], expected[f"{name}/y"] = x, y
        prefix = f"{name}/{generation}"
        if name in TRAINED:
            model.train_on_batch(x, y)
            expected[f"{prefix}/iterations"] = np.array(int(model.optimizer.iterations.numpy()))
            for kind, values in slots(model).items():
                expected[f"{prefix}/{kind}_sum"] = np.array([slot.sum(dtype=np.float64) for slot in values])
                expected[f"{prefix}/{kind}_head"] = np.stack([np.resize(slot.ravel(), 16) for slot in values])
        expected[f"{prefix}/predict"] = model.predict(x, verbose=0)
        if generation == "keras3":
            # The archive first: Keras 3's legacy HDF5 writer drops the optimizer from the compile config.
            files = [f"{name}.keras", f"{name}.keras3.h5", f"{name}.weights.h5"]
            model.save(HERE / files[0])
            model.save(HERE / files[1])
            model.save_weights(HERE / files[2])
        else:
            files = [f"{name}.keras2.h5", f"{name}.keras2_weights.h5"]
            model.save(HERE / files[0], save_format="h5")
            model.save_weights(HERE / files[1], save_format="h5")
            if name == "vgg16_classifier":
                files.append(f"{name}.keras2.weights.h5")
                model.save_weights(HERE / files[2])
        saved += files
        if name in DETERMINISTIC_STEP:
            model.train_on_batch(x, y)
            expected[f"{prefix}/next_predict"] = model.predict(x, verbose=0)
    return saved


def preprocess_input_file(keras):
    """``preprocess_input.keras``: listing 8.23's ``keras.applications.vgg16.preprocess_input`` on a symbolic tensor,
    which Keras 3 records as five operations (GetItem x 3, Stack, Add), before a small convolution; with its inputs
    and predictions in ``preprocess_input.npz``. (Keras 3 cannot read such a graph back from a legacy .h5, and tf_keras
    writes other operations: the archive is the file this case needs.)"""
    inputs = keras.Input(shape=(8, 8, 3))
    x = keras.applications.vgg16.preprocess_input(inputs)
    x = keras.layers.Conv2D(2, 3, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs, name="preprocess_input")
    model.set_weights(seeded_weights(model, "preprocess_input"))
    x_values = np.random.default_rng([SEED, 99]).uniform(0, 255, (BATCH, 8, 8, 3)).astype(np.float32)
    model.save(HERE / "preprocess_input.keras")
    np.savez(HERE / "preprocess_input.npz", x=x_values, predict=model.predict(x_values, verbose=0))


def main():
    """All models, or ``--only NAME [NAME ...]``: those, merged into the existing expected.npz and manifest
    (the other files stay as they are: a model trained with dropout would not come out the same twice)."""
    import keras
    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if "--preprocess-input" in sys.argv:  # that file alone
        return preprocess_input_file(keras)
    only = sys.argv[sys.argv.index("--only") + 1 :] if "--only" in sys.argv else None
    builders = [builder for builder in MODELS if only is None or builder.__name__ in only]
    expected, kept = {}, []
    if only is not None:
        with np.load(HERE / "expected.npz") as previous:
            expected = {key: previous[key] for key in previous.files if key.split("/")[0] not in only}
        kept = [f for f in json.loads((HERE / "manifest.json").read_text())["files"] if f.split(".")[0] not in only]
    files = kept + make(keras, "keras3", expected, builders) + make(tf_keras, "keras2", expected, builders)
    np.savez(HERE / "expected.npz", **expected)
    manifest = {
        "made_by": "tests/keras_files/make_keras_files.py",
        "keras3": keras.__version__,
        "keras2": tf_keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "files": sorted(files),
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
