"""Print, after the timings, one table per layer: each implementation's time, GFLOP/s and ratio to PyTorch.

All implementations run in the same pytest session, so the ratios compare
like with like on a shared machine whose absolute speed drifts.
"""

import os

import pytest

from layers import torch


def pytest_configure(config):
    if torch is not None:
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    by_layer = {}
    for bench in session.benchmarks:
        by_layer.setdefault(bench.group, {})[bench.extra_info["implementation"]] = bench
    write = terminalreporter.write_line
    write("")
    write("fastconv vs PyTorch in one run, minimum over rounds (layers: one training step; networks: optimizer steps)")
    header = f"{'layer / network':34s} {'impl':>9s} {'ms':>9s} {'GFLOP/s':>8s} {'samples/s':>10s} {'torch/impl':>10s}"
    write(header)
    write("-" * len(header))
    for layer, runs in by_layer.items():
        torch_time = runs["torch"].stats.min if "torch" in runs else None
        for implementation, bench in sorted(runs.items()):
            seconds = bench.stats.min
            gflops = bench.extra_info["flops"] / seconds / 1e9
            ratio = f"{torch_time / seconds:10.2f}" if torch_time else f"{'-':>10s}"
            samples = bench.extra_info.get("samples")
            rate = f"{samples / seconds:10,.0f}" if samples else f"{'-':>10s}"
            write(f"{layer:34s} {implementation:>9s} {seconds * 1e3:9.2f} {gflops:8.1f} {rate} {ratio}")
    write("torch/impl > 1 means fastconv is faster than PyTorch.")


@pytest.fixture
def torch_or_skip():
    if torch is None:
        pytest.skip("torch is not installed (pip install '.[bench]')")
    return torch
