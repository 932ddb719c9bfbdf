"""Invertible building blocks of IRN: Haar transform, dense sub-network, coupling block."""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from src.network.fast_conv import dense_conv, exp_scale

GROWTH = 32  # DenseBlock growth channels (gc) in the paper


class HaarDownsampling(nn.Cell):
    """Fixed 2x2 Haar wavelet transform: (B, C, H, W) -> (B, 4C, H/2, W/2).

    Output channel f*C + c is Haar filter f on input channel c (filter-major), divided by 4, so
    the first C channels are the 2x2 average. Written as reshapes and a butterfly of adds,
    which is exact and needs no (transposed) convolution kernel.
    """

    def __init__(self, channel_in):
        super().__init__()
        self.channel_in = channel_in

    def weights(self):
        """No trainable tensors."""
        return ()

    def graph_key(self):
        """Ops with equal keys compute the same function of (x, weights)."""
        return ('haar',)

    def apply(self, x, weights, inverse):
        """The op as a function of its input (``weights`` is empty); ``inverse`` picks the direction."""
        return self.inverse(x) if inverse else self.construct(x)

    @staticmethod
    def _split(x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2)
        return x[:, :, :, 0, :, 0], x[:, :, :, 0, :, 1], x[:, :, :, 1, :, 0], x[:, :, :, 1, :, 1]

    def construct(self, x):
        a, b, c, d = self._split(x)
        s1, d1, s2, d2 = a + b, a - b, c + d, c - d
        return ops.cat(((s1 + s2) * 0.25, (d1 + d2) * 0.25, (s1 - s2) * 0.25, (d1 - d2) * 0.25), 1)

    def inverse(self, y):
        """Exact inverse: the Haar matrix H satisfies (H/4)^-1 = H^T = H."""
        b, c4, h, w = y.shape
        c = c4 // 4
        f0, f1, f2, f3 = y[:, :c], y[:, c:2 * c], y[:, 2 * c:3 * c], y[:, 3 * c:]
        s1, d1, s2, d2 = f0 + f2, f1 + f3, f0 - f2, f1 - f3
        # a = s1 + d1, b = s1 - d1 (top row), c = s2 + d2, d = s2 - d2 (bottom row)
        top = ops.stack((s1 + d1, s1 - d1), -1).reshape(b, c, h, 1, 2 * w)
        bottom = ops.stack((s2 + d2, s2 - d2), -1).reshape(b, c, h, 1, 2 * w)
        return ops.cat((top, bottom), 3).reshape(b, c, 2 * h, 2 * w)


def _xavier_normal(shape, scale, rng):
    fan_in = shape[1] * shape[2] * shape[3]
    fan_out = shape[0] * shape[2] * shape[3]
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std * scale).astype(np.float32)


def dense_block(x, w, half=False):
    """DenseBlock as a function of its input and weights ``(w1, b1, ..., w5, b5)``.

    ``half``: compute in float16 (input and weights cast), return float32.
    """
    if half:
        x = x.astype(ms.float16)
        w = tuple([t.astype(ms.float16) for t in w])
    x1 = dense_conv((x,), w[0], w[1], True)
    x2 = dense_conv((x, x1), w[2], w[3], True)
    x3 = dense_conv((x, x1, x2), w[4], w[5], True)
    x4 = dense_conv((x, x1, x2, x3), w[6], w[7], True)
    out = dense_conv((x, x1, x2, x3, x4), w[8], w[9], False)
    return out.astype(ms.float32) if half else out


def affine_forward(x2, y1, w_gh, clamp, half=False):
    """The affine half of a coupling: x2 * exp(s) + G(y1), s = clamp * (2 sigmoid(H(y1)) - 1).

    ``w_gh`` = G then H weights (20). Shared by IRN's block and SAIN's enhanced block.
    """
    return x2 * exp_scale(dense_block(y1, w_gh[10:], half), clamp, half) + dense_block(y1, w_gh[:10], half)


