"""Print, after the timings, one table per layer or network: each implementation's time, GFLOP/s and its speed
against PyTorch and against the best peer (PyTorch or Keras 3 on TensorFlow, where timed).

All implementations run in the same pytest session, so the ratios compare like with like on a shared machine whose
absolute speed drifts.

``--busy`` keeps one CPU-bound process spinning through the whole run, started and stopped here: the condition
of a machine where a core is busy with something else (an image loader, CI, a second job). ``cython_1t`` and ``numba_1t`` rows are
fastconv at one thread (``fastconv.set_num_threads(1)``), to compare its default thread count with.
"""

import os
import subprocess
import sys

import pytest

import fastconv
from layers import torch


PEERS = ("torch", "keras_tf")
# Every implementation gets the same threads: the cores this process may use (2 on the CI-sized machines).
THREADS = len(os.sched_getaffinity(0))
_busy = {"process": None}


def pytest_addoption(parser):
    parser.addoption("--busy", action="store_true", help="keep one CPU-bound process spinning through the whole run")


def pytest_configure(config):
    if torch is not None:
        torch.set_num_threads(THREADS)
    if config.getoption("--busy", default=False):
        _busy["process"] = subprocess.Popen([sys.executable, "-c", "while True: pass"])


def pytest_unconfigure(config):
    if _busy["process"] is not None:
        _busy["process"].kill()
        _busy["process"].wait()


def fastconv_implementation(implementation):
    """``(backend name, threads)`` of a fastconv implementation name: 'cython', 'numba', or 'cython_1t' or 'numba_1t' (one thread;
    None: fastconv's own choice)."""
    backend, _, threads = implementation.partition("_")
    return backend, (1 if threads == "1t" else None)


@pytest.fixture
def fastconv_threads(request):
    """``use(implementation)``: set fastconv's thread count for a fastconv implementation; put back afterwards."""

    def use(implementation):
        fastconv.set_num_threads(fastconv_implementation(implementation)[1])
        return fastconv_implementation(implementation)[0]

    yield use
    fastconv.set_num_threads(None)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    by_layer = {}
    for bench in session.benchmarks:
        by_layer.setdefault(bench.group, {})[bench.extra_info["implementation"]] = bench
    write = terminalreporter.write_line
    write("")
    condition = "BUSY: one other process spinning on a core" if _busy["process"] is not None else "quiet"
    write(f"fastconv vs its peers in one run, {THREADS} threads each ({condition}), median of the rounds (layers: one training step; networks: optimizer steps)")
    header = f"{'layer / network':40s} {'impl':>9s} {'ms':>9s} {'GFLOP/s':>8s} {'samples/s':>10s} {'torch/impl':>10s} {'best peer/impl':>14s}"
    write(header)
    write("-" * len(header))
    for layer, runs in by_layer.items():
        torch_time = runs["torch"].stats.median if "torch" in runs else None
        peer_times = [runs[peer].stats.median for peer in PEERS if peer in runs]
        best_peer = min(peer_times) if peer_times else None
        for implementation, bench in sorted(runs.items()):
            seconds = bench.stats.median
            gflops = bench.extra_info["flops"] / seconds / 1e9
            ratio = f"{torch_time / seconds:10.2f}" if torch_time else f"{'-':>10s}"
            best = f"{best_peer / seconds:14.2f}" if best_peer else f"{'-':>14s}"
            samples = bench.extra_info.get("samples")
            rate = f"{samples / seconds:10,.0f}" if samples else f"{'-':>10s}"
            write(f"{layer:40s} {implementation:>9s} {seconds * 1e3:9.2f} {gflops:8.1f} {rate} {ratio} {best}")
    write("A ratio > 1 means that implementation is faster than PyTorch / than the faster of PyTorch and Keras-TF.")


@pytest.fixture
def torch_or_skip():
    if torch is None:
        pytest.skip("torch is not installed (pip install '.[bench]')")
    return torch


@pytest.fixture
def keras_worker():
    """A factory of Keras-on-TensorFlow workers (``keras_worker.KerasWorker``), each closed after its test; skips
    without TensorFlow."""
    from keras_worker import KerasWorker

    workers = []

    def start(network, batch_size):
        try:
            workers.append(KerasWorker(network, batch_size, threads=THREADS))
        except ImportError as error:
            pytest.skip(str(error))
        return workers[-1]

    yield start
    for worker in workers:
        worker.close()
