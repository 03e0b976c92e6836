"""The compiled kernels' parallel driver (src_ext/_driver.pxd, which runs the numba backend's blocks too), seen from
outside.

Blocks go to whichever thread asks first, so which thread computes what changes from call to call; what a kernel
returns must not. A kernel gradient is summed in a fixed number of groups added in group order: the same bits on
every call, whichever thread took which group, whether the helpers were free or another Python thread held them
(its call then runs on its own thread), and in a child process forked after the helpers had started.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
from conftest import within_seconds
from fastconv.backends import load_backend


def _every_parallel_kernel(algorithms=("gemm", "winograd_2x2", "winograd_4x4"), backend_name="cython"):
    """Each parallel kernel of a backend on fixed inputs: {name: result}, the convolutions by each of ``algorithms``
    forced in turn (None: by the setting in force); sizes that give several blocks per thread."""
    rng = np.random.default_rng(7)
    backend = load_backend(backend_name)
    x = rng.standard_normal((8, 20, 20, 16), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 16, 24), dtype=np.float32)
    bias = rng.standard_normal(24, dtype=np.float32)
    grad_y = rng.standard_normal((8, 18, 18, 24), dtype=np.float32)
    dense_x = rng.standard_normal((256, 600), dtype=np.float32)  # 46 MFLOP forward: several threads
    dense_kernel = rng.standard_normal((600, 300), dtype=np.float32)
    dense_grad = rng.standard_normal((256, 300), dtype=np.float32)
    results = {}
    for algorithm in algorithms:
        if algorithm is not None:
            fastconv.set_conv_algorithm(algorithm)
        results[f"conv forward {algorithm}"] = backend.conv2d_forward(x, kernel, bias)
        results[f"conv grad x {algorithm}"] = backend.conv2d_backward_input(grad_y, kernel, x.shape)
        grad_kernel, grad_bias = backend.conv2d_backward_kernel(x, grad_y, kernel.shape)
        results[f"conv grad kernel {algorithm}"] = grad_kernel
        results[f"conv grad bias {algorithm}"] = grad_bias
    pooled, argmax = backend.max_pool2d_forward(x)
    results["max pool"] = pooled
    results["max pool grad"] = backend.max_pool2d_backward(pooled, argmax, x.shape)
    results["avg pool"] = backend.avg_pool2d_forward(x)
    results["relu"] = backend.relu_forward(x)
    results["dense"] = backend.dense_forward(dense_x, dense_kernel, None)
    results.update(zip(("dense grad x", "dense grad kernel", "dense grad bias"),
                       backend.dense_backward(dense_grad, dense_x, dense_kernel)))  # fmt: skip
    return results


def _assert_same_bits(expected, got):
    assert expected.keys() == got.keys()
    for name in expected:
        assert np.array_equal(expected[name], got[name]), f"{name} differs"


@pytest.fixture
def two_threads():
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(None)
    fastconv.set_conv_algorithm("auto")


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_every_call_gives_the_same_bits_whichever_thread_took_which_block(two_threads, backend_name):
    expected = _every_parallel_kernel(backend_name=backend_name)
    for _ in range(3):
        _assert_same_bits(expected, _every_parallel_kernel(backend_name=backend_name))


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
@pytest.mark.parametrize("algorithm", ["gemm", "winograd_2x2", "winograd_4x4"])
def test_calls_from_several_python_threads_at_once_give_what_each_gives_alone(two_threads, algorithm, backend_name):
    fastconv.set_conv_algorithm(algorithm)  # process-wide: set once, before the threads start
    expected = _every_parallel_kernel((None,), backend_name)
    got, errors = [], []

    def run():
        try:
            for _ in range(3):
                got.append(_every_parallel_kernel((None,), backend_name))
        except BaseException as error:  # reported below, in the test's own thread
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    with within_seconds(120):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert len(got) == 9
    for results in got:
        _assert_same_bits(expected, results)


def _child(queue, backend_name):
    fastconv.set_num_threads(2)
    queue.put(_every_parallel_kernel(backend_name=backend_name))


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_a_forked_child_runs_the_kernels_after_its_parent_did(two_threads, backend_name):
    """The child of a fork() has none of its parent's helper threads (an image loader's worker processes are such
    children); its kernels must neither wait for them nor differ."""
    expected = _every_parallel_kernel(backend_name=backend_name)  # the parent's helpers are running now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue, backend_name))
    try:
        with within_seconds(60):
            child.start()
            got = queue.get()
            child.join()
    finally:
        if child.is_alive():  # hung: do not leave it behind
            child.kill()
    assert child.exitcode == 0
    _assert_same_bits(expected, got)


_COUNT_HELPERS = """
import os, sys, numpy as np, fastconv
from fastconv.backends import load_backend
load_backend("cython")  # imports every compiled module (each shares the driver as it loads)
backend = load_backend(sys.argv[1])
fastconv.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((8, 20, 20, 16), dtype=np.float32)
backend.relu_forward(np.zeros(1, np.float32))  # OpenBLAS' and OpenMP's own threads start here, if at all
before = len(os.listdir("/proc/self/task"))
kernel = np.ones((3, 3, 16, 24), np.float32)
fastconv.set_conv_algorithm("gemm")
backend.conv2d_forward(x, kernel, None)           # conv's blocks
fastconv.set_conv_algorithm("winograd_4x4")
backend.conv2d_forward(x, kernel, None)           # winograd's
backend.max_pool2d_forward(x)                     # pool's
backend.dense_forward(np.ones((256, 600), np.float32), np.ones((600, 300), np.float32), None)  # dense's
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_every_module_runs_its_blocks_on_the_same_helpers(backend_name):
    """One driver per process, not per compiled module: with two threads, the kernels of four modules add one
    helper thread in all (with a driver per module, four), so that the helper a call wakes is the one the last
    call left spinning, and no other module's helper spins beside it. The numba backend's convolutions, pooling and
    dense run on the same driver: no thread of Numba's own starts for them either."""
    result = subprocess.run([sys.executable, "-c", _COUNT_HELPERS, backend_name], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == 1


_HELPER_AFFINITY = """
import json, os, sys, numpy as np, fastconv
from fastconv.backends import load_backend
if len(sys.argv) > 2:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
load_backend("cython")
backend = load_backend(sys.argv[1])
fastconv.set_num_threads(2)
backend.relu_forward(np.zeros(1, np.float32))  # OpenBLAS' and OpenMP's own threads start here, if at all
before = set(os.listdir("/proc/self/task"))
x = np.random.default_rng(0).standard_normal((8, 20, 20, 16), dtype=np.float32)
backend.conv2d_forward(x, np.ones((3, 3, 16, 24), np.float32), None)
helpers = [sorted(os.sched_getaffinity(int(task))) for task in set(os.listdir("/proc/self/task")) - before]
print(json.dumps([helpers, sorted(os.sched_getaffinity(0))]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2, reason="needs /proc and two CPUs")
@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_helpers_are_kept_off_the_cpu_of_their_caller(backend_name):
    """A helper may run on any CPU of the process but the one its caller was on at its last call (where the OS would
    otherwise wake it, beside another busy process taking its caller's core); a process with one CPU keeps it."""
    result = subprocess.run([sys.executable, "-c", _HELPER_AFFINITY, backend_name], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    helpers, process = json.loads(result.stdout.splitlines()[-1])
    assert len(helpers) == 1
    assert set(helpers[0]) < set(process) and len(process) - len(helpers[0]) == 1
    result = subprocess.run([sys.executable, "-c", _HELPER_AFFINITY, backend_name, "one-cpu"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    helpers, process = json.loads(result.stdout.splitlines()[-1])
    assert len(process) == 1 and helpers == [process]


_NUMBA_FROM_ITS_CACHE = """
import numpy as np, fastconv
from fastconv.backends import load_backend
backend = load_backend("numba")
fastconv.set_num_threads(2)
fastconv.set_conv_algorithm("gemm")
x = np.arange(4 * 9 * 9 * 3, dtype=np.float32).reshape(4, 9, 9, 3) / 100
print(float(np.asarray(backend.conv2d_forward(x, np.ones((3, 3, 3, 8), np.float32), None)).sum()))
"""


def test_numba_kernels_loaded_from_the_disk_cache_by_another_process_run(tmp_path):
    """The numba kernels reach the driver through addresses given as arguments: one frozen into the code that Numba
    caches on disk would point, in the next process, where the driver's module is no longer mapped."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _NUMBA_FROM_ITS_CACHE], capture_output=True, text=True, timeout=600,
                           env=env) for _ in range(2)]  # fmt: skip
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.split()[-1] == runs[1].stdout.split()[-1]
    assert list(tmp_path.rglob("*.nbc")), "the first run cached nothing"


def test_a_numba_job_record_refuses_a_strided_view():
    """A block rebuilds each array of its record as C-contiguous from its address and shape: a strided view written
    there would be read as the wrong elements, so the record refuses it."""
    from fastconv.backends.numba._driver import JOB_LEN, put

    job = np.zeros(JOB_LEN, np.int64)
    assert put(job, 0, np.ones((4, 6), np.float32)) == 3
    with pytest.raises(ValueError, match="C-contiguous"):
        put(job, 0, np.ones((4, 6), np.float32)[:, ::2])
