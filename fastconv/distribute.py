"""Data-parallel training on MPI: one model, a whole replica in every process, gradients averaged each step.

The shape of Keras' distribution strategies, on MPI through ``mpi4py`` (Horovod's engine for Keras), with nothing
home-made on the wire::

    strategy = fastconv.distribute.MPIStrategy()
    with strategy.scope():
        model = build_model()
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=32)   # mpiexec -n 2 python script.py

A strategy object rather than Horovod's ``DistributedOptimizer`` and broadcast callback: the script a Keras user
already has changes by two lines, and the things a user can forget with Horovod — broadcasting rank 0's weights,
averaging the metrics, writing files from one rank only — cannot be forgotten. What ``fit`` does under it:

- At its start every process checks that it holds the same model (layer count, weight shapes, optimizer) as rank 0,
  then takes rank 0's weights and optimizer state (after ``load_model`` too).
- ``batch_size`` is each process's batch, as in Horovod: ``n`` processes at batch ``b`` make one step of ``n * b``
  samples. Arrays are cut by rank: step ``i`` of the epoch takes global samples ``[i*n*b, (i+1)*n*b)`` of the
  epoch's order (rank 0's, drawn as one process seeded alike draws it, so that the run takes the steps of one
  process at batch ``n * b``), rank ``r`` the ``r``-th share of them. Scale the learning
  rate as for a batch ``n`` times larger (Goyal et al.: linearly, with a warm-up for large ``n``).
- After each backward pass the gradients, each weighted by the samples its process saw, and the batch's loss sum go
  into one float32 buffer and one ``Allreduce``; every replica then applies the same update, so the replicas stay
  bit-identical. A NaN loss on any rank is a NaN loss on all: all stop together.
- The epoch's loss and metrics are the means over every process's samples; only rank 0 prints, keeps History's
  file outputs, runs the callbacks that write files (``ModelCheckpoint``, ``CSVLogger``) and saves models; callbacks
  that decide (``EarlyStopping``) run everywhere on the same averaged logs, so every rank stops at the same epoch.
- An exception in one process ends every process (``MPI_Abort``) after printing which rank failed and why, instead
  of leaving the others waiting in a collective.

Install with ``pip install -e ".[distributed]"`` (``mpi4py`` and the ``mpich`` wheel, which ships ``mpiexec``).
"""

import contextlib
import os
import sys
import time
import traceback

import numpy as np

from fastconv import utils
from fastconv.models.training import STRATEGY_SCOPES, current_strategy

__all__ = ["MPIStrategy", "chief_first", "chief_prints", "current_strategy", "launched_processes", "scope_of", "strategy_for_launch"]

_BUCKET_ELEMENTS = 1 << 24  # floats per Allreduce message (64 MiB): few, large messages, bounded extra memory
_ABORT_DELAY_SECONDS = 1.0


# What mpiexec tells the processes it starts: MPICH's Hydra (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), PMIx.
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


def launched_processes(environment=os.environ):
    """How many processes mpiexec started together with this one (1 when not started by mpiexec)."""
    for variable in _LAUNCHER_SIZE_VARIABLES:
        if environment.get(variable, "").strip().isdigit():
            return int(environment[variable])
    return 1


def strategy_for_launch():
    """An :class:`MPIStrategy` when this script was started by ``mpiexec -n N`` with N > 1, else None: how the
    examples run on one process or many with no flag."""
    return MPIStrategy() if launched_processes() > 1 else None


@contextlib.contextmanager
def scope_of(strategy):
    """``strategy.scope()``, or nothing for None."""
    if strategy is None:
        yield None
    else:
        with strategy.scope():
            yield strategy


