"""Everything the cuda backend must show on a real GPU, in one call (for the device tool).

    python benchmarks/gpu_check.py --out DIR     # after: python setup.py build_ext --inplace (or pip install -e .)

1. the machine: GPU, driver, CUDA, numba / numba-cuda / PyTorch / cuDNN versions;
2. the kernel suite and the training tests on the GPU (pytest ``-k cuda``; conftest adds 'cuda' when a GPU loads),
   and ``compute-sanitizer`` (memcheck, then racecheck on the GEMM) on a short kernel subset;
3. listing 5.3 (MNIST convnet, 5 epochs, batch 64) on 'cuda', with its test accuracy;
4. the cost of one kernel launch (an empty kernel), which bounds small steps;
5. the ceilings measured in the same run: PyTorch's fp32 SGEMM (TF32 off) and fastconv's GEMM, TFLOP/s;
6. throughput against PyTorch cuDNN in the same process: the MNIST convnet training at batch 64, the cats-vs-dogs
   convnet at batch 32 (RMSprop, random data), the VGG16 base forward at batch 64 (150 x 150). PyTorch is measured
   twice: strict fp32 (``allow_tf32 = False``, the issue's comparison) and with its defaults (TF32 convolutions);
7. per-kernel times of one training step of each convnet (CUDA events around every low-level kernel, after a
   synchronisation) and the host time between kernels: what bounds a step.

Each section is guarded: one that fails prints its error and the others still run. Everything printed also goes
to ``DIR/gpu_check.txt``, the pytest and sanitizer logs to ``DIR/tests.txt`` and ``DIR/sanitizer.txt``, and every
figure to ``DIR/gpu_check.json``. ``--backend cython`` with ``--quick`` rehearses the script's logic on a CPU.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

# The suites that the simulator run covers (tests/test_cuda.py), here on the GPU.
SUITES = ("test_kernels.py", "test_bad_inputs.py", "test_gradients.py", "test_model_gradients.py", "test_nan_and_inf.py",
          "test_resume.py", "test_cuda.py")  # fmt: skip
SANITIZER_SUBSET = "cuda and (test_conv2d_network_shapes or test_max_pool2d or test_dense or test_softmax_cross_entropy)"
RACECHECK_SUBSET = "cuda and test_conv2d_network_shapes"
VGG16_FORWARD_FLOPS = 13.2e9
TARGETS = {"mnist": 1.0, "cats_dogs": 0.7, "vgg16": 0.5}


class Report:
    """Prints each line and appends it to ``gpu_check.txt``; keeps every figure for ``gpu_check.json``."""

    def __init__(self, out):
        self.out = out
        self.figures = {}
        self.rows = []
        out.mkdir(parents=True, exist_ok=True)
        self.text = open(out / "gpu_check.txt", "a", buffering=1)

    def say(self, line=""):
        print(line, flush=True)
        self.text.write(line + "\n")

    def row(self, name, value, **figures):
        self.rows.append((name, value))
        self.figures.update(figures)
        self.say(f"  -> {name}: {value}")
        self._dump()

    def _dump(self):
        (self.out / "gpu_check.json").write_text(json.dumps(self.figures, indent=1, default=str))

    @contextlib.contextmanager
    def section(self, title):
        self.say(f"\n=== {title} ({time.strftime('%H:%M:%S')})")
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.say(traceback.format_exc())
            self.rows.append((title, "FAILED (traceback above)"))
        self.say(f"=== {title}: {time.perf_counter() - started:.1f} s")


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(report, backend):
    import numba

    figures = {"numba": numba.__version__, "numba-cuda": _version("numba-cuda"), "torch": _version("torch"),
               "numpy": np.__version__, "python": sys.version.split()[0]}  # fmt: skip
    if backend == "cuda":
        from numba import cuda

        device = cuda.get_current_device()
        figures.update(gpu=device.name.decode() if isinstance(device.name, bytes) else device.name,
                       compute_capability=device.compute_capability, driver_cuda=cuda.cudadrv.driver.driver.get_version(),
                       runtime_cuda=cuda.runtime.get_version(), multiprocessors=device.MULTIPROCESSOR_COUNT)  # fmt: skip
    try:
        import torch

        figures["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit"
        figures["nvidia_smi"] = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    report.row("machine", ", ".join(f"{key} {value}" for key, value in figures.items()), machine=figures)


def _pytest(report, log, args, timeout, prefix=()):
    command = [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    report.say("$ " + " ".join(command))
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode(errors="replace") + (error.stderr or b"").decode(errors="replace")
        output, code = output + f"\nTIMEOUT after {timeout} s", "timeout"
    with open(log, "a") as file:
        file.write(f"$ {' '.join(command)}\n{output}\n(exit {code})\n\n")
    lines = [line for line in output.strip().splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line or " error" in line), lines[-1] if lines else "")
    if code not in (0, 5):
        report.say("\n".join(lines[-60:]))
    return code, summary


def run_tests(report, quick):
    suites = [f"tests/{name}" for name in (SUITES[:1] if quick else SUITES)]
    extra = ["-x", "--maxfail=1", "-k", "cuda and test_dense"] if quick else ["-k", "cuda and not simulator"]
    code, summary = _pytest(report, report.out / "tests.txt", [*suites, *extra], timeout=240)
    report.row("kernel suite + training tests on the GPU", f"{summary} (exit {code})", tests={"exit": code, "summary": summary})


def run_sanitizer(report):
    tool = shutil.which("compute-sanitizer") or next(
        (str(path) for path in Path("/usr/local").glob("cuda*/bin/compute-sanitizer")), None)  # fmt: skip
    if tool is None:
        report.row("compute-sanitizer", "not found on this machine", sanitizer=None)
        return
    results = {}
    for name, subset, timeout in (("memcheck", SANITIZER_SUBSET, 100), ("racecheck", RACECHECK_SUBSET, 50)):
        prefix = (tool, "--tool", name, "--error-exitcode", "9", "--print-limit", "20")
        code, summary = _pytest(report, report.out / "sanitizer.txt", ["tests/test_kernels.py", "-x", "-k", subset], timeout, prefix)
        results[name] = {"exit": code, "summary": summary}
        report.row(f"compute-sanitizer {name}", f"{summary} (exit {code}; 9 = the tool found errors)")
    report.figures["sanitizer"] = results


def mnist_listing(report, backend, quick):
    from fastconv.examples.mnist import main

    epochs = 1 if quick else 5
    start = time.perf_counter()
    _, test_acc = main(["--backend", backend, "--epochs", str(epochs), "--verbose", "2"])
    seconds = time.perf_counter() - start
    report.row(f"listing 5.3 on {backend}, {epochs} epochs b64", f"test_acc {test_acc:.4f}, {seconds:.1f} s in all",
               mnist_listing={"epochs": epochs, "test_acc": float(test_acc), "seconds": seconds})  # fmt: skip


def launch_cost(report, repeats=2000):
    from numba import cuda

    @cuda.jit
    def empty(a):
        pass

    array = cuda.device_array(1)
    empty[1, 1](array)
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        empty[1, 1](array)
    cuda.synchronize()
    cost = (time.perf_counter() - start) / repeats
    report.row("numba kernel launch (empty kernel, host side)", f"{cost * 1e6:.1f} us", launch_us=cost * 1e6)


def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def ceilings(report, backend, quick):
    import torch

    size = 1024 if quick else 8192
    device = _torch_device()
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    for _ in range(2):
        a @ b
    _sync()
    start, repeats = time.perf_counter(), 3 if quick else 10
    for _ in range(repeats):
        a @ b
    _sync()
    torch_tflops = 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12
    figures = {"torch_sgemm_tflops": torch_tflops}
    text = f"PyTorch fp32 SGEMM {size}^3: {torch_tflops:.1f} TFLOP/s"
    if backend == "cuda":
        from numba import cuda

        from fastconv.backends.cuda.gemm import gemm

        a_dev, b_dev = cuda.to_device(a.cpu().numpy()), cuda.to_device(b.cpu().numpy())
        c_dev = cuda.device_array((size, size), dtype=np.float32)
        gemm(a_dev, b_dev, c_dev)
        cuda.synchronize()
        start, repeats = time.perf_counter(), 3
        for _ in range(repeats):
            gemm(a_dev, b_dev, c_dev)
        cuda.synchronize()
        ours = 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12
        figures["fastconv_gemm_tflops"] = ours
        text += f"; fastconv's GEMM {ours:.1f} TFLOP/s"
    report.row("ceilings", text, ceilings=figures)


def fastconv_training(network, backend, batch_size, steps):
    from networks import make_training_step

    step = make_training_step(network, backend, batch_size)
    for _ in range(3):
        step()  # compiles every kernel; each step returns its loss to the host, which synchronises
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def torch_training(network, batch_size, steps, tf32):
    import torch

    from networks import cats_dogs_torch, mnist_torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    device = _torch_device()
    model = (mnist_torch() if network == "mnist" else cats_dogs_torch()).to(device)
    shape = (batch_size, 1, 28, 28) if network == "mnist" else (batch_size, 3, 150, 150)
    x = torch.rand(shape, device=device)
    if network == "mnist":
        y, loss_fn = torch.randint(0, 10, (batch_size,), device=device), torch.nn.CrossEntropyLoss()
    else:
        y, loss_fn = torch.randint(0, 2, (batch_size, 1), device=device).float(), torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()  # the same host round trip as fastconv's per-step loss

    for _ in range(5):
        step()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync()
    return batch_size * steps / (time.perf_counter() - start)


def vgg16_forward(backend, batch_size, steps):
    """(fastconv images/s, torch fp32 images/s, torch TF32 images/s, largest difference of the two outputs relative
    to the largest output): the same VGG16 base, weights copied into PyTorch's twin."""
    import torch

    import fastconv
    from fastconv.applications import VGG16
    from fastconv.applications.torch_twin import vgg16_base_in_torch

    x_nhwc = np.random.default_rng(0).random((batch_size, 150, 150, 3), dtype=np.float32)
    with fastconv.use_backend(backend):
        model = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
        ours_out = model.predict(x_nhwc, batch_size=batch_size, verbose=0)
        start = time.perf_counter()
        for _ in range(steps):
            model.predict(x_nhwc, batch_size=batch_size, verbose=0)  # returns host arrays: synchronised
        ours = batch_size * steps / (time.perf_counter() - start)
    device = _torch_device()
    torch_base = vgg16_base_in_torch(model).to(device).eval()
    x_nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))).to(device)
    rates = []
    torch.backends.cudnn.benchmark = True
    with torch.no_grad():
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            for _ in range(3):
                theirs_out = torch_base(x_nchw)
                theirs_out.sum().item()
            start = time.perf_counter()
            for _ in range(max(steps, 3)):
                torch_base(x_nchw).sum().item()
            rates.append(batch_size * max(steps, 3) / (time.perf_counter() - start))
            if not tf32:
                reference = theirs_out.cpu().numpy().transpose(0, 2, 3, 1)
    difference = float(np.max(np.abs(ours_out - reference)) / max(np.max(np.abs(reference)), 1e-30))
    return ours, rates[0], rates[1], difference


