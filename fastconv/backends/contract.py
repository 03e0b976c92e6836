"""The low-level kernel contract: the kernels every compiled backend provides, named once.

A compiled backend (``fastconv.backends.compiled.CompiledBackend``) validates and allocates in Python,
then calls these kernels with raw float32 buffers (argmax int32), every output preallocated. Each
backend's folder provides them from modules of the same op families: ``conv``, ``pool``, ``dense``,
``activations``, ``losses``. :func:`collect_kernels` gathers them and names any that is missing.

The Winograd kernels (``OPTIONAL_KERNEL_NAMES``, from a ``winograd`` module) are a second convolution algorithm:
a backend that has them may run 3x3 stride-1 convolutions by them (``fastconv.backends.algorithms``), one that
lacks them (cuda, today) runs every convolution by im2col + GEMM.
"""

from types import SimpleNamespace

KERNEL_NAMES = (
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "dense_forward", "dense_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "softmax_forward", "softmax_backward",
    "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
)  # fmt: skip


OPTIONAL_KERNEL_NAMES = (
    "winograd_kernel_transform", "winograd_conv2d_forward",
    "winograd_conv2d_backward_kernel", "winograd_kernel_transform_backward",
)  # fmt: skip


def collect_kernels(backend_name, modules, names=KERNEL_NAMES, optional=OPTIONAL_KERNEL_NAMES):
    """A namespace of the kernels ``names`` (and of those ``optional`` present) found in ``modules``; ImportError
    naming every one of ``names`` that is missing."""
    found = {}
    for module in modules:
        for name in names + optional:
            if hasattr(module, name):
                found[name] = getattr(module, name)
    missing = [name for name in names if name not in found]
    if missing:
        raise ImportError(f"fastconv backend {backend_name!r} lacks the kernels {missing}")
    return SimpleNamespace(**found)