def affine_inverse(y2, y1, w_gh, clamp, half=False):
    """Exact inverse of :func:`affine_forward` in ``x2``: (y2 - G(y1)) / exp(s)."""
    return (y2 - dense_block(y1, w_gh[:10], half)) / exp_scale(dense_block(y1, w_gh[10:], half), clamp, half)


def coupling_forward(x, w, split, clamp, half=False):
    """Affine coupling y = (x1 + F(x2), x2 * exp(s(y1)) + G(y1)); ``w`` = F, G, H weights (30).

    ``half`` runs F, G, H in float16; the coupling arithmetic (exp, division) stays float32.
    """
    x1, x2 = x[:, :split], x[:, split:]
    y1 = x1 + dense_block(x2, w[:10], half)
    return ops.cat((y1, affine_forward(x2, y1, w[10:], clamp, half)), 1)


def coupling_inverse(y, w, split, clamp, half=False):
    """Exact inverse of :func:`coupling_forward`."""
    y1, y2 = y[:, :split], y[:, split:]
    x2 = affine_inverse(y2, y1, w[10:], clamp, half)
    x1 = y1 - dense_block(x2, w[:10], half)
    return ops.cat((x1, x2), 1)


class DenseBlock(nn.Cell):
    """Five 3x3 convs with dense connections (the paper's DBNet sub-network).

    conv1-4 are xavier-normal x0.1 with zero bias, conv5 is all zero, so a fresh block outputs 0.
    The convs hold the weights (under the authors' names); the maths is :func:`dense_block`.
    """

    def __init__(self, channel_in, channel_out, rng):
        super().__init__()
        ins = [channel_in + k * GROWTH for k in range(5)]
        outs = [GROWTH] * 4 + [channel_out]
        for k, (cin, cout) in enumerate(zip(ins, outs), start=1):
            conv = nn.Conv2d(cin, cout, 3, pad_mode='pad', padding=1, has_bias=True,
                             weight_init='zeros', bias_init='zeros')
            if k < 5:
                conv.weight.set_data(ms.Tensor(_xavier_normal((cout, cin, 3, 3), 0.1, rng)))
            setattr(self, f'conv{k}', conv)

    def weights(self):
        """(w1, b1, ..., w5, b5)."""
        return (self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias,
                self.conv3.weight, self.conv3.bias, self.conv4.weight, self.conv4.bias,
                self.conv5.weight, self.conv5.bias)

    def construct(self, x):
        return dense_block(x, self.weights())


class InvBlockExp(nn.Cell):
    """Affine coupling block: y1 = x1 + F(x2); y2 = x2 * exp(s(y1)) + G(y1).

    s = clamp * (2 * sigmoid(H(y1)) - 1) bounds the log-scale to [-clamp, clamp].
    """

    def __init__(self, channel_num, channel_split_num, rng, clamp=1.0):
        super().__init__()
        self.split1 = channel_split_num
        self.split2 = channel_num - channel_split_num
        self.clamp = clamp
        self.half = False  # float16 sub-networks (train.amp_level O1, see src/amp.py)
        self.F = DenseBlock(self.split2, self.split1, rng)
        self.G = DenseBlock(self.split1, self.split2, rng)
        self.H = DenseBlock(self.split1, self.split2, rng)

    def weights(self):
        """The 30 weight tensors of F, G and H, in the order the coupling functions take."""
        return self.F.weights() + self.G.weights() + self.H.weights()

    def graph_key(self):
        """Ops with equal keys compute the same function of (x, weights)."""
        return ('coupling', self.split1, self.clamp, self.half)

    def apply(self, x, weights, inverse):
        """The block as a pure function of its input and ``weights`` (see :meth:`weights`)."""
        if inverse:
            return coupling_inverse(x, weights, self.split1, self.clamp, self.half)
        return coupling_forward(x, weights, self.split1, self.clamp, self.half)

    def construct(self, x):
        return coupling_forward(x, self.weights(), self.split1, self.clamp, self.half)

    def inverse(self, y):
        """Exact inverse of :meth:`construct`."""
        return coupling_inverse(y, self.weights(), self.split1, self.clamp, self.half)