def throughput(report, backend, quick):
    from networks import CATS_DOGS_FORWARD_FLOPS, MNIST_FORWARD_FLOPS

    cases = (("mnist", 64, 300), ("cats_dogs", 32, 40), ("vgg16", 64, 5))
    if quick:
        cases = (("mnist", 64, 3), ("cats_dogs", 4, 2), ("vgg16", 2, 1))
    results = {}
    for network, batch_size, steps in cases:
        try:
            extra = {}
            if network == "vgg16":
                ours, strict, tf32, difference = vgg16_forward(backend, batch_size, steps)
                flops, extra = VGG16_FORWARD_FLOPS, {"max_difference_to_torch_fp32": difference}
            else:
                ours = fastconv_training(network, backend, batch_size, steps)
                strict, tf32 = (torch_training(network, batch_size, steps, tf32) for tf32 in (False, True))
                flops = 3 * (MNIST_FORWARD_FLOPS if network == "mnist" else CATS_DOGS_FORWARD_FLOPS)
        except Exception:
            report.say(traceback.format_exc())
            report.rows.append((network, "FAILED (traceback above)"))
            continue
        work = "forward" if network == "vgg16" else "training"
        results[network] = {"batch": batch_size, "fastconv": ours, "torch_fp32": strict, "torch_tf32": tf32,
                            "ratio_fp32": ours / strict, "ratio_tf32": ours / tf32, "target": TARGETS[network],
                            "fastconv_tflops": ours * flops / 1e12, **extra}  # fmt: skip
        report.row(f"{network} {work} b{batch_size}, samples/s",
                   f"fastconv {ours:,.0f} ({ours * flops / 1e12:.2f} TFLOP/s); torch cuDNN fp32 {strict:,.0f}, "
                   f"ratio {ours / strict:.2f} (target {TARGETS[network]}); torch TF32 {tf32:,.0f}, ratio {ours / tf32:.2f}"
                   + "".join(f"; {key} {value:.2e}" for key, value in extra.items()))  # fmt: skip
        report.figures["throughput"] = results


