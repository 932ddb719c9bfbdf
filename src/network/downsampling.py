"""Learnable downsampling of IRN_LD: s x s space-to-depth mixed by one s^2 x s^2 matrix."""
import numpy as np
from mindspore import ops

from src.network.linalg import MatrixOp
from src.utils.errors import IRNError

_matmul = ops.MatMul()  # the primitive: ops.matmul's expander warns on dynamic shapes (infer)


def conv_down_init(scale):
    """The authors' initial matrix: Haar / 4 for s = 2, else I(s^2) with row 0 = 1/s^2.

    Rows index output planes, columns the sub-pixels m = i*s + j of an s x s cell.
    """
    if scale == 2:
        w = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]],
                     np.float64) / 4
    else:
        w = np.eye(scale * scale)
        w[0] = 1.0 / (scale * scale)
    return w.astype(np.float32)


def conv_down_forward(x, w):
    """(B, C, H, W) -> (B, s^2 C, H/s, W/s): channel k*C + c = sum_m w[k, m] * subpixel m of c."""
    b, c, h, wd = x.shape
    s2 = w.shape[0]
    s = int(round(s2 ** 0.5))
    cells = x.reshape(b, c, h // s, s, wd // s, s).transpose(3, 5, 0, 1, 2, 4)
    mixed = _matmul(w, cells.reshape(s2, -1))
    return mixed.reshape(s2, b, c, h // s, wd // s).swapaxes(0, 1).reshape(b, s2 * c, h // s, wd // s)


def conv_down_unmix(y, w_inv):
    """Exact inverse of :func:`conv_down_forward`, given the inverse matrix ``w_inv``."""
    b, cs2, h, wd = y.shape
    s2 = w_inv.shape[0]
    s = int(round(s2 ** 0.5))
    c = cs2 // s2
    planes = y.reshape(b, s2, c, h, wd).swapaxes(0, 1).reshape(s2, -1)
    cells = _matmul(w_inv, planes).reshape(s, s, b, c, h, wd)
    return cells.transpose(2, 3, 4, 0, 5, 1).reshape(b, c, h * s, wd * s)


class ConvDownsampling(MatrixOp):
    """IRN_LD's learnable invertible downsampling by any integer ``scale`` s >= 2.

    Each colour channel is cut into s x s cells (sub-pixel m = i*s + j, row offset i, column
    offset j); one learnable s^2 x s^2 matrix, shared by all channels, mixes each cell's
    s^2 values. Output channel k*C + c holds row k of the matrix applied to channel c, so the
    first C channels (row 0, a box average at init) are the LR image. The inverse uses the
    matrix inverse (float64, then float32), recomputed on every call, and trains the matrix
    through it as well. The parameter keeps the authors' name and shape (``conv_weights``,
    s^2 x s^2).
    """

    def __init__(self, scale):
        if not isinstance(scale, int) or scale < 2:
            raise IRNError(f'ConvDownsampling needs an integer scale >= 2, got {scale!r}')
        super().__init__(conv_down_init(scale))
        self.scale = scale

    def graph_key(self):
        """Ops with equal keys compute the same function of (x, weights)."""
        return ('conv_down', self.scale)

    def mix(self, x, w):
        return conv_down_forward(x, w)

    def unmix(self, y, w_inv):
        return conv_down_unmix(y, w_inv)
