"""What the Numba kernels share: their compile options, the bias and ReLU epilogues and the reductions (how their
threads share out blocks: ``_driver``)."""

import numpy as np
from numba import njit, prange

try:  # Numba's compiler internals, documented for custom pipelines but not a stable API
    from numba.core.compiler import Compiler, DefaultPassBuilder
    from numba.core.compiler_machinery import FunctionPass, register_pass
    from numba.core.typed_passes import NopythonTypeInference
except ImportError:  # pragma: no cover - a Numba that moved them: the lines compile as SERIAL (correct, slower)
    Compiler = None

# Compiled on first use and cached on disk; nogil so that Python threads may call them at once. Numba's cache
# checks only the file of the function it caches: after an edit here, clear this folder's __pycache__, or the
# kernels of conv.py, dense.py and winograd.py keep the old helpers compiled in.
SERIAL = dict(cache=True, nogil=True)
PARALLEL = dict(cache=True, nogil=True, parallel=True)


if Compiler is not None:
    @register_pass(mutates_CFG=False, analysis_only=False)
    class _ArgumentsDoNotAlias(FunctionPass):
        """Marks every pointer among the function's arguments (an array's data among them) ``noalias``, as C's
        ``__restrict__``: LLVM may then assume that what the function writes through one argument it never reads or
        writes through another, and vectorise its loops without checking their ranges at run time."""

        _name = "fastconv_arguments_do_not_alias"

        def __init__(self):
            FunctionPass.__init__(self)

        def run_pass(self, state):
            state.flags.noalias = True
            return False  # the IR is unchanged

    class _NoAliasCompiler(Compiler):
        """Numba's nopython pipeline with _ArgumentsDoNotAlias after type inference (Numba's documented way to change
        how one function compiles: a ``pipeline_class``; Numba's own ``noalias`` flag has no jit option)."""

        def define_pipelines(self):
            pipeline = DefaultPassBuilder.define_nopython_pipeline(self.state)
            pipeline.add_pass_after(_ArgumentsDoNotAlias, NopythonTypeInference)
            pipeline.finalize()
            return [pipeline]


# For small loops whose array arguments never overlap where they are read and written (Winograd's transform lines):
# a caller that passes one array twice must read and write disjoint parts of it. Without the mark, each of a
# line's loops checked its output's range against its six inputs' at run time, and a loop that read six lines and
# wrote six was not vectorised at all; with it, F(4x4)'s B^T on 32 values takes 20 ns instead of 72.
NO_ALIAS = dict(SERIAL, pipeline_class=_NoAliasCompiler) if Compiler is not None else SERIAL

# Groups of blocks per thread in a kernel gradient (as src_ext/conv.pyx): each group is summed into its own partial
# by whichever thread takes it, and the partials are added in group order, so results are repeatable however the
# groups were shared out; enough groups that a thread kept off its core holds back little, few enough that the
# partials (one kernel-sized matrix each) stay small.
GROUPS_PER_THREAD = 4


@njit(**SERIAL)
def group_count(blocks, threads):
    """How many groups a kernel gradient of ``blocks`` blocks on ``threads`` threads sums into: 1 on one thread, and
    1 with no blocks at all (an empty batch: that group's partial, all zeros, is the gradient)."""
    return max(1, min(blocks, GROUPS_PER_THREAD * threads)) if threads > 1 else 1


# Below this many partial elements in all, add_up runs on the calling thread (a parallel loop's start costs more).
_PARALLEL_ADD_ELEMENTS = 1 << 20


@njit(**SERIAL)
def add_up(partials, out):
    """out = partials[0] + partials[1] + ..., in that order (float32, as the kernels accumulate); partials: (G, *out.shape).
    Large sums (cats vs dogs' conv4 in Winograd: 8 partials of 590k) run in slices in parallel, each slice in group order."""
    flat_out, flat_partials = out.reshape(-1), partials.reshape(partials.shape[0], -1)
    if flat_partials.size >= _PARALLEL_ADD_ELEMENTS:
        _add_up_parallel(flat_partials, flat_out)
    else:
        _add_up_slice(flat_partials, flat_out, 0, flat_out.shape[0])


@njit(**SERIAL)
def _add_up_slice(flat_partials, flat_out, first, last):
    target = flat_out[first:last]
    target[:] = flat_partials[0, first:last]
    for group in range(1, flat_partials.shape[0]):
        target += flat_partials[group, first:last]


@njit(**PARALLEL)
def _add_up_parallel(flat_partials, flat_out):
    length, slices = flat_out.shape[0], 16
    for part in prange(slices):
        _add_up_slice(flat_partials, flat_out, part * length // slices, (part + 1) * length // slices)


@njit(**SERIAL)
def relu_in_place(values):
    """values = max(values, 0), NaN kept (as relu_forward), any shape: the forward convolution's epilogue."""
    flat = values.reshape(-1)
    for i in range(np.uint64(flat.shape[0])):  # a select, not a branch, and an unsigned index: both vectorise
        value = flat[i]
        flat[i] = 0.0 if value <= 0 else value


@njit(**SERIAL)
def add_bias_relu(block, bias, relu):
    """block (rows, F) += bias (F,), then max(., 0), NaN kept, if ``relu``: the GEMM forward's epilogue, one pass.

    As one loop with selects over unsigned offsets it vectorises; ``block += bias`` and a branch per element took
    5x as long on a (2048, 32) block.
    """
    rows, filters = block.shape
    flat, unsigned_filters = block.reshape(-1), np.uint64(filters)
    for i in range(np.uint64(rows)):
        start = i * unsigned_filters
        for f in range(unsigned_filters):
            value = flat[start + f] + bias[f]
            if relu:
                value = 0.0 if value <= 0 else value
            flat[start + f] = value


# Below this many elements column sums run on the calling thread: starting a parallel region cost ~0.3 ms, where
# summing a (7744, 64) gradient (MNIST's conv2) takes 0.06 ms on one thread.
_PARALLEL_SUM_ELEMENTS = 1 << 22


@njit(**SERIAL)
def column_sums(matrix, sums):
    """sums[j] = sum_i matrix[i, j], in float64: row blocks in parallel for a large matrix, else on this thread."""
    if matrix.size >= _PARALLEL_SUM_ELEMENTS:
        _column_sums_parallel(matrix, sums)
        return
    acc = np.zeros(matrix.shape[1])
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            acc[j] += matrix[i, j]
    for j in range(matrix.shape[1]):
        sums[j] = acc[j]


@njit(**PARALLEL)
def _column_sums_parallel(matrix, sums):
    rows, cols = matrix.shape
    blocks = 16
    partial = np.zeros((blocks, cols))
    for block in prange(blocks):
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            for j in range(cols):
                partial[block, j] += matrix[i, j]
    for j in range(cols):
        sums[j] = partial[:, j].sum()