@contextlib.contextmanager
def kernel_timer(backend_object, times):
    """Time every low-level kernel of ``backend_object`` with CUDA events (GPU time) after a synchronisation."""
    from numba import cuda

    low_level = backend_object.low_level
    originals = {}
    for name in dir(low_level):
        function = getattr(low_level, name)
        if name.startswith("_") or not callable(function):
            continue
        originals[name] = function

        def timed(*args, _function=function, _name=name):
            cuda.synchronize()
            begin, end = cuda.event(), cuda.event()
            begin.record()
            result = _function(*args)
            end.record()
            end.synchronize()
            times.setdefault(_name, []).append(begin.elapsed_time(end))
            return result

        try:
            setattr(low_level, name, timed)
        except (AttributeError, TypeError):
            originals.pop(name)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(low_level, name, function)


def profile_steps(report, backend):
    from networks import make_training_step

    import fastconv

    backend_object = fastconv.backends.load_backend(backend)
    profiles = {}
    for network, batch_size in (("mnist", 64), ("cats_dogs", 32)):
        step = make_training_step(network, backend, batch_size)
        for _ in range(3):
            step()
        start = time.perf_counter()
        step()
        plain_ms = (time.perf_counter() - start) * 1e3
        times = {}
        with kernel_timer(backend_object, times):
            start = time.perf_counter()
            step()
            timed_ms = (time.perf_counter() - start) * 1e3
        kernel_ms = sum(sum(values) for values in times.values())
        table = sorted(((sum(values), len(values), name) for name, values in times.items()), reverse=True)
        report.say(f"{network} b{batch_size}: one step {plain_ms:.2f} ms untimed, {timed_ms:.2f} ms timed; GPU time in "
                   f"kernels {kernel_ms:.2f} ms over {sum(len(v) for v in times.values())} calls")  # fmt: skip
        for total, calls, name in table:
            report.say(f"    {name:32s} {calls:3d} calls {total:8.3f} ms")
        profiles[network] = {"step_ms": plain_ms, "kernel_ms": kernel_ms, "kernels": {name: [calls, total] for total, calls, name in table}}
        report.row(f"{network} step profile", f"step {plain_ms:.2f} ms, of which GPU kernels {kernel_ms:.2f} ms")
    report.figures["profiles"] = profiles


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--backend", default="cuda", help="cuda; cython to rehearse the script on a CPU")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: rehearse the script's logic")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: tests, sanitizer, mnist, "
                        "timed (launch, ceilings, throughput, profile), profile")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    report = Report(args.out)
    np.random.seed(0)
    with report.section("machine"):
        machine(report, args.backend)
    if "tests" not in skip:
        with report.section("tests"):
            run_tests(report, args.quick)
    if "sanitizer" not in skip and args.backend == "cuda":
        with report.section("compute-sanitizer"):
            run_sanitizer(report)
    if "mnist" not in skip:
        with report.section("listing 5.3"):
            mnist_listing(report, args.backend, args.quick)
    if "timed" in skip:
        skip.add("profile")
    else:
        if args.backend == "cuda":
            with report.section("launch"):
                launch_cost(report)
        with report.section("ceilings"):
            ceilings(report, args.backend, args.quick)
        with report.section("throughput"):
            throughput(report, args.backend, args.quick)
    if "profile" not in skip and args.backend == "cuda":
        with report.section("per-kernel profile"):
            profile_steps(report, args.backend)
    width = max(len(name) for name, _ in report.rows)
    report.say("\n" + "=" * 100)
    for name, value in report.rows:
        report.say(f"{name:{width}s}  {value}")


if __name__ == "__main__":
    main()
