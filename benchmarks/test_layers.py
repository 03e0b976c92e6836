"""Timings of every conv and pool layer of the notes' two convnets, on every implementation.

Run: ``pytest benchmarks -p no:randomly --benchmark-enable`` (pyproject disables
benchmarks by default so that the test suite never times anything).
"""

import pytest

from layers import IMPLEMENTATIONS, LAYERS, make_step

ROUNDS = {"reference": 2}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("layer", LAYERS, ids=[layer.name for layer in LAYERS])
def test_layer_step(benchmark, request, layer, implementation):
    if implementation == "torch":
        request.getfixturevalue("torch_or_skip")
    step = make_step(layer, implementation)
    benchmark.group = layer.name
    benchmark.extra_info.update(implementation=implementation, flops=layer.flops())
    benchmark.pedantic(step, rounds=ROUNDS.get(implementation, 5), iterations=1, warmup_rounds=1)
