"""One BLAS product for the Numba kernels that accumulate: ``gemm``, row-major, with named transpose flags and a
``beta``, as Cython's ``gemm`` (src_ext/_linalg.pxd), on the same SciPy BLAS.

``np.dot(a, b, out)`` always overwrites ``out`` (BLAS's beta = 0), so a kernel gradient that sums products block by
block wrote each product to scratch and then added it in a pass of its own: in MNIST's conv2 kernel gradient
(Winograd, one thread) that pass took 0.16 of the kernel's 3.0 ms, the BLAS products 1.9-2.1. With beta = 1, BLAS
adds the product while it writes the result, as Cython's kernels do.

The call goes to SciPy's ``scipy.linalg.cython_blas.sgemm`` (the function Numba's ``np.dot`` and the Cython kernels
reach) through a symbol registered with LLVM at import, not through ctypes: code that calls a ctypes pointer holds
its address and cannot be cached on disk, while a named symbol is looked up again when the cached code is loaded.
As with ``_common.py``, Numba's cache checks only the file of the function it caches: after an edit here, clear
this folder's ``__pycache__``.
"""

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from fastconv.backends.numba._common import SERIAL

_SGEMM_SYMBOL = "fastconv_numba_sgemm"
llvmlite.binding.add_symbol(_SGEMM_SYMBOL, get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))

NO_TRANSPOSE, TRANSPOSE = 0, 1


@intrinsic
def _fortran_sgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """The Fortran BLAS sgemm (column-major): c = alpha op(a) op(b) + beta c; transa/transb are the flag characters
    (ord('N') or ord('T')), a, b, c float32 arrays whose data the call reads (and writes, c); every argument is
    passed by address, from the stack."""
    integers = (transa, transb, m, n, k, lda, ldb, ldc)
    if not all(isinstance(value, types.Integer) for value in integers):
        return None
    if not all(isinstance(value, (types.Float, types.Integer)) for value in (alpha, beta)):
        return None
    if not all(isinstance(value, types.Array) and value.dtype == types.float32 for value in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        char, int32, float32 = ir.IntType(8), ir.IntType(32), ir.FloatType()
        argument_types = signature.args

        def on_stack(index, llvm_type, numba_type):
            slot = cgutils.alloca_once(builder, llvm_type)  # in the entry block: one slot however often it is called
            builder.store(context.cast(builder, args[index], argument_types[index], numba_type), slot)
            return slot

        def data(index):
            array = context.make_array(argument_types[index])(context, builder, args[index])
            return builder.bitcast(array.data, float32.as_pointer())

        pointers = [
            on_stack(0, char, types.uint8), on_stack(1, char, types.uint8),
            on_stack(2, int32, types.int32), on_stack(3, int32, types.int32), on_stack(4, int32, types.int32),
            on_stack(5, float32, types.float32), data(6), on_stack(7, int32, types.int32),
            data(8), on_stack(9, int32, types.int32), on_stack(10, float32, types.float32),
            data(11), on_stack(12, int32, types.int32),
        ]
        function_type = ir.FunctionType(ir.VoidType(), [pointer.type for pointer in pointers])
        function = cgutils.get_or_insert_function(builder.module, function_type, _SGEMM_SYMBOL)
        builder.call(function, pointers)
        return context.get_dummy_value()

    return types.void(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), codegen


@njit(**SERIAL)
def gemm(alpha, a, a_transposed, b, b_transposed, beta, out_c):
    """out_c = alpha * op(a) @ op(b) + beta * out_c; op(m) = m.T where the flag is TRANSPOSE.

    a, b, out_c: 2-D float32 arrays whose rows are contiguous (any row stride, as a block of a larger array);
    out_c (M, N), op(a) (M, K), op(b) (K, N). A row-major matrix is the column-major matrix of its transpose, so BLAS
    computes out_c^T = op(b)^T op(a)^T: b goes first. ValueError where the shapes disagree, a row is strided, or
    rows overlap or run backwards (``_lead``).
    """
    rows, cols = out_c.shape
    inner = a.shape[0] if a_transposed else a.shape[1]
    a_rows = a.shape[1] if a_transposed else a.shape[0]
    b_inner, b_cols = (b.shape[1], b.shape[0]) if b_transposed else (b.shape[0], b.shape[1])
    if a_rows != rows or b_inner != inner or b_cols != cols:
        raise ValueError("gemm: op(a), op(b) and out_c do not agree in shape")
    if rows == 0 or cols == 0:
        return
    if inner == 0:  # no product: BLAS would only scale out_c (an empty matrix's strides may be anything)
        if beta == 0:
            out_c[:] = 0.0
        else:
            out_c[:] *= np.float32(beta)
        return
    _fortran_sgemm(84 if b_transposed else 78, 84 if a_transposed else 78, cols, rows, inner, alpha, b, _lead(b), a, _lead(a), beta, out_c, _lead(out_c))


@njit(**SERIAL)
def _lead(matrix):
    """BLAS's leading dimension of a row-major matrix (its row stride in floats). ValueError unless its rows are
    contiguous and follow one another without overlapping: BLAS would read (or write) past them otherwise (a
    reversed or broadcast matrix). A single row may have any stride: BLAS reads one of at least its length."""
    rows, cols = matrix.shape
    if matrix.strides[1] != 4 and cols > 1:
        raise ValueError("gemm: every matrix needs contiguous rows")
    if rows == 1:
        return max(cols, 1)
    if matrix.strides[0] % 4 != 0 or matrix.strides[0] < 4 * cols:
        raise ValueError("gemm: every matrix needs rows that follow one another without overlapping")
    return matrix.strides[0] // 4
