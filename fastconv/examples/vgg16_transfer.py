"""Listings 5.16-5.23: cats vs dogs with the VGG16 convolutional base pretrained on ImageNet.

    python -m fastconv.examples.vgg16_transfer features  --original ../shared/data/dogs-vs-cats/train \\
        --base /tmp/cats_and_dogs_small --weights ../shared/data/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
    ... finetune-cached      # block5 fine-tuned on the cached block4_pool features (no augmentation): the CPU-sized run
    ... augmented            # listings 5.20-5.21: frozen base inside the model, augmentation (~1 h on 2 cores)
    ... finetune             # listings 5.20-5.23: then block5 unfrozen, RMSprop 1e-5 (~5 h on 2 cores)
    ... finetune --resume    # go on from the last finished epoch's checkpoint (either stage)

``--preprocessing caffe`` (default) feeds the weights what they were trained on (Keras' ``preprocess_input``);
``--preprocessing rescale`` is the notes' ``rescale=1./255``. ``--weights`` defaults to 'imagenet'
($FASTCONV_HOME/models or ~/.keras/models). Each flow prints the validation and test accuracy and writes its
History (JSON and PNG) into ``--base``.

``augmented`` and ``finetune`` validate on all 1,000 validation images each epoch (the listings' 50 steps of 20) from
features that the frozen layers computed once (:class:`CachedValidation`): the validation images are not augmented,
so blocks 1-4 (and in the frozen stage block5) give them the same features every epoch.

``features`` is listings 5.17-5.19, with one saving: the base runs once per image up to ``block4_pool``, and those
features are cached as ``.npy`` (``features_<preprocessing>/``), so that block5 is computed from them here and
``finetune-cached`` can train block5 without running blocks 1-4 again.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fastconv import layers, models, optimizers
from fastconv.applications import VGG16
from fastconv.applications.vgg16 import preprocess_input
from fastconv.datasets.dogs_vs_cats import make_small_split
from fastconv.preprocessing.image import ImageDataGenerator
from fastconv.examples.runs import (
    CachedValidation, EpochCheckpoint, add_run_arguments, checkpoint_paths, has_checkpoint, load_checkpoint, start_run,
    write_history,
)

IMAGE_SHAPE = (150, 150, 3)
SPLITS = ("train", "validation", "test")
FIRST_BLOCK5_LAYER = 15  # conv_base.layers: input, blocks 1-4 (14 layers), then block5_conv1


def image_generator(preprocessing, augment=False):
    """Listing 5.21's generator (with ``augment``) or listing 5.17's, with the chosen preprocessing."""
    scaling = {"rescale": 1.0 / 255} if preprocessing == "rescale" else {"preprocessing_function": preprocess_input}
    if not augment:
        return ImageDataGenerator(**scaling)
    return ImageDataGenerator(**scaling, rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                              shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")  # fmt: skip


def split_base(conv_base):
    """(blocks 1-4 up to block4_pool, block5) of ``conv_base`` as two Sequential models sharing its layers."""
    first = models.Sequential([layers.InputLayer(input_shape=IMAGE_SHAPE), *conv_base.layers[1:FIRST_BLOCK5_LAYER]])
    block4_shape = tuple(first.output_shape[1:])
    block5 = models.Sequential([layers.InputLayer(input_shape=block4_shape), *conv_base.layers[FIRST_BLOCK5_LAYER:]])
    return first, block5


def block4_features(blocks_1_to_4, base, preprocessing, splits=SPLITS):
    """{split: (features (n, 9, 9, 512), labels (n,))}, computed once and cached as .npy next to the split."""
    cache = Path(base) / f"features_{preprocessing}"
    cache.mkdir(exist_ok=True)
    datagen = image_generator(preprocessing)
    features = {}
    for split in splits:
        x_path, y_path = cache / f"{split}_block4_pool.npy", cache / f"{split}_labels.npy"
        if x_path.exists() and y_path.exists():
            features[split] = (np.load(x_path), np.load(y_path))
            continue
        start = time.perf_counter()
        generator = datagen.flow_from_directory(Path(base) / split, target_size=IMAGE_SHAPE[:2], batch_size=20,
                                                class_mode="binary", shuffle=False)  # fmt: skip
        count = generator.n
        x_parts, label_parts = [], []
        for _ in range(len(generator)):  # one pass over the split; only the features are kept
            images, batch_labels = next(generator)
            x_parts.append(blocks_1_to_4.predict(images, batch_size=len(images)))
            label_parts.append(batch_labels)
        x, labels = np.concatenate(x_parts), np.concatenate(label_parts)
        seconds = time.perf_counter() - start
        print(f"{split}: {count} images through blocks 1-4 in {seconds:.0f} s ({count / seconds:.1f} images/s)")
        np.save(x_path, x)
        np.save(y_path, labels)
        features[split] = (x, labels)
    return features


def classifier(input_dim=4 * 4 * 512):
    """Listing 5.18's densely connected classifier."""
    return models.Sequential([
        layers.Dense(256, activation="relu", input_dim=input_dim),
        layers.Dropout(0.5),
        layers.Dense(1, activation="sigmoid"),
    ])  # fmt: skip


