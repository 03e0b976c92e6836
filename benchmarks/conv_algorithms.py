"""GEMM against Winograd F(2x2) and F(4x4) on the notes' 3x3 stride-1 layers, forward, input gradient and kernel
gradient, one backend per run, with the machine's sgemm rate measured in the same run.

``python benchmarks/conv_algorithms.py cython`` (or ``numba``) prints, per layer and pass, the best of 3 timings of
each algorithm forced (the three interleaved, after one warm-up each), with the GFLOP/s they mean, and marks what
``auto`` picks; docs/performance.md holds the figures and the rule that ``auto`` draws from them.
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


ALGORITHMS = ("gemm", "winograd_2x2", "winograd_4x4")
PASSES = ("fwd", "grad_x", "grad_k")


def interleaved_best(runs, rounds=3):
    """{algorithm: best seconds} of ``runs`` ({algorithm: zero-argument call}), timed in turn so that the machine's
    drift falls on all of them alike."""
    best = {}
    for algorithm, run in runs.items():
        algorithms.set_conv_algorithm(algorithm)
        run()
    for _ in range(rounds):
        for algorithm, run in runs.items():
            algorithms.set_conv_algorithm(algorithm)
            start = time.perf_counter()
            run()
            best[algorithm] = min(best.get(algorithm, float("inf")), time.perf_counter() - start)
    return best


def sgemm_rate(size=2048):
    """numpy's float32 GEMM rate (GFLOP/s), best of 3, with the BLAS threads it has."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    seconds = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * size**3 / seconds / 1e9


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(backend_name):
    backend = load_backend(backend_name)
    rng = np.random.default_rng(0)
    print(f"{backend_name}: ms per call with each algorithm forced, the direct method's GFLOP/s (2 N OH OW 9 C F / s) in "
          f"brackets, * what auto picks; numpy sgemm {sgemm_rate():.0f} GFLOP/s in this run")
    header = " ".join(f"{f'{pass_} {algorithm}':>22s}" for pass_ in PASSES for algorithm in ALGORITHMS)
    print(f"{'layer':20s} {'GFLOP':>6s} {header}")
    for name, batch, side, channels, filters, padding in LAYERS:
        x_nhwc = rng.standard_normal((batch, side, side, channels)).astype(np.float32)
        kernel = (rng.standard_normal((3, 3, channels, filters)) * 0.1).astype(np.float32)
        bias = np.zeros(filters, np.float32)
        y_shape = backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding).shape
        grad_out = rng.standard_normal(y_shape).astype(np.float32)
        flops = 2 * np.prod(y_shape[:3]) * 9 * channels * filters
        calls = {
            "fwd": lambda: backend.conv2d_forward(x_nhwc, kernel, bias, (1, 1), padding),
            "grad_x": lambda: backend.conv2d_backward_input(grad_out, kernel, x_nhwc.shape, (1, 1), padding),
            "grad_k": lambda: backend.conv2d_backward_kernel(x_nhwc, grad_out, kernel.shape, (1, 1), padding),
        }
        algorithms.set_conv_algorithm("auto")
        picks = {
            "fwd": algorithms.choose(kernel.shape, (1, 1), y_shape[1:3], backend.has_winograd),
            "grad_k": algorithms.choose(kernel.shape, (1, 1), y_shape[1:3], backend.has_winograd),
        }
        picks["grad_x"] = algorithms.choose(kernel.shape, (1, 1), y_shape[1:3], backend.has_winograd, input_gradient=True)
        cells = []
        for pass_ in PASSES:
            best = interleaved_best({algorithm: calls[pass_] for algorithm in ALGORITHMS})
            for algorithm in ALGORITHMS:
                mark = "*" if picks[pass_] == algorithm else " "
                cells.append(f"{best[algorithm] * 1e3:12.2f}{mark}({flops / best[algorithm] / 1e9:5.0f})")
        print(f"{name:20s} {flops / 1e9:6.2f} {' '.join(cells)}", flush=True)
    algorithms.set_conv_algorithm("auto")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cython")
