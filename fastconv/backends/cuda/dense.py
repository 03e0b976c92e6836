"""Dense on the GPU: the shared GEMM, bias in its epilogue. x: (N, D_in); kernel: (D_in, D_out)."""

from fastconv.backends.cuda._common import column_sums
from fastconv.backends.cuda.gemm import gemm

def dense_forward(x, kernel, bias, out_y, threads):
    """out_y = x @ kernel + bias (bias in the GEMM's epilogue)."""
    gemm(x, kernel, out_y, bias=bias)


def dense_backward(grad_out, x, kernel, out_grad_x, out_grad_kernel, out_grad_bias, threads):
    gemm(grad_out, kernel, out_grad_x, transpose_b=True)
    gemm(x, grad_out, out_grad_kernel, transpose_a=True)
    if out_grad_bias.shape[0] > 0:
        column_sums(grad_out, out_grad_bias)
