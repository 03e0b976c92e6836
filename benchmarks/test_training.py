"""Training throughput of the notes' convnets, fastconv against PyTorch CPU and Keras 3 on TensorFlow CPU, in one run.

``python -m pytest benchmarks/test_training.py --benchmark-enable`` prints samples/s and the ratio to the best
peer. MNIST convnet at batch 64 (listing 5.3), cats vs dogs at batch 32 (listing 5.5). Keras runs in a worker
process (``keras_worker.py``), timed from here.
"""

import pytest

from networks import CATS_DOGS_FORWARD_FLOPS, MNIST_FORWARD_FLOPS, make_training_step

CASES = {"mnist": (64, 20, MNIST_FORWARD_FLOPS), "cats_dogs": (32, 2, CATS_DOGS_FORWARD_FLOPS)}


@pytest.mark.parametrize("implementation", ["cython", "cython_1t", "numba", "numba_1t", "torch", "keras_tf"])
@pytest.mark.parametrize("network", list(CASES))
def test_training_steps(benchmark, request, fastconv_threads, network, implementation):
    batch_size, steps, forward_flops = CASES[network]
    if implementation == "keras_tf":
        worker = request.getfixturevalue("keras_worker")(network, batch_size)

        def steps_run():
            worker.run(steps)

    else:
        if implementation == "torch":
            request.getfixturevalue("torch_or_skip")
        else:
            implementation_backend = fastconv_threads(implementation)
        step = make_training_step(network, implementation if implementation == "torch" else implementation_backend, batch_size)

        def steps_run():
            for _ in range(steps):
                step()

    benchmark.group = f"train {network} (batch {batch_size}, {steps} steps)"
    benchmark.extra_info.update(
        implementation=implementation, flops=3 * forward_flops * batch_size * steps, samples=batch_size * steps
    )
    benchmark.pedantic(steps_run, rounds=5, iterations=1, warmup_rounds=1)
