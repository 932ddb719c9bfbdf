"""Plain convolution layers for IRN+'s discriminator and VGG19, on the fast CPU path.

MindSpore 2.10's own CPU Conv2D is slow for these layers (see the README), so the layers
compute through :func:`src.network.fast_conv.dense_conv` when the oneDNN kernels are on:
3x3 convolutions directly, and the discriminator's 4x4 stride-2 convolutions as a 3x3
convolution of the space-to-depth input (below). Elsewhere (GPU, Ascend, export) they are
MindSpore convolutions. The cells only hold the weights, under torch's names
(``weight``, ``bias``).
"""
import numpy as np
from mindspore import nn, ops, Parameter, Tensor

from src.network import fast_conv


class Conv3x3(nn.Cell):
    """3x3 convolution, stride 1, zero padding 1, optional bias.

    Args:
        weight (np.ndarray): (out, in, 3, 3). bias (np.ndarray or None): (out,).
    """

    def __init__(self, weight, bias=None):
        super().__init__()
        self.weight = Parameter(Tensor(np.asarray(weight, np.float32)), name='weight')
        self.has_bias = bias is not None
        if self.has_bias:
            self.bias = Parameter(Tensor(np.asarray(bias, np.float32)), name='bias')
        self.zero_bias = Tensor(np.zeros(weight.shape[0], np.float32))  # a constant, not trained

    def construct(self, x):
        bias = self.bias if self.has_bias else self.zero_bias
        return fast_conv.dense_conv((x,), self.weight, bias, False)


def zero_pad(x, top, bottom, left, right):
    """Zero padding of the last two axes of an NCHW tensor, by concatenation.

    ``ops.pad`` would do, but MindSpore 2.10's CPU pad kernels hang (a spinning kernel thread)
    from the fourth training step on in the discriminator's graphs, measured; concatenating
    zeros computes the same values and its gradient is a slice.
    """
    b, c, _, w = x.shape
    if top:
        x = ops.cat((ops.zeros((b, c, top, w), x.dtype), x), 2)
    if bottom:
        x = ops.cat((x, ops.zeros((b, c, bottom, w), x.dtype)), 2)
    h = x.shape[2]
    if left:
        x = ops.cat((ops.zeros((b, c, h, left), x.dtype), x), 3)
    if right:
        x = ops.cat((x, ops.zeros((b, c, h, right), x.dtype)), 3)
    return x


def _space_to_depth_weight(weight):
    """(out, C, 4, 4) -> (out, 4C, 3, 3): the 4x4 kernel as a 2x2 kernel over space-to-depth
    channels (c, p, q), placed in the bottom-right 2x2 taps of a 3x3 kernel."""
    out, c = weight.shape[0], weight.shape[1]
    w = weight.reshape(out, c, 2, 2, 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(out, 4 * c, 2, 2)
    return zero_pad(w, 1, 0, 1, 0)


class Conv4x4Stride2(nn.Cell):
    """4x4 convolution, stride 2, zero padding 1, no bias: n -> floor(n / 2) px.

    With kernel rows ky = 2a + p, output row i reads padded input row 2(i + a) + p, i.e. row
    i + a of the space-to-depth image S[(c, p, q), u, v] = x_padded[c, 2u + p, 2v + q]. That
    is a 2x2 valid convolution of S, computed as a 3x3 pad-1 convolution whose first tap row and
    column are zero, cropped to floor(n / 2): 2.25x the multiply-adds on the fast kernels.
    """

    def __init__(self, weight):
        super().__init__()
        self.weight = Parameter(Tensor(np.asarray(weight, np.float32)), name='weight')
        self.zero_bias = Tensor(np.zeros(weight.shape[0], np.float32))
        # off the fast kernels: the Conv2D primitive (ops.conv2d loses pad_mode after 2.9)
        self.conv = ops.Conv2D(weight.shape[0], tuple(weight.shape[2:]), pad_mode='pad', pad=1,
                               stride=2)

    def construct(self, x):
        if fast_conv.backend() != 'dnnl':
            return self.conv(x, self.weight)
        b, c, h, w = x.shape
        hp, wp = h + 2 + h % 2, w + 2 + w % 2   # even sizes for the 2x2 split
        x = zero_pad(x, 1, hp - h - 1, 1, wp - w - 1)
        s = x.reshape(b, c, hp // 2, 2, wp // 2, 2).transpose(0, 1, 3, 5, 2, 4)
        s = s.reshape(b, 4 * c, hp // 2, wp // 2)
        y = fast_conv.dense_conv((s,), _space_to_depth_weight(self.weight), self.zero_bias, False)
        return y[:, :, :h // 2, :w // 2]
