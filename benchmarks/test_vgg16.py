"""Forward of the VGG16 convolutional base at 150x150, batch 20 (listing 5.17's feature extraction), against PyTorch CPU
with the same weights and Keras 3 on TensorFlow CPU (its own random weights, in a worker process), in one run.

``python -m pytest benchmarks/test_vgg16.py --benchmark-enable``. The ImageNet weights are not needed for timing:
the same random weights go into both. 13.2 GFLOP per image forward; 4,000 images (the notes' split) ~53 TFLOP.
"""

import numpy as np
import pytest

import fastconv
from fastconv.applications import VGG16

BATCH_SIZE = 20
VGG16_BASE_FORWARD_FLOPS = 13.2e9


@pytest.fixture(scope="module")
def conv_base():
    fastconv.utils.set_random_seed(0)
    return VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))


@pytest.mark.parametrize("implementation", ["cython", "cython_1t", "numba", "numba_1t", "torch", "keras_tf"])
def test_vgg16_base_forward(benchmark, request, fastconv_threads, conv_base, implementation):
    x_nhwc = np.random.default_rng(0).uniform(-120, 150, (BATCH_SIZE, 150, 150, 3)).astype(np.float32)
    if implementation == "keras_tf":
        worker = request.getfixturevalue("keras_worker")("vgg16", BATCH_SIZE)

        def forward():
            worker.run(1)

    elif implementation == "torch":
        request.getfixturevalue("torch_or_skip")
        from fastconv.applications.torch_twin import torch_features, vgg16_base_in_torch

        torch_base = vgg16_base_in_torch(conv_base)

        def forward():
            torch_features(torch_base, x_nhwc)

    else:
        backend_name = fastconv_threads(implementation)

        def forward():
            with fastconv.use_backend(backend_name):
                conv_base.predict(x_nhwc, batch_size=BATCH_SIZE)

    benchmark.group = f"vgg16 base forward 150x150 (batch {BATCH_SIZE})"
    benchmark.extra_info.update(implementation=implementation, flops=VGG16_BASE_FORWARD_FLOPS * BATCH_SIZE, samples=BATCH_SIZE)
    benchmark.pedantic(forward, rounds=5, iterations=1, warmup_rounds=1)
