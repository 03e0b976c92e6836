"""The second edition's chapter 8 (Chollet, Deep Learning with Python, 2nd ed.): cats vs dogs on 180x180 images from
``image_dataset_from_directory``, with the listings' code and only the import changed.

    python -m fastconv.examples.second_edition scratch   --original ../shared/data/dogs-vs-cats/train --base /tmp/cats_vs_dogs_small
    ... augmented          # listings 8.14-8.18: augmentation layers and dropout, 100 epochs
    ... features --weights ../shared/data/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5   # listings 8.19-8.22
    ... features-augmented --weights ...   # listings 8.23-8.26: the frozen base inside the model, 50 epochs
    ... finetune --weights ...             # listings 8.27-8.29: the top four layers of the base unfrozen, 30 epochs
    ... <flow> --resume    # go on from the last finished epoch's checkpoint

``scratch`` is listings 8.6-8.13: the split (1,000 / 500 / 1,000 images per class), the convnet with ``Rescaling``,
30 epochs with ``ModelCheckpoint(save_best_only=True, monitor="val_loss")``, then the best model loaded back and
tested. ``features`` runs every image once through the frozen VGG16 base (``preprocess_input``, ``predict``) and
trains listing 8.21's classifier on the features for 20 epochs. Each flow saves the model and its History after every
epoch (``checkpoint_<flow>.*`` in ``--base``) for ``--resume``, and prints the test accuracy of the best model.
``finetune`` goes on from the model that ``features-augmented`` ended with (its last epoch's checkpoint), as the
book's listing 8.27 goes on from the model in memory. Those two flows validate on features that the frozen layers
computed once (the validation images are not augmented): the same figures as ``validation_data``, a third less time
per epoch.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import fastconv as keras
from fastconv import layers
from fastconv.datasets.dogs_vs_cats import SECOND_EDITION_SPLITS, make_small_split
from fastconv.examples.runs import (
    CachedValidation, EpochCheckpoint, add_run_arguments, has_checkpoint, load_checkpoint, start_run, write_history,
)

FLOWS = {  # flow -> (the file listing 8.11's checkpoint keeps the best model in, the listing's epochs)
    "scratch": ("convnet_from_scratch.keras", 30),
    "augmented": ("convnet_from_scratch_with_augmentation.keras", 100),
    "features": ("feature_extraction.keras", 20),
    "features-augmented": ("feature_extraction_with_data_augmentation.keras", 50),
    "finetune": ("fine_tuning.keras", 30),
}


def data_augmentation():
    """Listing 8.14."""
    return keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.2)])


def augmented_vgg16(weights, image_size):
    """Listings 8.23-8.24: the frozen VGG16 base (any input size) inside the model, after augmentation and
    ``preprocess_input``."""
    conv_base = keras.applications.vgg16.VGG16(weights=weights, include_top=False)
    conv_base.trainable = False
    inputs = keras.Input(shape=(*image_size, 3))
    x = data_augmentation()(inputs)
    x = keras.applications.vgg16.preprocess_input(x)
    return dense_classifier(inputs, conv_base(x))


def dense_classifier(inputs, features):
    """Listings 8.21 and 8.24's head on ``features`` (Flatten, Dense(256), Dropout(0.5), the sigmoid unit), compiled
    with RMSprop, as the model from ``inputs``."""
    x = layers.Flatten()(features)
    x = layers.Dense(256)(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model


def unfreeze_top_of_base(model):
    """Listings 8.27-8.28: the base's last four layers (block5's three convolutions and its pool) trainable,
    RMSprop(1e-5)."""
    conv_base = model.get_layer("vgg16")
    conv_base.trainable = True
    for layer in conv_base.layers[:-4]:
        layer.trainable = False
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), metrics=["accuracy"])
    return model


def convnet(image_size, augment):
    """Listing 8.7 (and with ``augment`` listing 8.16: data augmentation first, dropout before the classifier)."""
    inputs = keras.Input(shape=(*image_size, 3))
    x = inputs
    if augment:
        x = data_augmentation()(x)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    if augment:
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model


def datasets(base, image_size, seed):
    """Listing 8.9: the three splits, batches of 32 (the training split reshuffled every epoch)."""
    return [keras.utils.image_dataset_from_directory(Path(base) / split, image_size=image_size, batch_size=32, seed=seed)
            for split in ("train", "validation", "test")]  # fmt: skip


def get_features_and_labels(conv_base, dataset):
    """Listing 8.20: every image once through the frozen base (with a line of progress every 10 batches: minutes on
    a CPU, which the listing's ``verbose=0`` would spend in silence)."""
    all_features, all_labels = [], []
    started = time.perf_counter()
    for number, (images, labels) in enumerate(dataset, start=1):
        preprocessed_images = keras.applications.vgg16.preprocess_input(images)
        features = conv_base.predict(preprocessed_images, verbose=0)
        all_features.append(features)
        all_labels.append(labels)
        if number % 10 == 0 or number == len(dataset):
            print(f"  features: {number}/{len(dataset)} batches, {time.perf_counter() - started:.0f} s", flush=True)
    return np.concatenate(all_features), np.concatenate(all_labels)


def cached_validation(model, validation_dataset):
    """A :class:`CachedValidation` for the models of listings 8.24 and 8.27: the validation images, which are not
    augmented, through preprocess_input and the frozen layers of the VGG16 base once (all of it while it is frozen,
    blocks 1-4 once block5 trains), then each epoch through the rest only: the layers after those, shared with
    ``model``. Each epoch of features-augmented then skips 1,000 images' pass through the base (~1/3 of its time)."""
    conv_base = model.get_layer("vgg16")
    trainable = [layer for layer in conv_base.layers if layer.trainable and layer.weights] if conv_base.trainable else []
    first_trained = conv_base.layers.index(trainable[0]) if trainable else len(conv_base.layers)
    frozen = keras.Sequential([layers.InputLayer(input_shape=model.input_shape[1:]), *conv_base.layers[1:first_trained]])
    features, labels = get_features_and_labels(frozen, validation_dataset)
    classifier = model.layers[model.layers.index(conv_base) + 1 :]
    head = keras.Sequential([layers.InputLayer(input_shape=features.shape[1:]), *conv_base.layers[first_trained:], *classifier])
    head.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return CachedValidation(head, features, labels, metric="accuracy", batch_size=32)


def feature_classifier(feature_shape):
    """Listing 8.21: the densely connected classifier on the base's features."""
    inputs = keras.Input(shape=feature_shape)
    return dense_classifier(inputs, inputs)


def train(model, flow, base, epochs, train_data, validation_data, earlier_history):
    """Listing 8.11's fit with its checkpoint of the best model, and the checkpoint after every epoch for --resume;
    ``validation_data`` may be a :class:`CachedValidation` instead, which then puts the validation figures in the
    logs before the checkpoints read them."""
    best_path = Path(base) / FLOWS[flow][0]
    best = keras.callbacks.ModelCheckpoint(filepath=str(best_path), save_best_only=True, monitor="val_loss")
    if earlier_history.get("val_loss"):
        best.best = min(earlier_history["val_loss"])  # a resumed run keeps the best model it had
    checkpoint = EpochCheckpoint(base, flow, earlier_history)
    fit_data = {"x": train_data} if not isinstance(train_data, tuple) else {"x": train_data[0], "y": train_data[1]}
    cached = isinstance(validation_data, CachedValidation)
    model.fit(**fit_data, epochs=epochs, initial_epoch=checkpoint.epochs_done, validation_data=None if cached else validation_data,
              callbacks=[validation_data, best, checkpoint] if cached else [best, checkpoint], verbose=2)  # fmt: skip
    return checkpoint.history, best_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=sorted(FLOWS))
    parser.add_argument("--original", help="folder with cat.<i>.jpg and dog.<i>.jpg, i < 2500 (to make the split)")
    parser.add_argument("--base", required=True, help="the split of listing 8.6 (made from --original if missing)")
    parser.add_argument("--weights", default="imagenet", help="VGG16 flows: 'imagenet' or the path of Keras' notop HDF5 file")
    parser.add_argument("--epochs", type=int, help="default: the listing's (scratch 30, augmented 100, features 20, "
                                                   "features-augmented 50, finetune 30)")  # fmt: skip
    parser.add_argument("--image-size", type=int, default=180, help="the listings' 180 (smaller for a trial run)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint of a stopped run")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    start_run(args)
    base = Path(args.base)
    if not (base / "train").is_dir():
        if not args.original:
            parser.error(f"{base} holds no split; pass --original to make it")
        make_small_split(args.original, base, splits=SECOND_EDITION_SPLITS)  # listing 8.6
    if args.resume and not has_checkpoint(base, args.flow):
        parser.error(f"--resume: no checkpoint of the {args.flow} run in {base}")
    image_size = (args.image_size, args.image_size)
    train_dataset, validation_dataset, test_dataset = datasets(base, image_size, args.seed)
    epochs = args.epochs or FLOWS[args.flow][1]
    model, earlier_history = load_checkpoint(base, args.flow) if args.resume else (None, {})
    start = time.perf_counter()
    if args.flow == "features":
        conv_base = keras.applications.vgg16.VGG16(weights=args.weights, include_top=False, input_shape=(*image_size, 3))
        train_features, train_labels = get_features_and_labels(conv_base, train_dataset)
        val_features, val_labels = get_features_and_labels(conv_base, validation_dataset)
        test_features, test_labels = get_features_and_labels(conv_base, test_dataset)
        print(f"features of {len(train_labels) + len(val_labels) + len(test_labels)} images: {time.perf_counter() - start:.0f} s")
        model = model or feature_classifier(train_features.shape[1:])
        history, best_path = train(model, args.flow, base, epochs, (train_features, train_labels), (val_features, val_labels), earlier_history)
        test_model = keras.models.load_model(best_path)
        test_loss, test_acc = test_model.evaluate(test_features, test_labels, verbose=0)
    else:
        if model is None and args.flow == "finetune":
            if not has_checkpoint(base, "features-augmented"):
                parser.error(f"finetune goes on from the features-augmented run: no checkpoint of it in {base}")
            model = unfreeze_top_of_base(load_checkpoint(base, "features-augmented")[0])
        elif model is None:
            model = augmented_vgg16(args.weights, image_size) if args.flow == "features-augmented" else convnet(image_size, augment=args.flow == "augmented")
        validation = validation_dataset if args.flow in ("scratch", "augmented") else cached_validation(model, validation_dataset)
        history, best_path = train(model, args.flow, base, epochs, train_dataset, validation, earlier_history)
        test_model = keras.models.load_model(best_path)  # listing 8.13
        test_loss, test_acc = test_model.evaluate(test_dataset, verbose=0)
    write_history(history, base / f"history_{args.flow}.json")
    seconds = time.perf_counter() - start
    print(f"{args.flow}: {seconds:.0f} s; best val_accuracy {max(history['val_accuracy']):.4f}; test accuracy {test_acc:.3f}")
    return history, test_acc


if __name__ == "__main__":
    main()
