"""How the Numba kernels share their blocks out between threads: on the Cython driver (src_ext/_driver.pxd), as the
Cython kernels do. A kernel's launcher (serial ``@njit``, nogil) writes its arrays' addresses and shapes and its plan
into a *job record* (int64, ``JOB_LEN``), then has ``run_numba_blocks`` (src_ext/numba_blocks.pyx) call the kernel's
block function, a ``@cfunc`` of ``BLOCK_SIGNATURE``, once per block on the calling thread and the driver's helpers;
each block rebuilds its arrays from the record (``carray``) and takes its scratch from the running thread's own
(``thread_scratch``, kept between calls).

Why not Numba's own threads: its 'tbb' layer's workers spin and yield between loops and got 0.17-0.23 of a core
beside a busy process, so that Numba's two threads trained no faster than its one; the driver's helpers, which sleep
between jobs and are kept off their caller's CPU, get ~0.45 as Cython's do. Helpers as Python threads were tried and
were slower quiet: each must take the GIL to start a job, ~40-70 us late (docs/performance.md, fifteenth session).

A block function cannot raise: where it cannot get scratch it sets ``job[FAILED]`` and returns; the launcher then
raises MemoryError.
"""

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastconv._ext import numba_blocks
from fastconv.backends.numba._common import SERIAL, add_up, column_sums
from fastconv.backends.plans import ConvPlan, PoolPlan

# The driver's two entry points; passed to the launchers as an argument, as are the block functions' addresses: Numba
# freezes a global into the compiled code, which it caches on disk, and the next process maps these elsewhere.
RUN_BLOCKS_ADDRESS, THREAD_SCRATCH_ADDRESS = numba_blocks.addresses()
DRIVER = np.array([RUN_BLOCKS_ADDRESS, THREAD_SCRATCH_ADDRESS], dtype=np.int64)

BLOCK_SIGNATURE = types.void(types.voidptr, types.intp)
BLOCK_OPTIONS = dict(cache=True, nopython=True)  # for @cfunc(BLOCK_SIGNATURE, **BLOCK_OPTIONS)
JOB_LEN = 64
FAILED = JOB_LEN - 1  # set by a block that got no scratch
_SCRATCH = JOB_LEN - 2  # the address of thread_scratch, for the blocks
BLOCKS = JOB_LEN - 3  # the call's block count, for the blocks


@intrinsic
def _pointer(typingctx, address):
    """The int64 ``address`` as a ``void*`` (for ``carray``)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@intrinsic
def _call_run_blocks(typingctx, run_blocks, block_fn, job, blocks, threads):
    """``run_numba_blocks(block_fn, job, blocks, threads)`` through its address ``run_blocks``."""
    signature = types.void(types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        pointer = cgutils.voidptr_t
        function_type = ir.FunctionType(ir.VoidType(), [pointer, pointer, ir.IntType(64), ir.IntType(32)])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        builder.call(function, [builder.inttoptr(args[1], pointer), builder.inttoptr(args[2], pointer), args[3],
                                builder.trunc(args[4], ir.IntType(32))])  # fmt: skip
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _call_thread_scratch(typingctx, thread_scratch, slot, nbytes):
    """``numba_thread_scratch(slot, nbytes)`` through its address, as an int64 (0: none)."""
    signature = types.int64(types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        function_type = ir.FunctionType(cgutils.voidptr_t, [ir.IntType(32), ir.IntType(64)])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        memory = builder.call(function, [builder.trunc(args[1], ir.IntType(32)), args[2]])
        return builder.ptrtoint(memory, ir.IntType(64))

    return signature, codegen


@njit(**SERIAL)
def new_job(driver):
    """A job record, zeroed, that gives its blocks the thread scratch's address."""
    job = np.zeros(JOB_LEN, dtype=np.int64)
    job[_SCRATCH] = driver[1]
    return job


@njit(**SERIAL)
def run(driver, block_fn, job, blocks, threads):
    """``block_fn(job, b)`` for every b in [0, blocks) on up to ``threads`` threads; MemoryError if a block got no
    scratch."""
    job[BLOCKS] = blocks
    _call_run_blocks(driver[0], block_fn, job.ctypes.data, blocks, threads)
    if job[FAILED]:
        raise MemoryError("fastconv (numba): no memory for a thread's scratch")


@njit(**SERIAL)
def blocks_for(items, threads):
    """How many blocks to cut ``items`` equal pieces of work into for ``threads`` threads: four per thread, so that a
    thread the OS keeps off its core holds back a quarter of its share at most, and never more blocks than items (as
    src_ext/_driver.pxd's)."""
    return max(1, min(items, 4 * threads))


