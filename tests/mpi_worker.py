"""One process of the data-parallel tests (tests/test_distribute.py), run under ``mpiexec -n N``.

``python tests/mpi_worker.py CASE OUT``: CASE is ``train:<network>:<optimizer>[:perturbed]`` (every rank trains the
network on the same fixed data at batch 32 and saves its weights to ``OUT/rank<r>.npz``; each rank draws different
initial weights, which rank 0's replace; ``perturbed``: rank 1 also starts from another optimizer state, which rank
0's replaces too; ``shuffled``: SHUFFLED_EPOCHS epochs in shuffled order, rank 0's, as one process seeded 0 draws it), ``mismatch`` (rank 1 builds a wider model), ``raise`` (rank 1 raises in its
second step), ``kill`` (rank 1 kills itself in its second step) or ``nan`` (rank 1's share of the second step
overflows to an infinite loss: every rank must stop there with NonFiniteLoss, written to ``OUT/nonfinite<r>.txt``).
"""

import os
import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distributed_cases import PER_PROCESS_BATCH, SHUFFLED_EPOCHS, STEPS, data, model_for  # noqa: E402

import fastconv  # noqa: E402
from fastconv import callbacks, distribute  # noqa: E402


class Sabotage(callbacks.Callback):
    """Rank 1 fails in its second step, by an exception or by SIGKILL."""

    def __init__(self, how):
        self.how = how

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 was told to fail")


def main(case, out):
    strategy = distribute.MPIStrategy()
    rank = strategy.rank
    kind, network, optimizer, variant = (case.split(":") + ["mnist", "sgd", ""])[:4] if case.startswith("train") else (case, "mnist", "sgd", "")
    fastconv.utils.set_random_seed(rank)  # different initial weights on every rank: rank 0's must win
    with strategy.scope():
        model = model_for(network, wider=(kind == "mismatch" and rank == 1))
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    if variant == "perturbed" and rank == 1:
        iterations, slots = model.optimizer.get_state(model.weights)
        model.optimizer.set_state(model.weights, 7, [[np.full_like(slot, 0.5) for slot in kind_slots] for kind_slots in slots])
    x, y = data(network, PER_PROCESS_BATCH * strategy.num_replicas_in_sync * STEPS)
    sabotage = [Sabotage(kind)] if kind in ("raise", "kill") and rank == 1 else []
    if kind == "nan":  # every rank holds all the data; step 2's second share is rank 1's
        x[3 * PER_PROCESS_BATCH : 4 * PER_PROCESS_BATCH] = 3e38
        try:
            model.fit(x, y, batch_size=PER_PROCESS_BATCH, epochs=1, shuffle=False, verbose=0)
        except fastconv.models.NonFiniteLoss as error:
            (Path(out) / f"nonfinite{rank}.txt").write_text(f"{error.step}")
        return
    shuffled = variant == "shuffled"
    history = model.fit(x, y, batch_size=PER_PROCESS_BATCH, epochs=SHUFFLED_EPOCHS if shuffled else 1, shuffle=shuffled, verbose=0, callbacks=sabotage)
    np.savez(Path(out) / f"rank{rank}.npz", *[weight.numpy() for weight in model.weights], loss=history.history["loss"][-1])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
