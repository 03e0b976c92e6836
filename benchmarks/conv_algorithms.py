"""GEMM against Winograd F(2x2) and F(4x4) on the notes' 3x3 stride-1 layers, forward and input gradient, one
backend per run.

``python benchmarks/conv_algorithms.py cython`` (or ``numba``) prints, per layer, the best of 3 timings of each
algorithm forced, after one warm-up, with the GFLOP/s they mean; docs/performance.md holds the figures and the rule
that ``auto`` draws from them.
"""

import sys
import time

import numpy as np

from fastconv.backends import algorithms, load_backend

# name, batch, input side, channels, filters, padding: MNIST (listing 5.3), cats vs dogs (5.5), VGG16 at 150x150.
LAYERS = [
    ("mnist conv2", 64, 13, 32, 64, "valid"), ("mnist conv3", 64, 5, 64, 64, "valid"),
    ("catsdogs conv2", 32, 74, 32, 64, "valid"), ("catsdogs conv3", 32, 36, 64, 128, "valid"),
    ("catsdogs conv4", 32, 17, 128, 128, "valid"), ("vgg16 block1_conv2", 20, 150, 64, 64, "same"),
    ("vgg16 block2_conv2", 20, 75, 128, 128, "same"), ("vgg16 block3_conv2", 20, 37, 256, 256, "same"),
    ("vgg16 block4_conv2", 20, 18, 512, 512, "same"), ("vgg16 block5_conv2", 20, 9, 512, 512, "same"),
]  # fmt: skip


def best_seconds(run, rounds=3):
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


ALGORITHMS = ("gemm", "winograd_2x2", "winograd_4x4")


def main(backend_name):
    backend = load_backend(backend_name)
    rng = np.random.default_rng(0)
    print(f"{backend_name}: ms per call with each algorithm forced; the direct method's GFLOP/s (2 N OH OW 9 C F / s) in brackets")
    header = " ".join(f"{f'{pass_} {algorithm}':>22s}" for pass_ in ("fwd", "grad_x") for algorithm in ALGORITHMS)
    print(f"{'layer':20s} {'GFLOP':>6s} {header}")
    for name, batch, side, channels, filters, padding in LAYERS:
        x_nhwc = rng.standard_normal((batch, side, side, channels)).astype(np.float32)
        kernel = (rng.standard_normal((3, 3, channels, filters)) * 0.1).astype(np.float32)
        bias = np.zeros(filters, np.float32)
        y_shape = backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding).shape
        grad_out = rng.standard_normal(y_shape).astype(np.float32)
        flops = 2 * np.prod(y_shape[:3]) * 9 * channels * filters
        times = {}
        for algorithm in ALGORITHMS:
            algorithms.set_conv_algorithm(algorithm)
            times["fwd", algorithm] = best_seconds(lambda: backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding))
            times["grad_x", algorithm] = best_seconds(lambda: backend.conv2d_backward_input(grad_out, kernel, x_nhwc.shape, (1, 1), padding))
        cells = " ".join(f"{seconds * 1e3:13.2f} ({flops / seconds / 1e9:5.0f})" for seconds in times.values())
        print(f"{name:20s} {flops / 1e9:6.2f} {cells}")
    algorithms.set_conv_algorithm("auto")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cython")
