"""How many threads the kernels use: set_num_threads, then $FASTCONV_NUM_THREADS, then $OMP_NUM_THREADS, then the
physical cores this process may use within its cgroup's CPU quota."""

import pytest

import fastconv
from fastconv.backends import threads


@pytest.fixture
def automatic(monkeypatch):
    monkeypatch.delenv("FASTCONV_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    fastconv.set_num_threads(None)


def test_the_first_rule_set_decides(automatic, monkeypatch):
    machine = threads.thread_count()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choice() == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "5")
    assert threads.choice() == (5, "$FASTCONV_NUM_THREADS")
    fastconv.set_num_threads(1)
    assert threads.choice() == (1, "fastconv.set_num_threads")
    fastconv.set_num_threads(None)
    monkeypatch.delenv("FASTCONV_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.thread_count() == machine and "physical core" in threads.choice()[1]


def test_the_count_before_every_call_follows_the_environment_at_once(automatic, monkeypatch):
    # thread_count() reads the variables by a faster path than choice(): both must see every change
    machine = threads.thread_count()
    for variable, value, expected in [("OMP_NUM_THREADS", "3,2", 3), ("FASTCONV_NUM_THREADS", " 4 ", 4),
                                      ("FASTCONV_NUM_THREADS", "", 3), ("OMP_NUM_THREADS", "", machine)]:
        monkeypatch.setenv(variable, value)
        assert threads.thread_count() == expected == threads.choice()[0], (variable, value)
    fastconv.set_num_threads(2)
    assert threads.thread_count() == 2


def test_the_machine_is_asked_again_after_a_while(automatic, monkeypatch):
    threads.thread_count()
    monkeypatch.setattr(threads, "_allowed_cpus", lambda: frozenset({0}))  # as after `taskset -p 1 <pid>`
    monkeypatch.setattr(threads, "_MACHINE_SECONDS", 0.0)
    assert threads.thread_count() == 1 == threads.choice()[0]
    monkeypatch.undo()
    fastconv.set_num_threads(None)  # asks the machine afresh
    assert threads.thread_count() == threads.choice()[0]


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(automatic, monkeypatch, bad):
    monkeypatch.setenv("FASTCONV_NUM_THREADS", bad)
    with pytest.raises(ValueError, match=r"\$FASTCONV_NUM_THREADS: the number of threads must be a positive integer"):
        threads.thread_count()
    with pytest.raises(ValueError, match=r"set_num_threads: the number of threads must be a positive integer"):
        fastconv.set_num_threads(bad)


def _topology(root, cores):
    """A sysfs cpu folder: logical CPU i on (package 0, core cores[i])."""
    for cpu, core in enumerate(cores):
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text("0\n")
        (folder / "core_id").write_text(f"{core}\n")
    return root


def test_hyperthreads_of_one_core_count_once(tmp_path):
    topology = _topology(tmp_path, [0, 0, 1, 1])  # two cores, two hyperthreads each
    assert threads.physical_cores(frozenset({0, 1, 2, 3}), topology) == 2
    assert threads.physical_cores(frozenset({0, 1}), topology) == 1  # an affinity mask of one core's two threads
    assert threads.physical_cores(frozenset({0, 2}), topology) == 2
    assert threads.physical_cores(frozenset({7}), topology) == 1  # unreadable: counted as a core


@pytest.mark.parametrize(
    "files, quota",
    [({"cpu.max": "150000 100000\n"}, 2), ({"cpu.max": "max 100000\n"}, None), ({"cpu.max": "50000 100000\n"}, 1),
     ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
     ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None)],
    ids=["v2-1.5-cpus", "v2-unlimited", "v2-half-a-cpu", "v1-3-cpus", "v1-unlimited"],
)  # fmt: skip
def test_the_cgroup_cpu_quota_is_read_in_both_versions(tmp_path, files, quota):
    version_1 = any(name.startswith("cpu/") for name in files)
    proc = tmp_path / "cgroup"
    proc.write_text("4:cpu,cpuacct:/\n" if version_1 else "0::/\n")
    root = tmp_path / "fs"
    for name, text in files.items():
        path = root / name if not version_1 else root / "cpu,cpuacct" / name.removeprefix("cpu/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert threads.cgroup_cpu_quota.__wrapped__(proc, root) == quota


def test_a_quota_on_a_parent_cgroup_counts(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    (tmp_path / "fs" / "user.slice" / "job").mkdir(parents=True)
    (tmp_path / "fs" / "user.slice" / "job" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "fs" / "user.slice" / "cpu.max").write_text("100000 100000\n")
    assert threads.cgroup_cpu_quota.__wrapped__(proc, tmp_path / "fs") == 1


def test_info_says_what_it_chose_and_why(automatic, monkeypatch):
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "3")
    assert "threads: the kernels use 3 ($FASTCONV_NUM_THREADS)" in fastconv.info.report()


def test_every_kernel_follows_the_thread_count(automatic):
    """The loops that name no thread count of their own (activations, losses, pooling) take fastconv's too."""
    import ctypes

    import numba
    import numpy as np

    large, small = np.ones((4, 64, 64, 8), np.float32), np.ones((2, 4, 4, 3), np.float32)
    openmp = ctypes.CDLL("libgomp.so.1")  # the runtime the compiled kernels loaded
    for count in (1, 2):
        fastconv.set_num_threads(count)
        fastconv.backends.load_backend("cython").relu_forward(large)
        assert openmp.omp_get_max_threads() == count
        fastconv.backends.load_backend("numba").relu_forward(large)
        assert numba.get_num_threads() == min(count, numba.config.NUMBA_NUM_THREADS)
        fastconv.backends.load_backend("cython").relu_forward(small)  # too little work to share
        assert openmp.omp_get_max_threads() == 1


def test_numba_runs_on_the_tbb_layer_where_its_wheel_is_installed():
    """'tbb' hands chunks out by work stealing, so a thread kept off its core does not hold every loop back. The
    wheel (a dependency on Linux x86-64) puts its library in <prefix>/lib, where the loader does not look: in a
    virtual environment Numba fell back to 'omp' before fastconv loaded it by path."""
    import os
    import platform
    import sys

    import numba
    import numpy as np

    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the tbb wheel is a dependency on Linux x86-64 only")
    if os.environ.get("NUMBA_THREADING_LAYER", "default") != "default":
        pytest.skip("NUMBA_THREADING_LAYER chooses the layer here")
    fastconv.backends.load_backend("numba").relu_forward(np.ones((4, 64, 64, 8), np.float32))  # starts the layer
    assert numba.threading_layer() == "tbb"