def train_on_arrays(model, data, learning_rate, epochs):
    """RMSprop(learning_rate), batch 20, on ``data['train']`` validated on ``data['validation']``.

    data: {split: (x, labels)}. Returns (History, test accuracy on ``data['test']``, training seconds).
    """
    model.compile(optimizer=optimizers.RMSprop(lr=learning_rate), loss="binary_crossentropy", metrics=["acc"])
    start = time.perf_counter()
    history = model.fit(*data["train"], epochs=epochs, batch_size=20, validation_data=data["validation"], verbose=2)
    seconds = time.perf_counter() - start
    test_loss, test_acc = model.evaluate(*data["test"], verbose=0)
    return history, test_acc, seconds


def report(name, logs, test_acc, seconds, base, epochs=None):
    """Print the accuracies and write the History's ``logs`` ({key: values per epoch}) as JSON and PNG into
    ``base``; ``seconds`` took ``epochs`` epochs (default all of the logs': finetune's time covers both stages)."""
    base = Path(base)
    write_history(logs, base / f"history_{name}.json")
    try:
        from fastconv import plot

        plot.history(logs, base / f"history_{name}.png", smooth=0.8)
    except ImportError as error:  # matplotlib is the optional [plot] extra
        print(f"no PNG: {error}")
    epochs = len(logs["loss"]) if epochs is None else epochs
    print(f"{name}: training {seconds:.0f} s for {epochs} epochs, {seconds / max(epochs, 1):.1f} s per epoch")
    print(f"{name}: final val_acc {logs['val_acc'][-1]:.4f}, best val_acc {max(logs['val_acc']):.4f}")
    print(f"{name}: test_acc {test_acc:.4f}")


def flow_features(conv_base, args):
    """Listings 5.17-5.19: features from the frozen base, then a small classifier trained on them."""
    blocks_1_to_4, block5 = split_base(conv_base)
    cached = block4_features(blocks_1_to_4, args.base, args.preprocessing)
    features = {split: (block5.predict(x, batch_size=50).reshape(len(x), -1), y) for split, (x, y) in cached.items()}
    model = classifier()
    history, test_acc, seconds = train_on_arrays(model, features, learning_rate=2e-5, epochs=args.epochs or 30)
    model.save_weights(Path(args.base) / f"classifier_{args.preprocessing}.h5")
    report(f"vgg16_features_{args.preprocessing}", history.history, test_acc, seconds, args.base)
    return test_acc


def flow_finetune_cached(conv_base, args):
    """Listings 5.22-5.23 sized for a CPU: block5 + the classifier of ``features`` trained on cached block4_pool features.

    The notes fine-tune with augmentation; this runs blocks 1-4 once per image instead of once per step, so it
    trains without augmentation, starting from the classifier that ``features`` trained.
    """
    blocks_1_to_4, block5 = split_base(conv_base)
    cached = block4_features(blocks_1_to_4, args.base, args.preprocessing)
    head = classifier()
    head.load_weights(Path(args.base) / f"classifier_{args.preprocessing}.h5")
    model = models.Sequential([block5, layers.Flatten(), *head.layers])
    history, test_acc, seconds = train_on_arrays(model, cached, learning_rate=1e-5, epochs=args.epochs or 10)
    report(f"vgg16_finetune_cached_{args.preprocessing}", history.history, test_acc, seconds, args.base)
    return test_acc


def cached_validation(model, base, preprocessing, frozen_base):
    """A :class:`CachedValidation` for ``Sequential([conv_base, Flatten, Dense, Dense])``: the validation images
    through blocks 1-4 once (cached on disk with ``features``' cache), then through block5 too while the whole base
    is frozen; the head is the model's layers after those, shared."""
    blocks_1_to_4, block5 = split_base(model.layers[0])
    features, labels = block4_features(blocks_1_to_4, base, preprocessing, splits=("validation",))["validation"]
    classifier_layers = model.layers[1:]
    if frozen_base:
        features = block5.predict(features, batch_size=50, verbose=0)
        head = models.Sequential([layers.InputLayer(input_shape=features.shape[1:]), *classifier_layers])
    else:
        head = models.Sequential([layers.InputLayer(input_shape=features.shape[1:]), *block5.layers, *classifier_layers])
    head.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["acc"])
    return CachedValidation(head, features, labels, metric="acc")


def unfreeze_block5(conv_base):
    """Listing 5.22: everything from block5_conv1 on trainable, the layers before it frozen."""
    conv_base.trainable = True
    set_trainable = False
    for layer in conv_base.layers:
        set_trainable = set_trainable or layer.name == "block5_conv1"
        layer.trainable = set_trainable


