"""How many threads the compiled kernels use, and why.

In order, the first that is set decides: :func:`set_num_threads` (``fastconv.set_num_threads(n)``),
``$FASTCONV_NUM_THREADS``, ``$OMP_NUM_THREADS``; otherwise what the machine gives this process: the physical
cores among the CPUs it may run on (its affinity mask; two hyperthreads of one core count once, since a second
thread on a core only waits for the first's floating-point units), and no more than its cgroup's CPU quota
(``cpu.max``, or ``cpu.cfs_quota_us`` under cgroup v1) allows. :func:`choice` says which rule decided.
"""

import functools
import math
import os
import time
from pathlib import Path

# A thread of an OpenMP team (Numba's 'omp' threading layer) that waits for work spins this many times before it
# sleeps. libgomp's own default (300,000, about a millisecond) keeps a waiting thread on its core: on a machine where
# another process needs that core (a busy core), the spinning steals its time and the next parallel region waits
# for the preempted thread; 10,000 (microseconds) trained MNIST ~1.3x faster there and as fast on a quiet machine
# (docs/performance.md). Set before libgomp starts, unless the user set a policy of their own. (The Cython kernels
# run on fastconv's own driver, src_ext/_driver.pxd, which spins about as long.)
OPENMP_SPIN_COUNT = "10000"
_CPU_TOPOLOGY = Path("/sys/devices/system/cpu")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_VARIABLES = ("FASTCONV_NUM_THREADS", "OMP_NUM_THREADS")
# thread_count() runs before every kernel call (~40 per MNIST training step): os.environ.get encodes its key and
# decodes the value, and the affinity mask is a system call, 4.5 us in all, 0.3 ms of a 10.5 ms step. So the
# variables are read from CPython's own bytes-keyed dict behind os.environ (which os.environ's setters and
# deleters update, as pytest's monkeypatch does), and the machine's share is asked again after
# _MACHINE_SECONDS: an affinity mask or cgroup quota changed while the process runs counts from then on.
_ENVIRON_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None
_VARIABLE_KEYS = tuple(os.fsencode(variable) for variable in _VARIABLES)
_MACHINE_SECONDS = 1.0
_chosen = None  # set by set_num_threads
_machine_cache = [None, -math.inf]  # [(count, cpus, cores, quota), when]


def set_openmp_waiting():
    """Let waiting OpenMP threads sleep soon (``GOMP_SPINCOUNT``) unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is
    set; called before the Cython kernels (``fastconv._ext``, linked to libgomp) or Numba's 'omp' threading layer
    load libgomp, which reads its settings once."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def set_num_threads(count):
    """Use ``count`` threads in the compiled kernels from now on (None: back to the environment and the machine,
    asked afresh)."""
    global _chosen
    _chosen = None if count is None else _positive(count, "set_num_threads")
    _machine_cache[1] = -math.inf


def thread_count():
    """The threads the compiled kernels use now (asked before every kernel call: no text is made here)."""
    if _chosen is not None:
        return _chosen
    if isinstance(_ENVIRON_BYTES, dict):
        for variable, key in zip(_VARIABLES, _VARIABLE_KEYS):
            value = _ENVIRON_BYTES.get(key)
            text = _first_count(os.fsdecode(value) if value is not None else "")
            if text:
                return _positive(text, f"${variable}")
        when = time.monotonic()
        if when - _machine_cache[1] > _MACHINE_SECONDS:
            _machine_cache[:] = [_machine_share(), when]
        return _machine_cache[0][0]
    return _decide(explain=False)[0]


def choice():
    """``(threads, why)``: the thread count and the rule that chose it, in words."""
    return _decide(explain=True)


def _decide(explain):
    if _chosen is not None:
        return _chosen, "fastconv.set_num_threads"
    for variable in _VARIABLES:
        text = _first_count(os.environ.get(variable, ""))
        if text:
            return _positive(text, f"${variable}"), f"${variable}"
    count, cpus, cores, quota = _machine_share()
    if not explain:
        return count, None
    why = f"{cores} physical core{'s' * (cores != 1)} among the {len(cpus)} CPUs this process may use"
    why += f", a cgroup quota of {quota} CPU{'s' * (quota != 1)}" if quota is not None else ", no cgroup CPU quota"
    return count, why


def _first_count(value):
    """The first entry of a thread-count variable (OpenMP allows a list per nesting level), stripped."""
    return value.split(",")[0].strip()


def _machine_share():
    """(threads, the CPUs this process may use, their physical cores, the cgroup's CPU quota or None)."""
    cpus = _allowed_cpus()
    cores = physical_cores(cpus)
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota if quota is not None else cores)), cpus, cores, quota


def _positive(value, what):
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: the number of threads must be a positive integer, got {value!r}") from None
    if count < 1 or count != float(value):
        raise ValueError(f"{what}: the number of threads must be a positive integer, got {value!r}")
    return count


def _allowed_cpus():
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return frozenset(range(os.cpu_count() or 1))


@functools.lru_cache(maxsize=16)
def physical_cores(cpus, topology=_CPU_TOPOLOGY):
    """How many physical cores the logical CPUs ``cpus`` (a frozenset) belong to, from sysfs' topology (as many as
    ``cpus`` where it cannot be read)."""
    cores = set()
    for cpu in cpus:
        try:
            folder = topology / f"cpu{cpu}" / "topology"
            cores.add(((folder / "physical_package_id").read_text().strip(), (folder / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


@functools.lru_cache(maxsize=1)
def cgroup_cpu_quota(proc_cgroup=Path("/proc/self/cgroup"), root=_CGROUP_ROOT):
    """The CPUs this process's cgroup (or one above it) may use at once, rounded up; None when unlimited or unknown."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one tree, cpu.max = "<quota> <period>" or "max <period>"
            quotas += [_v2_quota(folder / "cpu.max") for folder in _folders_up(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's tree
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += [_v1_quota(folder) for folder in _folders_up(mount, path)]
                    break
    quotas = [quota for quota in quotas if quota is not None]
    return min(quotas) if quotas else None


def _folders_up(mount, path):
    """``mount/path`` and each folder above it up to ``mount``."""
    folder = mount / path.strip("/")
    folders = [folder]
    while folder != mount and mount in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def _v2_quota(cpu_max):
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))


def _v1_quota(folder):
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else max(1, math.ceil(quota / period))
