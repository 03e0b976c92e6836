"""Where a training step goes, phase by phase: ``python benchmarks/phases.py [--busy] [--threads N] [--steps N]``.

Times every kernel the backend runs during the notes' two training steps (MNIST convnet b64, cats-vs-dogs convnet
b32, RMSprop) by wrapping the backend's public methods, and prints milliseconds per step for each phase: the
convolution's forward, input gradient and kernel gradient, pooling, activations, dense, loss, optimizer, and what
is left (Python around the kernels). ``--busy`` keeps one CPU-bound process spinning meanwhile, as the benchmarks'
``--busy`` does. A script, not a benchmark test: it explains a step; the tests in this folder compare peers.
"""

import argparse
import contextlib
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import fastconv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from networks import make_training_step  # noqa: E402

PHASES = {
    "conv forward": ("conv2d_forward",),
    "conv input gradient": ("conv2d_backward_input",),
    "conv kernel gradient": ("conv2d_backward_kernel",),
    "pooling": ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"),
    "activations": ("relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "softmax_forward", "softmax_backward"),
    "dense": ("dense_forward", "dense_backward"),
    "loss": ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"),
    "optimizer": ("sgd_update", "rmsprop_update", "adam_update"),
}  # fmt: skip
NETWORKS = {"mnist": 64, "cats_dogs": 32}


@contextlib.contextmanager
def timed_backend(backend, totals):
    """Inside the block every phase method of ``backend`` adds its wall time to ``totals[phase]``; a method another
    one calls (the input gradient computed as a convolution) counts in the caller's phase only."""
    originals, depth = {}, [0]
    for phase, names in PHASES.items():
        for name in names:
            originals[name] = getattr(backend, name)

            def timed(*args, _original=originals[name], _phase=phase, **kwargs):
                depth[0] += 1
                started = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        totals[_phase] += time.perf_counter() - started

            setattr(backend, name, timed)
    try:
        yield
    finally:
        for name in originals:
            delattr(backend, name)  # the instance attribute goes; the class's method is back


def phases_of(network, steps, backend_name="cython"):
    """{phase: ms per step}, with 'step' the whole and 'outside the kernels' the rest."""
    step = make_training_step(network, backend_name, NETWORKS[network])
    step(), step()  # warm-up: buffers, scratch, numba's compilation
    totals = defaultdict(float)
    backend = fastconv.backends.load_backend(backend_name)
    with timed_backend(backend, totals):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        whole = time.perf_counter() - started
    per_step = {phase: 1e3 * totals[phase] / steps for phase in PHASES}
    per_step["outside the kernels"] = 1e3 * whole / steps - sum(per_step.values())
    per_step["step"] = 1e3 * whole / steps
    return per_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="keep one CPU-bound process spinning meanwhile")
    parser.add_argument("--threads", type=int, default=None, help="fastconv.set_num_threads (default: fastconv's choice)")
    parser.add_argument("--steps", type=int, default=None, help="steps per network (default: 20 MNIST, 3 cats vs dogs)")
    parser.add_argument("--backend", default="cython")
    arguments = parser.parse_args(argv)
    fastconv.set_num_threads(arguments.threads)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if arguments.busy else None
    try:
        results = {network: phases_of(network, arguments.steps or (20 if network == "mnist" else 3), arguments.backend)
                   for network in NETWORKS}  # fmt: skip
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    threads = fastconv.backends.threads.choice()
    print(f"{arguments.backend}, {threads[0]} threads ({threads[1]}), {'busy' if arguments.busy else 'quiet'}: ms per step")
    print("| phase | " + " | ".join(f"{network} b{batch}" for network, batch in NETWORKS.items()) + " |")
    print("|---|" + "---:|" * len(NETWORKS))
    for phase in [*PHASES, "outside the kernels", "step"]:
        print(f"| {phase} | " + " | ".join(f"{results[network][phase]:.1f}" for network in NETWORKS) + " |")


if __name__ == "__main__":
    main()