def flow_augmented(conv_base, args, fine_tune):
    """Listings 5.20-5.21 (frozen base inside the model, augmentation), then with ``fine_tune`` 5.22-5.23.

    Each stage checkpoints the model (trainable flags and optimizer state included) and its History after every epoch
    (``checkpoint_vgg16_augmented_<preprocessing>.*``, then ``checkpoint_vgg16_finetune_<preprocessing>.*``);
    ``--resume`` goes on from the later stage's checkpoint where there is one, else from the first stage's.
    """
    base = Path(args.base)
    frozen_name, tuned_name = f"vgg16_augmented_{args.preprocessing}", f"vgg16_finetune_{args.preprocessing}"
    frozen_logs, tuned_logs, model = {}, {}, None
    if args.resume:
        if fine_tune and has_checkpoint(base, tuned_name):
            model, tuned_logs = load_checkpoint(base, tuned_name)
            frozen_logs = json.loads(checkpoint_paths(base, frozen_name)[1].read_text()) if has_checkpoint(base, frozen_name) else {}
        elif has_checkpoint(base, frozen_name):
            model, frozen_logs = load_checkpoint(base, frozen_name)
        else:
            raise SystemExit(f"--resume: no checkpoint of {frozen_name} or {tuned_name} in {base}")
    if model is None:
        model = models.Sequential([conv_base, layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(1, activation="sigmoid")])
        conv_base.trainable = False
        model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(lr=2e-5), metrics=["acc"])
    train_generator = image_generator(args.preprocessing, augment=True).flow_from_directory(
        base / "train", target_size=IMAGE_SHAPE[:2], batch_size=20, class_mode="binary")
    test_datagen = image_generator(args.preprocessing)
    fit = dict(steps_per_epoch=args.steps or 100, verbose=2)
    start, epochs_run = time.perf_counter(), 0
    logs, name = frozen_logs, frozen_name
    if not tuned_logs:
        checkpoint = EpochCheckpoint(base, frozen_name, frozen_logs)
        first = checkpoint.epochs_done
        validation = cached_validation(model, base, args.preprocessing, frozen_base=True)
        model.fit(train_generator, epochs=args.epochs or 30, initial_epoch=first, callbacks=[validation, checkpoint], **fit)
        logs, epochs_run = checkpoint.history, checkpoint.epochs_done - first
        model.save(base / f"{frozen_name}.h5")  # so that a later run can go on from the trained model
    if fine_tune:
        write_history(frozen_logs if tuned_logs else logs, base / f"history_{frozen_name}.json")
        if not tuned_logs:
            unfreeze_block5(model.layers[0])
            model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(lr=1e-5), metrics=["acc"])
        checkpoint = EpochCheckpoint(base, tuned_name, tuned_logs)
        first = checkpoint.epochs_done
        validation = cached_validation(model, base, args.preprocessing, frozen_base=False)
        model.fit(train_generator, epochs=args.fine_tune_epochs or 100, initial_epoch=first, callbacks=[validation, checkpoint], **fit)
        logs, name, epochs_run = checkpoint.history, tuned_name, epochs_run + checkpoint.epochs_done - first
        model.save(base / f"{tuned_name}.h5")
    seconds = time.perf_counter() - start
    test_generator = test_datagen.flow_from_directory(
        base / "test", target_size=IMAGE_SHAPE[:2], batch_size=20, class_mode="binary", shuffle=False)
    test_loss, test_acc = model.evaluate(test_generator, steps=len(test_generator), verbose=0)
    report(name, logs, test_acc, seconds, base, epochs_run)
    return test_acc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=["features", "finetune-cached", "augmented", "finetune"])
    parser.add_argument("--original", help="folder with cat.<i>.jpg and dog.<i>.jpg, i < 2000 (to make the split)")
    parser.add_argument("--base", required=True, help="the split of listing 5.4 (made from --original if missing)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or the path of Keras' notop HDF5 file")
    parser.add_argument("--preprocessing", choices=["caffe", "rescale"], default="caffe")
    parser.add_argument("--epochs", type=int, help="default: the listing's (30; finetune-cached 10)")
    parser.add_argument("--fine-tune-epochs", type=int, help="finetune: epochs after unfreezing (default 100)")
    parser.add_argument("--steps", type=int, help="augmented/finetune: steps per epoch (default 100)")
    parser.add_argument("--resume", action="store_true", help="augmented/finetune: continue from the last epoch's checkpoint")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    start_run(args)
    if not (Path(args.base) / "train").is_dir():
        if not args.original:
            parser.error(f"{args.base} holds no split; pass --original to make it")
        make_small_split(args.original, args.base)
    conv_base = VGG16(weights=args.weights, include_top=False, input_shape=IMAGE_SHAPE)
    if args.flow == "features":
        return flow_features(conv_base, args)
    if args.flow == "finetune-cached":
        return flow_finetune_cached(conv_base, args)
    return flow_augmented(conv_base, args, fine_tune=args.flow == "finetune")


if __name__ == "__main__":
    main()
