"""Keras 3 on TensorFlow CPU, the benchmarks' second peer, in a process of its own.

TensorFlow brings its own OpenMP/oneDNN runtime and thread pools, which share a process badly with PyTorch's and
fastconv's, so the benchmarks start this worker once (``KerasWorker``) and time each round from the parent: one
request down a pipe, one line back, a few hundred microseconds against rounds of 0.1-2 s.

Requests, one per line: ``build <network> <batch>`` (``mnist``, ``cats_dogs`` or ``vgg16``) and ``run <repeats>``
(train steps, or VGG16 forward batches); each is answered ``ok``. The worker runs TensorFlow on the parent's
thread count of intra-op threads (``FASTCONV_BENCH_THREADS``) and Keras' defaults otherwise: RMSprop,
``train_on_batch`` and ``predict_on_batch``. Its log goes nowhere; a worker that fails says so by not answering.
"""

import os
import subprocess
import sys


def _build(network, batch_size):
    import keras
    import numpy as np

    layers = keras.layers
    rng = np.random.default_rng(0)
    if network == "vgg16":
        model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
        x = rng.uniform(-120, 150, (batch_size, 150, 150, 3)).astype(np.float32)
        return lambda: model.predict_on_batch(x)
    if network == "mnist":
        shape, convs, dense, outputs, loss = (28, 28, 1), [32, 64, 64], 64, 10, "categorical_crossentropy"
    else:
        shape, convs, dense, outputs, loss = (150, 150, 3), [32, 64, 128, 128], 512, 1, "binary_crossentropy"
    stack = [keras.Input(shape)]
    for index, filters in enumerate(convs):
        stack.append(layers.Conv2D(filters, 3, activation="relu"))
        if index < len(convs) - 1 or outputs == 1:
            stack.append(layers.MaxPooling2D(2))
    stack += [layers.Flatten(), layers.Dense(dense, activation="relu"), layers.Dense(outputs, activation="softmax" if outputs > 1 else "sigmoid")]
    model = keras.Sequential(stack)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=loss)
    x = rng.random((batch_size, *shape), dtype=np.float32)
    labels = rng.integers(0, max(outputs, 2), batch_size)
    y = np.eye(outputs, dtype=np.float32)[labels] if outputs > 1 else labels.astype(np.float32)[:, None]
    return lambda: model.train_on_batch(x, y)


def serve():
    import tensorflow as tf

    threads = int(os.environ.get("FASTCONV_BENCH_THREADS", "2"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    step = None
    for line in sys.stdin:
        command, *arguments = line.split()
        if command == "build":
            step = _build(arguments[0], int(arguments[1]))
            step()  # traces and compiles: a warm-up outside the timings
        elif command == "run":
            for _ in range(int(arguments[0])):
                step()
        print("ok", flush=True)


class KerasWorker:
    """The parent's end: ``KerasWorker("mnist", 64).run(20)`` runs 20 training steps in the worker and returns when
    they are done. ImportError if TensorFlow is not installed (the optional [bench] extra)."""

    def __init__(self, network, batch_size, threads=2):
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
            raise ImportError("tensorflow-cpu and keras are not installed (pip install '.[bench]')")
        environment = dict(
            os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", FASTCONV_BENCH_THREADS=str(threads)
        )
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment
        )
        self._ask(f"build {network} {batch_size}")

    def run(self, repeats):
        self._ask(f"run {repeats}")

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def _ask(self, request):
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"the Keras worker did not answer {request!r} (exit status {self.process.poll()})")


if __name__ == "__main__":
    serve()
