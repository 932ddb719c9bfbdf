"""Small learnable-matrix helpers shared by the invertible linear ops (Conv1x1Grey, ConvDownsampling)."""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter


def matrix_inverse(w):
    """Inverse of a square float32 matrix, differentiable.

    Computed in float64 and rounded once to float32, so it is the correctly rounded inverse
    (MindSpore's float32 CPU inverse is off by ~1 ulp more; measured in the colour tests). The
    gradient -W^-T dW^-1 W^-T flows through the casts, also in float64.
    """
    return ops.inverse(w.astype(ms.float64)).astype(w.dtype)


def constant_inverse(w):
    """The inverse of a matrix parameter's current value as a constant float32 Tensor (taken
    in float64, like :func:`matrix_inverse`): for export, as ONNX has no matrix inverse."""
    return ms.Tensor(np.linalg.inv(w.asnumpy().astype(np.float64)).astype(np.float32))


def channel_mix(x, m):
    """Per-pixel linear map over the channel axis: out[:, k] = sum_j m[k, j] * x[:, j].

    ``x`` (B, N, H, W), ``m`` (N, N); a 1x1 convolution without bias, written as one
    broadcast matrix product so it works for any (also dynamic) spatial size and exports.
    """
    b, n, h, w = x.shape
    return ops.matmul(m, x.reshape(b, n, -1)).reshape(b, n, h, w)


class MatrixOp(nn.Cell):
    """An invertible op set by one learnable square matrix (the authors' ``conv_weights``).

    A subclass gives ``mix(x, w)`` (the forward) and ``unmix(y, w_inv)`` (its inverse, given the
    inverse matrix). The inverse recomputes w^-1 on every call (:func:`matrix_inverse`, so
    training moves the matrix through the inverse pass too) unless :meth:`freeze_inverse` fixed
    it. Follows the invertible-op protocol of ``net.operations`` (src/backprop.py):
    ``weights()``, ``apply(x, weights, inverse)``, ``graph_key()``.
    """

    def __init__(self, init):
        super().__init__()
        self.conv_weights = Parameter(ms.Tensor(init), name='conv_weights')
        self.frozen_inverse = None

    def mix(self, x, w):
        raise NotImplementedError

    def unmix(self, y, w_inv):
        raise NotImplementedError

    def freeze_inverse(self):
        """Fix w^-1 (taken now, in float64) as a constant of :meth:`inverse`, for export:
        ONNX has no matrix inverse. Training must not follow (the constant would go stale)."""
        self.frozen_inverse = constant_inverse(self.conv_weights)

    def weights(self):
        """(conv_weights,): the op's trainable tensors, in the order :meth:`apply` takes."""
        return (self.conv_weights,)

    def apply(self, x, weights, inverse=False):
        """The op as a pure function of its input and ``weights``; ``inverse`` picks the direction."""
        w = weights[0]
        return self.unmix(x, matrix_inverse(w)) if inverse else self.mix(x, w)

    def construct(self, x):
        return self.mix(x, self.conv_weights)

    def inverse(self, y):
        """Exact inverse of :meth:`construct` (to float32 rounding)."""
        if self.frozen_inverse is not None:
            return self.unmix(y, self.frozen_inverse)
        return self.unmix(y, matrix_inverse(self.conv_weights))