@contextlib.contextmanager
def chief_first(strategy):
    """Rank 0 runs the block first (making a data split, say), the other ranks once it has finished."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        yield
        return
    if strategy.is_chief:
        yield
        strategy.communicator.Barrier()
    else:
        strategy.communicator.Barrier()
        yield


@contextlib.contextmanager
def chief_prints(strategy):
    """Inside, only rank 0's ``print`` reaches the terminal (the others' standard output goes nowhere)."""
    if strategy is None or strategy.is_chief:
        yield
        return
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
        yield


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            f"fastconv.distribute needs mpi4py and an MPI library ({error}); install them with "
            "`python -m pip install -e \".[distributed]\"` (mpi4py and the mpich wheel, which ships mpiexec)"
        ) from error
    return MPI


class MPIStrategy:
    """Data parallelism over the processes of an MPI communicator (``MPI.COMM_WORLD`` unless given)."""

    def __init__(self, communicator=None):
        mpi = _mpi()
        self.communicator = mpi.COMM_WORLD if communicator is None else communicator
        self.rank = self.communicator.Get_rank()
        self.num_replicas_in_sync = self.communicator.Get_size()
        self.allreduce_seconds, self.allreduce_steps = 0.0, 0  # time in the gradients' Allreduce, and its steps

    def __repr__(self):
        return f"<MPIStrategy rank {self.rank} of {self.num_replicas_in_sync}>"

    @property
    def is_chief(self):
        """Rank 0: the process that prints, and writes History's files, checkpoints and saved models."""
        return self.rank == 0

    @contextlib.contextmanager
    def scope(self):
        """Models compiled inside train under this strategy."""
        STRATEGY_SCOPES.append(self)
        try:
            yield self
        finally:
            STRATEGY_SCOPES.remove(self)

    # --- what fit calls ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def failures_end_every_rank(self, raised_on_every_rank=()):
        """An exception here prints which rank failed and why, then aborts every process: the others would wait in
        the next collective for ever. Ctrl-C (KeyboardInterrupt) aborts too. Exceptions of the types
        ``raised_on_every_rank`` (every rank raises them at the same point) pass as on one process."""
        try:
            yield
        except BaseException as error:  # noqa: B036 - every way out of this rank must end the others
            if self.num_replicas_in_sync == 1 or isinstance(error, raised_on_every_rank):
                raise
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            sys.stderr.write(f"fastconv: rank {self.rank} of {self.num_replicas_in_sync} failed; ending every rank\n{detail}")
            sys.stderr.flush()
            # mpiexec forwards a process's output through its proxy, and MPI_Abort tears the proxies down at once: on
            # a loaded machine the message was lost (CI saw an empty stderr). A moment lets the proxy pass it on.
            time.sleep(_ABORT_DELAY_SECONDS)
            self.communicator.Abort(1)
            raise

    def synchronize(self, model):
        """Check that every rank holds the same model, then give every rank rank 0's weights and optimizer state."""
        signature = _model_signature(model)
        signatures = self.communicator.allgather(signature)
        for rank, other in enumerate(signatures):
            if other != signature:
                raise ValueError(
                    f"the replicas differ: rank {rank} has {_describe(other)}, rank {self.rank} has "
                    f"{_describe(signature)}; every process must build and compile the same model"
                )
        for weight, value in zip(model.weights, self._broadcast_arrays([weight.value for weight in model.weights])):
            weight.assign(value)
        iterations, slots = model.optimizer.get_state(model.weights)
        flat = self._broadcast_arrays([slot for kind in slots for slot in kind])
        per_kind = len(model.weights)
        model.optimizer.set_state(model.weights, self.communicator.bcast(iterations, root=0),
                                  [flat[k * per_kind : (k + 1) * per_kind] for k in range(len(slots))])  # fmt: skip

    def _broadcast_arrays(self, arrays):
        """Rank 0's ``arrays`` (float32 host copies) on every rank, sent in few packed buffers."""
        from fastconv.backends import get_backend

        host = [np.asarray(get_backend().to_host(array), dtype=np.float32) for array in arrays]
        received = [None] * len(host)
        for bucket in _buckets([array.size for array in host]):
            buffer = np.concatenate([host[i].ravel() for i in bucket])
            self.communicator.Bcast(buffer, root=0)
            offset = 0
            for i in bucket:
                received[i] = buffer[offset : offset + host[i].size].reshape(host[i].shape)
                offset += host[i].size
        return received

    def shared_seed(self):
        """A seed drawn by rank 0 from fastconv's generator, the same on every rank (an epoch's order, a dataset's
        shards)."""
        return self.communicator.bcast(int(utils.rng().integers(2**63)) if self.is_chief else None, root=0)

    def shared_permutation(self, count):
        """Rank 0's ``utils.rng().permutation(count)`` on every rank: an epoch's order of ``count`` samples, the very
        order that one process seeded alike draws, so that n processes at batch b take the steps of one at n * b."""
        order = utils.rng().permutation(count).astype(np.int64, copy=False) if self.is_chief else np.empty(count, np.int64)
        self.communicator.Bcast(order, root=0)
        return order

    def average_gradients(self, weights, loss_sum, count):
        """Every weight's gradient becomes the mean over all samples of all ranks (each rank's gradient, a mean over
        its ``count`` samples, weighted by ``count``); returns ``(global loss sum, global count)``. One
        ``Allreduce`` per bucket of float32: the gradients, then the loss sum and the count."""
        from fastconv.backends import get_backend

        backend = get_backend()
        trained = [weight for weight in weights if weight.trainable and weight.grad is not None]
        grads = [backend.to_host(weight.grad) for weight in trained] + [np.array([loss_sum, count], np.float32)]
        weighted = [np.float32(count)] * len(trained) + [np.float32(1)]  # the loss and count are sums already
        reduced = [None] * len(grads)
        for bucket in _buckets([grad.size for grad in grads]):
            buffer = np.empty(sum(grads[i].size for i in bucket), np.float32)
            offset = 0
            for i in bucket:  # each gradient copied once, into the message, weighted by this rank's samples
                np.multiply(grads[i].reshape(-1), weighted[i], out=buffer[offset : offset + grads[i].size])
                offset += grads[i].size
            started = time.perf_counter()
            self.communicator.Allreduce(_in_place(), buffer)
            self.allreduce_seconds += time.perf_counter() - started
            offset = 0
            for i in bucket:
                reduced[i] = buffer[offset : offset + grads[i].size].reshape(grads[i].shape)
                offset += grads[i].size
        self.allreduce_steps += 1
        global_loss_sum, global_count = float(reduced[-1][0]), float(reduced[-1][1])
        for weight, grad in zip(trained, reduced):
            grad /= np.float32(global_count)  # in the message's own buffer, fresh each step: nothing else views it
            weight.grad = backend.to_device(grad)
        return global_loss_sum, global_count

    def mean_logs(self, totals, seen):
        """The epoch's logs as means over every rank's samples: ``totals`` {key: sum of value x samples}."""
        keys = sorted(totals)
        local = np.array([totals[key] for key in keys] + [seen], np.float64)
        self.communicator.Allreduce(_in_place(), local)
        return {key: float(local[i] / local[-1]) for i, key in enumerate(keys)}

    def shard(self, feeder):
        """The share of ``feeder``'s batches this rank trains on: arrays, ``flow``/``flow_from_directory``
        iterators (split in place) and ``image_dataset_from_directory`` datasets; every rank gets rank 0's seed for
        the order of the files, so the shares are disjoint. Steps given to ``fit`` (``steps_per_epoch``,
        ``validation_steps``) count each process's steps; otherwise an epoch is one pass over the data."""
        from fastconv.models import data as data_module

        if isinstance(feeder, data_module.ArrayBatches):
            return ShardedArrayBatches(feeder, self)
        source = getattr(feeder, "generator", None) if isinstance(feeder, data_module.GeneratorBatches) else getattr(feeder, "dataset", None)
        if not hasattr(source, "sharded"):
            raise NotImplementedError(
                f"MPIStrategy cannot split {type(source).__name__} between processes: pass arrays, an ImageDataGenerator "
                "iterator (flow, flow_from_directory) or image_dataset_from_directory's dataset"
            )
        shard = source.sharded(self.rank, self.num_replicas_in_sync, self.shared_seed())
        if isinstance(feeder, data_module.GeneratorBatches):
            return data_module.GeneratorBatches(shard, feeder.steps if feeder.steps_given else None)
        return data_module.DatasetBatches(shard, min(feeder.steps, len(shard)))