@njit(**SERIAL)
def put(job, at, array):
    """Writes ``array``'s address and shape at ``job[at:at + 1 + ndim]``; returns the next free field. The blocks
    rebuild it as C-contiguous: a strided view is refused here (the backend's checks pass none)."""
    if not array.flags.c_contiguous:
        raise ValueError("fastconv (numba): a kernel's arrays must be C-contiguous")
    job[at] = array.ctypes.data
    for axis in range(array.ndim):
        job[at + 1 + axis] = array.shape[axis]
    return at + 1 + array.ndim


@njit(**SERIAL)
def float32_1d(job, at):
    return carray(_pointer(job[at]), (job[at + 1],), np.float32)


@njit(**SERIAL)
def float32_2d(job, at):
    return carray(_pointer(job[at]), (job[at + 1], job[at + 2]), np.float32)


@njit(**SERIAL)
def float32_3d(job, at):
    return carray(_pointer(job[at]), (job[at + 1], job[at + 2], job[at + 3]), np.float32)


@njit(**SERIAL)
def float32_4d(job, at):
    return carray(_pointer(job[at]), (job[at + 1], job[at + 2], job[at + 3], job[at + 4]), np.float32)


@njit(**SERIAL)
def int32_4d(job, at):
    return carray(_pointer(job[at]), (job[at + 1], job[at + 2], job[at + 3], job[at + 4]), np.int32)


@njit(**SERIAL)
def int64_1d(job, at):
    return carray(_pointer(job[at]), (job[at + 1],), np.int64)


@njit(**SERIAL)
def scratch(job, slot, length):
    """``length`` float32 of the running thread's scratch slot ``slot`` (0-3), as a flat array; an empty one, and
    job[FAILED] set, if there is no memory for it."""
    address = _call_thread_scratch(job[_SCRATCH], slot, 4 * max(length, 1))
    if address == 0:
        job[FAILED] = 1
        return carray(_pointer(job[_SCRATCH]), (0,), np.float32)
    return carray(_pointer(address), (length,), np.float32)


@njit(**SERIAL)
def job_of(job_address):
    """The job record at ``job_address`` (a block function's first argument)."""
    return carray(job_address, (JOB_LEN,), np.int64)


@njit(**SERIAL)
def put_conv_plan(job, at, plan):
    """Writes a ConvPlan's 11 fields at ``job[at:at + 11]``; returns the next free field."""
    fields = (plan.stride_h, plan.stride_w, plan.pad_top, plan.pad_left, plan.kernel_h, plan.kernel_w, plan.threads,
              plan.block_pixels, plan.block_samples, plan.block_tiles, np.int64(plan.relu))
    for index in range(11):
        job[at + index] = fields[index]
    return at + 11


@njit(**SERIAL)
def conv_plan_at(job, at):
    """The ConvPlan that ``put_conv_plan`` wrote at ``job[at]``."""
    return ConvPlan(job[at], job[at + 1], job[at + 2], job[at + 3], job[at + 4], job[at + 5], job[at + 6], job[at + 7],
                    job[at + 8], job[at + 9], job[at + 10] != 0)


@njit(**SERIAL)
def put_pool_plan(job, at, plan):
    """Writes a PoolPlan's 6 fields at ``job[at:at + 6]``; returns the next free field."""
    fields = (plan.pool_h, plan.pool_w, plan.stride_h, plan.stride_w, plan.pad_top, plan.pad_left)
    for index in range(6):
        job[at + index] = fields[index]
    return at + 6


@njit(**SERIAL)
def pool_plan_at(job, at):
    """The PoolPlan that ``put_pool_plan`` wrote at ``job[at]``."""
    return PoolPlan(job[at], job[at + 1], job[at + 2], job[at + 3], job[at + 4], job[at + 5])


# A kernel gradient's record (the GEMM's and Winograd's): x (4-D), grad_out (4-D), the groups' partials (3-D or 4-D),
# ConvPlan; each block is one group, summed into its own partial.
GRADIENT_X, GRADIENT_Y, GRADIENT_PARTIALS, GRADIENT_PLAN = 0, 5, 10, 15


@njit(**SERIAL)
def run_kernel_gradient(x, grad_out, partials, out_grad, out_grad_bias, plan, driver, block_fn):
    """Runs ``block_fn`` over the groups of a kernel gradient's record, then out_grad = the partials added in group
    order and out_grad_bias (F,) = grad_out summed over N, OH, OW ((0,) to skip)."""
    job = new_job(driver)
    put(job, GRADIENT_X, x)
    put(job, GRADIENT_Y, grad_out)
    put(job, GRADIENT_PARTIALS, partials)
    put_conv_plan(job, GRADIENT_PLAN, plan)
    run(driver, block_fn, job, partials.shape[0], plan.threads)
    add_up(partials, out_grad)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out.reshape(-1, grad_out.shape[3]), out_grad_bias)
