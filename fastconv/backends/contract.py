"""The low-level kernel contract: the kernels every compiled backend provides, as one typed table.

A compiled backend (``fastconv.backends.compiled.CompiledBackend``) validates and allocates in Python, then calls
these kernels with raw float32 buffers (argmax int32), every output preallocated. Each backend's folder provides
them from modules of the same op families — ``conv``, ``pool``, ``dense``, ``activations``, ``losses``, ``updates`` (the optimizers' steps) — and
:func:`op_family_kernels` names each one where it comes from (``conv.conv2d_forward``), so that grep and an
editor's "go to definition" reach the code a :class:`Kernels` field runs.

The Winograd kernels (from a ``winograd`` module) are a second convolution algorithm: a backend that has them may
run 3x3 stride-1 convolutions by them (``fastconv.backends.algorithms``); one that lacks them (cuda, today) leaves
those fields None and runs every convolution by im2col + GEMM.
"""

import dataclasses
from typing import Callable, Optional


@dataclasses.dataclass
class Kernels:
    """A backend's low-level kernels by name (signatures: ``tests/test_package.py`` checks them alike everywhere)."""

    conv2d_forward: Callable
    conv2d_backward_input: Callable
    conv2d_backward_kernel: Callable
    max_pool2d_forward: Callable
    max_pool2d_backward: Callable
    avg_pool2d_forward: Callable
    avg_pool2d_backward: Callable
    dense_forward: Callable
    dense_backward: Callable
    relu_forward: Callable
    relu_backward: Callable
    sigmoid_forward: Callable
    sigmoid_backward: Callable
    softmax_forward: Callable
    softmax_backward: Callable
    softmax_cross_entropy: Callable
    sigmoid_binary_cross_entropy: Callable
    sgd_update: Callable
    rmsprop_update: Callable
    adam_update: Callable
    winograd_kernel_transform: Optional[Callable] = None
    winograd_conv2d_forward: Optional[Callable] = None
    winograd_conv2d_backward_kernel: Optional[Callable] = None
    winograd_kernel_transform_backward: Optional[Callable] = None

    @property
    def has_winograd(self):
        """Whether the Winograd kernels are here (all four, or none)."""
        return self.winograd_conv2d_forward is not None


KERNEL_NAMES = tuple(field.name for field in dataclasses.fields(Kernels) if field.default is dataclasses.MISSING)
OPTIONAL_KERNEL_NAMES = tuple(field.name for field in dataclasses.fields(Kernels) if field.default is None)


def op_family_kernels(backend_name, conv, pool, dense, activations, losses, updates, winograd=None):
    """The :class:`Kernels` of a backend folder with one module per op family (``winograd`` None where it has no
    Winograd kernels); ImportError naming the kernel a module lacks."""
    try:
        winograd_kernels = {}
        if winograd is not None:
            winograd_kernels = dict(
                winograd_kernel_transform=winograd.winograd_kernel_transform,
                winograd_conv2d_forward=winograd.winograd_conv2d_forward,
                winograd_conv2d_backward_kernel=winograd.winograd_conv2d_backward_kernel,
                winograd_kernel_transform_backward=winograd.winograd_kernel_transform_backward,
            )
        return Kernels(
            conv2d_forward=conv.conv2d_forward,
            conv2d_backward_input=conv.conv2d_backward_input,
            conv2d_backward_kernel=conv.conv2d_backward_kernel,
            max_pool2d_forward=pool.max_pool2d_forward,
            max_pool2d_backward=pool.max_pool2d_backward,
            avg_pool2d_forward=pool.avg_pool2d_forward,
            avg_pool2d_backward=pool.avg_pool2d_backward,
            dense_forward=dense.dense_forward,
            dense_backward=dense.dense_backward,
            relu_forward=activations.relu_forward,
            relu_backward=activations.relu_backward,
            sigmoid_forward=activations.sigmoid_forward,
            sigmoid_backward=activations.sigmoid_backward,
            softmax_forward=activations.softmax_forward,
            softmax_backward=activations.softmax_backward,
            softmax_cross_entropy=losses.softmax_cross_entropy,
            sigmoid_binary_cross_entropy=losses.sigmoid_binary_cross_entropy,
            sgd_update=updates.sgd_update,
            rmsprop_update=updates.rmsprop_update,
            adam_update=updates.adam_update,
            **winograd_kernels,
        )
    except AttributeError as error:
        raise ImportError(f"fastconv backend {backend_name!r} lacks a kernel: {error}") from error
