"""Listing 5.3: the MNIST convnet, 5 epochs, batch 64, RMSprop — then the test accuracy.

Run ``python -m fastconv.examples.mnist`` (or ``fastconv-mnist``); ``--backend numba`` to use the
Numba kernels, ``--epochs``/``--batch-size`` to change the run, ``--seed`` for a repeatable one.
The model is the notes' listing with only the import changed (fastconv.examples.listings).
``mpiexec -n 2 python -m fastconv.examples.mnist`` trains it data-parallel on two processes (fastconv.distribute):
``--batch-size`` is then each process's batch, by default the listing's 64 samples a step shared among them (32
each on two), so that the run takes the listing's steps.
"""

import argparse
import time

import fastconv
from fastconv import distribute
from fastconv.datasets import mnist
from fastconv.examples.listings import mnist_convnet
from fastconv.examples.runs import add_run_arguments, compile_seconds, start_run, training_time
from fastconv.utils import to_categorical


build_model = mnist_convnet
LISTING_BATCH_SIZE = 64


def batch_size_per_process(requested, strategy):
    """``requested``, or listing 5.3's 64 samples a step shared among the processes (at least 1 each)."""
    if requested is not None:
        return requested
    processes = 1 if strategy is None else strategy.num_replicas_in_sync
    return max(1, round(LISTING_BATCH_SIZE / processes))


def load_mnist():
    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images = train_images.reshape((60000, 28, 28, 1)).astype("float32") / 255
    test_images = test_images.reshape((10000, 28, 28, 1)).astype("float32") / 255
    return (train_images, to_categorical(train_labels)), (test_images, to_categorical(test_labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"each process's batch (default: {LISTING_BATCH_SIZE}, shared among the processes under mpiexec)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    strategy = distribute.strategy_for_launch()
    with distribute.chief_prints(strategy):
        return _train(args, strategy)


def _train(args, strategy):
    start_run(args)
    batch_size = batch_size_per_process(args.batch_size, strategy)
    replicas = "" if strategy is None else f", {strategy.num_replicas_in_sync} processes (MPI) x batch {batch_size}"
    print(f"fastconv {fastconv.__version__}, backend {fastconv.get_backend().name!r}{replicas}")

    with distribute.scope_of(strategy):
        model = build_model()
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    (train_images, train_labels), (test_images, test_labels) = load_mnist()
    start, compiled_before = time.perf_counter(), compile_seconds()
    history = model.fit(train_images, train_labels, epochs=args.epochs, batch_size=batch_size, verbose=args.verbose)
    seconds, note = training_time(time.perf_counter() - start, compile_seconds() - compiled_before)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    samples = len(train_images) * len(history.epoch)
    print(f"training: {seconds:.1f} s, {samples / seconds:,.0f} samples/s{note}")
    if strategy is not None and strategy.allreduce_steps:
        print(f"Allreduce of the gradients: {1e3 * strategy.allreduce_seconds / strategy.allreduce_steps:.2f} ms per step (rank 0)")
    print(f"test_loss: {test_loss:.4f}")
    print(f"test_acc: {test_acc:.4f}")
    return history, test_acc


if __name__ == "__main__":
    main()
