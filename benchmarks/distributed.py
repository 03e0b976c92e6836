"""One process on every core against one process per core (MPI): ``python benchmarks/distributed.py [--rounds N]``.

Trains the notes' two convnets (MNIST b64, cats vs dogs b32: global batches) on random arrays, first as one process
with ``FASTCONV_NUM_THREADS`` = the cores, then under ``mpiexec -n <cores>`` with one thread each and the per-process
batch divided by the process count, and prints samples/s and the time rank 0 spends in the gradients' Allreduce per
step (waiting for the other ranks included). Needs the ``[distributed]`` extra. A script, not a benchmark test: the
tests in this folder compare peers in one process.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = {"mnist": 40, "cats_dogs": 6}
GLOBAL_BATCH = {"mnist": 64, "cats_dogs": 32}


def worker(network, global_batch):
    """One process of a run (alone, or one rank under mpiexec): prints 'samples/s allreduce_ms' from rank 0."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from networks import cats_dogs_fastconv, mnist_fastconv

    from fastconv import distribute

    strategy = distribute.strategy_for_launch()
    processes = 1 if strategy is None else strategy.num_replicas_in_sync
    with distribute.scope_of(strategy):
        model, input_shape, loss, outputs = mnist_fastconv() if network == "mnist" else cats_dogs_fastconv()
        model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    samples = global_batch * STEPS[network]
    x = rng.random((samples, *input_shape), dtype=np.float32)
    labels = rng.integers(0, max(outputs, 2), samples)
    y = np.eye(outputs, dtype=np.float32)[labels] if outputs > 1 else labels.astype(np.float32)
    batch = global_batch // processes
    model.fit(x[: 2 * global_batch], y[: 2 * global_batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    if strategy is not None:
        strategy.allreduce_seconds, strategy.allreduce_steps = 0.0, 0
        strategy.communicator.Barrier()
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    if strategy is None or strategy.is_chief:
        allreduce = 0.0 if strategy is None else 1e3 * strategy.allreduce_seconds / max(1, strategy.allreduce_steps)
        print(f"{samples / seconds:.1f} {allreduce:.2f}")


def run(command, threads):
    environment = {**os.environ, "FASTCONV_NUM_THREADS": str(threads)}
    output = subprocess.run(command, capture_output=True, text=True, env=environment, check=True).stdout.split()
    return float(output[-2]), float(output[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--worker", nargs=2, metavar=("NETWORK", "GLOBAL_BATCH"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        return worker(arguments.worker[0], int(arguments.worker[1]))
    script, n = [sys.executable, str(Path(__file__).resolve())], arguments.processes
    print(f"| network, global batch | 1 process x {n} threads, samples/s | {n} processes x 1 thread | Allreduce per step (rank 0) |")
    print("|---|---:|---:|---:|")
    for network, batch in GLOBAL_BATCH.items():
        alone, spread, allreduce = [], [], []
        for _ in range(arguments.rounds):
            alone.append(run([*script, "--worker", network, str(batch)], n)[0])
            rate, milliseconds = run(["mpiexec", "-n", str(n), *script, "--worker", network, str(batch)], 1)
            spread.append(rate)
            allreduce.append(milliseconds)
        print(f"| {network}, {batch} | {', '.join(f'{r:,.0f}' for r in alone)} | {', '.join(f'{r:,.0f}' for r in spread)} | "
              f"{', '.join(f'{m:.2f} ms' for m in allreduce)} |")  # fmt: skip


if __name__ == "__main__":
    main()
