"""Everything the cuda backend must show on a real GPU, in one call (for the device tool).

    python benchmarks/gpu_check.py            # after: python -m pip install -e .

1. the kernel suite and the training tests on the GPU (pytest; conftest adds 'cuda' when a GPU loads);
2. one MNIST epoch of listing 5.3 on 'cuda', with its test accuracy;
3. training throughput against PyTorch cuDNN fp32 in the same run: the MNIST convnet at batch 64 and
   the cats-vs-dogs convnet at batch 32 (random data), samples/s and the ratio;
4. the cost of one kernel launch (an empty kernel), which bounds small steps.

It prints one table at the end; nothing is written elsewhere.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def run_tests():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernels.py", "tests/test_cuda.py", "-k", "cuda"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:]
    if result.returncode:
        print(result.stdout[-5000:], result.stderr[-2000:])
    return summary


def mnist_epoch():
    import fastconv
    from fastconv.examples.mnist import main

    with fastconv.use_backend("cuda"):
        start = time.perf_counter()
        _, test_acc = main(["--epochs", "1", "--verbose", "2"])
    return test_acc, time.perf_counter() - start


def launch_cost(repeats=1000):
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
    return (time.perf_counter() - start) / repeats


def fastconv_throughput(network, batch_size, steps):
    from networks import make_training_step

    step = make_training_step(network, "cuda", batch_size)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()  # each step returns its loss to the host, which synchronises
    return batch_size * steps / (time.perf_counter() - start)


def torch_throughput(network, batch_size, steps):
    import torch

    from networks import cats_dogs_torch, mnist_torch

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
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
        return loss.item()  # the same host round trip as fastconv's

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def main():
    rows = [("kernel suite + training tests on the GPU", run_tests())]
    test_acc, seconds = mnist_epoch()
    rows.append(("MNIST listing 5.3, 1 epoch on cuda", f"test_acc {test_acc:.4f}, {seconds:.1f} s"))
    rows.append(("numba kernel launch (empty kernel)", f"{launch_cost() * 1e6:.1f} us"))
    for network, batch_size, steps, target in (("mnist", 64, 200, 0.5), ("cats_dogs", 32, 30, 0.7)):
        ours = fastconv_throughput(network, batch_size, steps)
        theirs = torch_throughput(network, batch_size, steps)
        rows.append(
            (f"train {network} batch {batch_size}", f"fastconv {ours:,.0f} samples/s, torch cuDNN {theirs:,.0f}, ratio {ours / theirs:.2f} (target {target})")
        )
    width = max(len(name) for name, _ in rows)
    print("\n" + "=" * 100)
    for name, value in rows:
        print(f"{name:{width}s}  {value}")


if __name__ == "__main__":
    np.random.seed(0)
    main()