class ShardedArrayBatches:
    """Rank ``r``'s batches of an :class:`~fastconv.models.data.ArrayBatches`: global step ``i`` covers samples
    ``[i*n*b, (i+1)*n*b)`` of the epoch's order (rank 0's, drawn as one process draws it), rank ``r`` the ``r``-th
    of ``n`` near-equal shares. Every rank
    takes the same number of steps, so that each step's collective has every rank; a last step of fewer samples
    than ranks would leave a rank without any, so those few (< n) samples wait for the next epoch's order."""

    def __init__(self, batches, strategy):
        self.batches, self.strategy = batches, strategy
        total, replicas = len(batches.x), strategy.num_replicas_in_sync
        if total < replicas:
            raise ValueError(f"{total} samples cannot be shared by {replicas} processes")
        self.steps = utils.shard_steps(total, batches.batch_size, replicas)

    def epoch(self):
        total, rank, replicas = len(self.batches.x), self.strategy.rank, self.strategy.num_replicas_in_sync
        order = self.strategy.shared_permutation(total) if self.batches.shuffle else None
        for step in range(self.steps):
            first, last = utils.shard_bounds(total, self.batches.batch_size, rank, replicas, step)
            index = slice(first, last) if order is None else np.sort(order[first:last])
            yield self.batches.x[index], None if self.batches.y is None else self.batches.y[index]


def _in_place():
    return _mpi().IN_PLACE


def _buckets(sizes):
    """Indices of ``sizes`` grouped in order into buckets of about ``_BUCKET_ELEMENTS`` floats (a larger array alone)."""
    buckets, current, filled = [], [], 0
    for index, size in enumerate(sizes):
        if current and filled + size > _BUCKET_ELEMENTS:
            buckets.append(current)
            current, filled = [], 0
        current.append(index)
        filled += size
    return buckets + [current] if current else buckets


def _model_signature(model):
    optimizer = model.optimizer
    return (
        len(model.layers),
        tuple((weight.name, tuple(weight.shape), bool(weight.trainable)) for weight in model.weights),
        None if optimizer is None else (type(optimizer).__name__, tuple(sorted(optimizer.get_config().items()))),
    )


def _describe(signature):
    layers, weights, optimizer = signature
    elements = sum(int(np.prod(shape)) for _, shape, _ in weights)
    return f"{layers} layers, {len(weights)} weights of {elements} values, optimizer {optimizer}"
