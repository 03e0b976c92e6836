"""GEMM against Winograd on the notes' 3x3 stride-1 layers, forward and input gradient, one backend per run.

``python benchmarks/conv_algorithms.py cython`` (or ``numba``) prints, per layer, the best of 3 timings of each
algorithm forced, after one warm-up, and their ratio; docs/performance.md holds the figures and the rule that
``auto`` draws from them.
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


def main(backend_name):
    backend = load_backend(backend_name)
    rng = np.random.default_rng(0)
    print(f"{backend_name}: ms per call, forced algorithm")
    print(f"{'layer':20s} {'fwd gemm':>9s} {'fwd wino':>9s} {'ratio':>6s} {'grad_x gemm':>11s} {'grad_x wino':>11s} {'ratio':>6s}")
    for name, batch, side, channels, filters, padding in LAYERS:
        x_nhwc = rng.standard_normal((batch, side, side, channels)).astype(np.float32)
        kernel = (rng.standard_normal((3, 3, channels, filters)) * 0.1).astype(np.float32)
        bias = np.zeros(filters, np.float32)
        times = {}
        for algorithm in ("gemm", "winograd"):
            algorithms.set_conv_algorithm(algorithm)
            grad_out = rng.standard_normal(backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding).shape).astype(np.float32)
            times[algorithm] = (
                best_seconds(lambda: backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding)),
                best_seconds(lambda: backend.conv2d_backward_input(grad_out, kernel, x_nhwc.shape, (1, 1), padding)),
            )
        (forward_gemm, input_gemm), (forward_winograd, input_winograd) = times["gemm"], times["winograd"]
        print(f"{name:20s} {forward_gemm * 1e3:9.2f} {forward_winograd * 1e3:9.2f} {forward_gemm / forward_winograd:6.2f} "
              f"{input_gemm * 1e3:11.2f} {input_winograd * 1e3:11.2f} {input_gemm / input_winograd:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cython")
