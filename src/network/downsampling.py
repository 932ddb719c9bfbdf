"""Learnable downsampling of IRN_LD: s x s space-to-depth mixed by one s^2 x s^2 matrix."""
import numpy as np
from mindspore import nn, ops, Parameter, Tensor

from src.network.linalg import constant_inverse, matrix_inverse
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


def conv_down_inverse(y, w):
    """Exact inverse of :func:`conv_down_forward` with w^-1 computed from ``w`` on every call.

    The inverse is taken in float64 (then cast back), so it is exact to float32 rounding; its
    gradient reaches ``w``.
    """
    return conv_down_unmix(y, matrix_inverse(w))


def conv_down_unmix(y, w_inv):
    """:func:`conv_down_inverse` given the inverse matrix ``w_inv`` itself."""
    b, cs2, h, wd = y.shape
    s2 = w_inv.shape[0]
    s = int(round(s2 ** 0.5))
    c = cs2 // s2
    planes = y.reshape(b, s2, c, h, wd).swapaxes(0, 1).reshape(s2, -1)
    cells = _matmul(w_inv, planes).reshape(s, s, b, c, h, wd)
    return cells.transpose(2, 3, 4, 0, 5, 1).reshape(b, c, h * s, wd * s)


class ConvDownsampling(nn.Cell):
    """IRN_LD's learnable invertible downsampling by any integer ``scale`` s >= 2.

    Each colour channel is cut into s x s cells (sub-pixel m = i*s + j, row offset i, column
    offset j); one learnable s^2 x s^2 matrix, shared by all channels, mixes each cell's
    s^2 values. Output channel k*C + c holds row k of the matrix applied to channel c, so the
    first C channels (row 0, a box average at init) are the LR image. The inverse uses the
    matrix inverse, recomputed on every call, and trains the matrix through it as well.
    The parameter keeps the authors' name and shape (``conv_weights``, s^2 x s^2).
    """

    def __init__(self, scale):
        super().__init__()
        if not isinstance(scale, int) or scale < 2:
            raise IRNError(f'ConvDownsampling needs an integer scale >= 2, got {scale!r}')
        self.scale = scale
        self.conv_weights = Parameter(Tensor(conv_down_init(scale)), name='conv_weights')
        self.frozen_inverse = None

    def freeze_inverse(self):
        """Fix w^-1 (taken now, in float64) as a constant of :meth:`inverse`, for export:
        ONNX has no matrix inverse. Training must not follow (the constant would go stale)."""
        self.frozen_inverse = constant_inverse(self.conv_weights)

    def weights(self):
        """(conv_weights,): the op's trainable tensors, in the order :meth:`apply` takes."""
        return (self.conv_weights,)

    def graph_key(self):
        """Ops with equal keys compute the same function of (x, weights)."""
        return ('conv_down', self.scale)

    def apply(self, x, weights, inverse):
        """The op as a pure function of its input and ``weights``; ``inverse`` picks the direction."""
        if inverse:
            return conv_down_inverse(x, weights[0])
        return conv_down_forward(x, weights[0])

    def construct(self, x):
        return conv_down_forward(x, self.conv_weights)

    def inverse(self, y):
        """Exact inverse of :meth:`construct`."""
        if self.frozen_inverse is not None:
            return conv_down_unmix(y, self.frozen_inverse)
        return conv_down_inverse(y, self.conv_weights)
