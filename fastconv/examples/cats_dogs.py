"""Listings 5.4-5.8 (from scratch) and 5.13-5.14 (augmentation + dropout): cats vs dogs on the notes' split.

    python -m fastconv.examples.cats_dogs --original ../shared/data/dogs-vs-cats/train --base /tmp/cats_and_dogs_small
    python -m fastconv.examples.cats_dogs ... --augment            # listing 5.13-5.14: 100 epochs, batch 32, Dropout(0.5)
    python -m fastconv.examples.cats_dogs ... --augment --resume   # go on from the last finished epoch's checkpoint

Makes the split once (listing 5.4), trains, prints the final validation accuracy and the test accuracy,
and writes the History as JSON next to the split (``history_scratch.json`` / ``history_augmented.json``).
After every epoch the model (weights and optimizer state) and the History so far are saved next to the split
(``checkpoint_<name>.h5``, ``checkpoint_<name>.json``); ``--resume`` continues a stopped run from there, so a
100-epoch run can span several sittings (its augmentation draws after the restart differ from an unbroken run's).

``mpiexec -n N python -m fastconv.examples.cats_dogs ...`` trains data-parallel on N processes (fastconv.distribute):
each takes its share of every step's N x batch images, and the listing's 100 steps per epoch (50 of validation)
become 100 / N (50 / N) steps per process, so that an epoch sees as many images as the listing's.
"""

import argparse
import time
from pathlib import Path

from fastconv import distribute, layers, optimizers
from fastconv.datasets.dogs_vs_cats import make_small_split
from fastconv.examples.listings import cats_dogs_convnet
from fastconv.preprocessing.image import ImageDataGenerator
from fastconv.examples.runs import (
    EpochCheckpoint, add_run_arguments, checkpoint_paths, compile_seconds, has_checkpoint, load_checkpoint, start_run,
    training_time, write_history,
)


def build_model(augment):
    if not augment:
        return cats_dogs_convnet()
    # Listing 5.13: the same convnet with Dropout(0.5) before the classifier.
    model = cats_dogs_convnet()
    output, dense_512 = model.pop(), model.pop()
    model.add(layers.Dropout(0.5))
    model.add(dense_512)
    model.add(output)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="folder with cat.<i>.jpg and dog.<i>.jpg, i < 2000")
    parser.add_argument("--base", required=True, help="where the split goes (made if missing)")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint of a stopped run")
    parser.add_argument("--steps", type=int, help="steps per epoch (default the listing's 100; fewer for a trial run)")
    parser.add_argument("--validation-steps", type=int, help="validation steps (default the listing's 50)")
    parser.add_argument("--workers", type=int, default=2,
                        help="image-decoding threads of each flow (default 2; more where cores are idle, e.g. beside a GPU)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    strategy = distribute.strategy_for_launch()
    with distribute.chief_prints(strategy):
        if args.resume and not has_checkpoint(Path(args.base), _run_name(args)):
            model_path, history_path = checkpoint_paths(Path(args.base), _run_name(args))
            parser.error(f"--resume: no checkpoint of the {_run_name(args)} run in {args.base} ({model_path.name}, {history_path.name})")
        return _train(args, strategy)


def _run_name(args):
    return "augmented" if args.augment else "scratch"


def _train(args, strategy):
    start_run(args)
    base = Path(args.base)
    with distribute.chief_first(strategy):  # one process makes the split, the others wait for it
        if not (base / "train").is_dir():
            make_small_split(args.original, base)

    name = _run_name(args)
    earlier_history = {}
    with distribute.scope_of(strategy):  # load_checkpoint compiles inside the scope too
        if args.resume:
            model, earlier_history = load_checkpoint(base, name)
        else:
            model = build_model(args.augment)
            model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(lr=1e-4), metrics=["acc"])
    model.summary()
    test_datagen = ImageDataGenerator(rescale=1.0 / 255)
    if args.augment:
        train_datagen = ImageDataGenerator(rescale=1.0 / 255, rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                                           shear_range=0.2, zoom_range=0.2, horizontal_flip=True)  # fmt: skip
        batch_size, epochs = 32, args.epochs or 100
    else:
        train_datagen = test_datagen
        batch_size, epochs = 20, args.epochs or 30
    steps, validation_steps = args.steps or 100, args.validation_steps or 50
    if strategy is not None:  # each process's steps: an epoch sees as many images as on one process
        steps, validation_steps = (max(1, -(-count // strategy.num_replicas_in_sync)) for count in (steps, validation_steps))
    flow = dict(target_size=(150, 150), batch_size=batch_size, class_mode="binary", seed=args.seed, workers=args.workers)
    train_generator = train_datagen.flow_from_directory(base / "train", **flow)
    validation_generator = test_datagen.flow_from_directory(base / "validation", **{**flow, "batch_size": 20})
    start, compiled_before = time.perf_counter(), compile_seconds()
    checkpoint = EpochCheckpoint(base, name, earlier_history)
    model.fit_generator(train_generator, steps_per_epoch=steps, epochs=epochs, initial_epoch=len(earlier_history.get("loss", [])),
                        validation_data=validation_generator, validation_steps=validation_steps, verbose=2,
                        callbacks=[checkpoint])  # fmt: skip
    seconds, note = training_time(time.perf_counter() - start, compile_seconds() - compiled_before)
    history = checkpoint.history
    if strategy is not None and not strategy.is_chief:  # the checkpoint callback runs on rank 0 only
        history = {key: list(earlier_history.get(key, [])) + values for key, values in model.history.history.items()}
    test_generator = test_datagen.flow_from_directory(base / "test", **{**flow, "batch_size": 20, "shuffle": False})
    test_loss, test_acc = model.evaluate(test_generator, verbose=0)  # every test image once: 50 batches of 20
    if strategy is None or strategy.is_chief:
        write_history(history, base / f"history_{name}.json")
    model.save(base / f"cats_and_dogs_small_{name}.h5")
    epochs_run = len(history["loss"]) - len(earlier_history.get("loss", []))
    print(f"training: {seconds:.0f} s, {seconds / max(epochs_run, 1):.1f} s per epoch{note}")
    print(f"final val_acc: {history['val_acc'][-1]:.4f}, best val_acc: {max(history['val_acc']):.4f}")
    print(f"test_acc: {test_acc:.4f}")
    return history, test_acc


if __name__ == "__main__":
    main()
