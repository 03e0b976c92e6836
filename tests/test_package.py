"""The installed package: compiled modules load, backends are chosen as documented."""

import importlib.machinery
import os
import subprocess
import sys

import numpy as np

import fastconv
from fastconv.backends import load_backend


def test_cython_kernels_are_compiled_extensions():
    from fastconv._ext import activations, conv, dense, pool

    for module in (conv, pool, dense, activations):
        assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__


def test_default_backend_is_cython_and_set_backend_switches():
    previous = fastconv.get_backend()
    try:
        assert fastconv.set_backend("numba").name == "numba"
        assert fastconv.get_backend().name == "numba"
        with fastconv.use_backend("reference") as inner:
            assert inner.name == "reference" and fastconv.get_backend() is inner
        assert fastconv.get_backend().name == "numba"
    finally:
        fastconv.set_backend(previous.name)


def test_environment_variable_chooses_the_backend():
    code = "import fastconv; print(fastconv.get_backend().name)"
    for name, expected in (("numba", "numba"), ("", "cython")):
        env = dict(os.environ, FASTCONV_BACKEND=name) if name else {k: v for k, v in os.environ.items() if k != "FASTCONV_BACKEND"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_cpu_backends_are_host_resident():
    x = np.ones((2, 2), np.float32)
    for name in ("cython", "numba", "reference"):
        backend = load_backend(name)
        assert backend.to_host(backend.to_device(x)) is x


# --- the import graph: floors, no cycle -------------------------------------------------------

# A module may import its own floor and the floors below it, never above (a function-level import counts too).
FLOORS = [
    ("fastconv._version", "fastconv.shapes", "fastconv.install_check", "fastconv.simd_levels", "fastconv.backends", "fastconv._ext"),
    ("fastconv.utils", "fastconv.interrupts", "fastconv.regularizers", "fastconv.activations", "fastconv.initializers", "fastconv.losses", "fastconv.metrics",
     "fastconv.optimizers", "fastconv.callbacks"),
    ("fastconv.layers",),
    ("fastconv.models",),
    ("fastconv.applications", "fastconv.datasets", "fastconv.distribute", "fastconv.preprocessing", "fastconv.examples", "fastconv.demo",
     "fastconv.plot", "fastconv.visualize", "fastconv.info", "fastconv.__main__"),
]  # fmt: skip


def _floor(module):
    for level, prefixes in enumerate(FLOORS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def _import_graph():
    """{module: {fastconv modules it imports anywhere in its text}} for every module of the package."""
    import ast
    from pathlib import Path

    root = Path(fastconv.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.startswith("fastconv.")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("fastconv"):
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    targets.add(name if name in modules else node.module)
        graph[module] = {target for target in targets if target not in ("fastconv", module)}
    return graph


def test_no_module_imports_a_floor_above_its_own():
    upward = [
        f"{module} -> {target}"
        for module, targets in _import_graph().items() if module != "fastconv"
        for target in targets if _floor(target) > _floor(module)
    ]  # fmt: skip
    assert not upward, upward


def test_the_import_graph_has_no_cycle():
    graph, state, cycles = _import_graph(), {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


# The optimizers' settings, after the arrays an update changes in place (its outputs).
UPDATE_SETTINGS = {
    "sgd_update": ["learning_rate", "momentum", "nesterov"],
    "rmsprop_update": ["learning_rate", "rho", "epsilon"],
    "adam_update": ["step_size", "beta_1", "beta_2", "epsilon"],
}


def test_the_compiled_backends_low_level_kernels_take_the_same_parameters():
    """Every kernel of the contract, by the same parameter names in the Cython, Numba and CUDA sources (the CUDA
    folder is read as text, so this runs without a GPU): the inputs, then the outputs marked ``out_`` (an update's
    weight and state, changed in place, are its outputs), then a plan (``ConvPlan``/``PoolPlan``) for convolution and
    pooling instead of a row of integers, the settings of an optimizer update."""
    import ast
    import inspect
    from pathlib import Path

    from fastconv.backends.contract import KERNEL_NAMES, OPTIONAL_KERNEL_NAMES

    def parameters_in(folder):
        found = {}
        for path in sorted(folder.glob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef) and node.name in KERNEL_NAMES + OPTIONAL_KERNEL_NAMES:
                    found[node.name] = [argument.arg for argument in node.args.args]
        return found

    backends = Path(fastconv.__file__).parent / "backends"
    numba_kernels, cuda_kernels = parameters_in(backends / "numba"), parameters_in(backends / "cuda")
    cython = load_backend("cython").low_level
    for name in KERNEL_NAMES:
        parameters = list(inspect.signature(getattr(cython, name)).parameters)
        assert numba_kernels.get(name) == parameters == cuda_kernels.get(name), name
        outputs = [i for i, parameter in enumerate(parameters) if parameter.startswith("out_")]
        assert outputs, f"{name} marks no output"
        settings = parameters[outputs[-1] + 1 :]
        assert outputs == list(range(outputs[0], outputs[-1] + 1)), f"{name}: outputs {parameters} not together"
        assert settings == (["plan"] if name.startswith(("conv2d", "avg_pool2d", "max_pool2d")) else
                            ["threads"] if name.startswith("dense") else
                            UPDATE_SETTINGS.get(name, [])), f"{name}: {parameters}"
    for name in OPTIONAL_KERNEL_NAMES:  # the Winograd kernels: Cython and Numba have them, CUDA not yet
        parameters = list(inspect.signature(getattr(cython, name)).parameters)
        assert numba_kernels.get(name) == parameters and cuda_kernels.get(name, parameters) == parameters, name
        assert parameters[-1] == "plan" or parameters[-1].startswith("out_"), f"{name}: {parameters}"


def test_the_path_from_a_layer_to_its_kernel_is_plain_imports_and_calls():
    """The dispatch modules name what they call: no importlib, no getattr by a computed name, no f-string kernel
    names, so grep and an editor's "go to definition" follow a Conv2D to its kernel (docs/architecture.md, "The path
    of a batch")."""
    import re
    from pathlib import Path

    from fastconv.backends.contract import KERNEL_NAMES, Kernels

    package = Path(fastconv.__file__).parent
    dispatch = ["backends/__init__.py", "backends/compiled.py", "backends/contract.py", "_ext/__init__.py", "activations.py",
                "backends/cython/__init__.py", "backends/numba/__init__.py", "backends/cuda/__init__.py",
                "layers/convolutional.py", "layers/pooling.py", "layers/core.py"]  # fmt: skip
    for name in dispatch:
        source = (package / name).read_text()
        # an attribute looked up by a computed name; a literal one (getattr(array, "size", 0)) is plain duck typing
        found = re.findall(r"\bimport_module\b|\b(?:get|has)attr\([^,]+,\s*[^\"'\s]|f\"\{[^}]*\}_(?:forward|backward)", source)
        assert not found, f"{name}: {found}"
    cython = load_backend("cython").low_level
    assert isinstance(cython, Kernels) and cython.has_winograd
    contract = (package / "backends/contract.py").read_text()
    for kernel in KERNEL_NAMES:  # each filled from its module by name
        assert re.search(rf"\b{kernel}=\w+\.{kernel}\b", contract), kernel
