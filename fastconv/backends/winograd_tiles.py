"""The transforms of Winograd's minimal filtering F(m x m, 3 x 3) for m = 2 and 4, shared by the backends that run it.

A tile of m x m output pixels is computed from the a x a input patch d under it (a = m + 2) as

    Y = A^T [(G g G^T) * (B^T d B)] A

with the a x a, a x 3 and m x a matrices below, Toom-Cook's for the interpolation points 0, +-1 and infinity
(Lavin & Gray 2016) and, for m = 4, 1/2 and -2. Those two points instead of Lavin's +-2 hold F(4x4)'s float32
error 2.5x lower (measured on random 128-channel tiles, max error over max output: 3.1e-6 against 7.8e-6;
tests/test_kernels.py holds every convolution to 1e-5). The element-wise product has a^2 terms per tile and
channel pair against the direct method's 9 m^2: 2.25x fewer multiplications for F(2x2), 4x for F(4x4).

Position k = a * i + j of a transformed tile is row i, column j. The backends read these float64 matrices once (the
Cython module copies them into C arrays at import, Numba compiles them in as constants); nothing here runs per call.
"""

import numpy as np

TILE_SIDES = (2, 4)

_B_T = {
    2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    4: [
        [1, -3 / 2, -2, 3 / 2, 1, 0], [0, -1, 1 / 2, 5 / 2, 1, 0], [0, 1, -5 / 2, 1 / 2, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 1 / 2, -1, -1 / 2, 1, 0], [0, 1, -3 / 2, -2, 3 / 2, 1],
    ],
}  # fmt: skip
_G = {
    2: [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    4: [
        [1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, -1 / 3],
        [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0, 0, 1],
    ],
}  # fmt: skip
_A_T = {
    2: [[1, 1, 1, 0], [0, 1, -1, -1]],
    4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 1 / 2, -2, 0], [0, 1, 1, 1 / 4, 4, 0], [0, 1, -1, 1 / 8, -8, 1]],
}


def input_matrix(tile_side):
    """B^T, (a, a) float64, for output tiles of ``tile_side`` (2 or 4)."""
    return np.array(_B_T[_checked(tile_side)], dtype=np.float64)


def kernel_matrix(tile_side):
    """G, (a, 3) float64."""
    return np.array(_G[_checked(tile_side)], dtype=np.float64)


def output_matrix(tile_side):
    """A^T, (m, a) float64."""
    return np.array(_A_T[_checked(tile_side)], dtype=np.float64)


def kernel_transform_matrix(tile_side):
    """(a^2, 9) float32 K with U[a*i + j] = sum_{3r + s} K[a*i + j, 3r + s] g[r, s]: (G g G^T) as one product,
    its coefficients G[i, r] G[j, s] computed in float64 and rounded once."""
    g = kernel_matrix(tile_side)
    return np.kron(g, g).astype(np.float32)


def positions(tile_side):
    """a^2, the transformed positions of a tile (16 for F(2x2), 36 for F(4x4))."""
    return (_checked(tile_side) + 2) ** 2


def tile_side_of(position_count):
    """m from a transformed kernel's leading dimension a^2; ValueError for any other count."""
    for tile_side in TILE_SIDES:
        if positions(tile_side) == position_count:
            return tile_side
    raise ValueError(f"a Winograd transformed kernel has {', '.join(str(positions(m)) for m in TILE_SIDES)} positions, got {position_count}")


def _checked(tile_side):
    if tile_side not in TILE_SIDES:
        raise ValueError(f"Winograd tiles of side {tile_side!r} are not provided; choose one of {TILE_SIDES}")
    return tile_side
