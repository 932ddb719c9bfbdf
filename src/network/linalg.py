"""Small learnable-matrix helpers shared by the invertible linear ops (Conv1x1Grey, ConvDownsampling)."""
import numpy as np
import mindspore as ms
from mindspore import ops


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
