"""A first look: one convolution layer forward and backward on every backend, checked and timed.

Run ``python -m fastconv.demo`` (or the ``fastconv-demo`` command). It builds
the second convolution of the notes' cats-vs-dogs convnet (74x74x32 -> 64
filters, 3x3, batch 32), runs forward, grad-kernel and grad-input on each
backend, compares every result with the float64 reference and prints the
time and GFLOP/s of each. Until the model API lands this is the main job.
"""

import argparse
import time

import numpy as np

from fastconv.backends import available_backends, load_backend


def _best_time(step, repeats):
    step()  # warm-up: Numba compiles (or loads its cache) here
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def run(batch=32, size=74, channels=32, filters=64, repeats=3, seed=0):
    rng = np.random.default_rng(seed)
    x_nhwc = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, channels, filters)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    out_size = size - 2
    grad_out = rng.standard_normal((batch, out_size, out_size, filters)).astype(np.float32)
    flops = 3 * 2 * batch * out_size * out_size * filters * 9 * channels

    reference = load_backend("reference")
    expected = (
        reference.conv2d_forward(x_nhwc, kernel, bias),
        *reference.conv2d_backward_kernel(x_nhwc, grad_out, kernel.shape),
        reference.conv2d_backward_input(grad_out, kernel, x_nhwc.shape),
    )
    print(f"conv2d 3x3, x {x_nhwc.shape} -> y {(batch, out_size, out_size, filters)}: forward + grad kernel/bias + grad input")
    print(f"{'backend':>10s} {'time (ms)':>10s} {'GFLOP/s':>8s} {'max rel. error vs float64':>26s}")
    for name in available_backends():
        backend = load_backend(name)
        results = []

        def step():
            results[:] = [
                backend.conv2d_forward(x_nhwc, kernel, bias),
                *backend.conv2d_backward_kernel(x_nhwc, grad_out, kernel.shape),
                backend.conv2d_backward_input(grad_out, kernel, x_nhwc.shape),
            ]

        seconds = _best_time(step, 1 if name == "reference" else repeats)
        error = max(np.abs(got - want).max() / np.abs(want).max() for got, want in zip(results, expected))
        print(f"{name:>10s} {seconds * 1e3:10.1f} {flops / seconds / 1e9:8.1f} {error:26.1e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    run(batch=args.batch, repeats=args.repeats)


if __name__ == "__main__":
    main()
