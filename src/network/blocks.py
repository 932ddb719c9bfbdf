"""Invertible building blocks of IRN: Haar transform, dense sub-network, coupling block."""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops

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


class DenseBlock(nn.Cell):
    """Five 3x3 convs with dense connections (the paper's DBNet sub-network).

    conv1-4 are xavier-normal x0.1 with zero bias, conv5 is all zero, so a fresh block outputs 0.
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
        self.lrelu = nn.LeakyReLU(0.2)

    def construct(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(ops.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(ops.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(ops.cat((x, x1, x2, x3), 1)))
        return self.conv5(ops.cat((x, x1, x2, x3, x4), 1))


class InvBlockExp(nn.Cell):
    """Affine coupling block: y1 = x1 + F(x2); y2 = x2 * exp(s(y1)) + G(y1).

    s = clamp * (2 * sigmoid(H(y1)) - 1) bounds the log-scale to [-clamp, clamp].
    """

    def __init__(self, channel_num, channel_split_num, rng, clamp=1.0):
        super().__init__()
        self.split1 = channel_split_num
        self.split2 = channel_num - channel_split_num
        self.clamp = clamp
        self.F = DenseBlock(self.split2, self.split1, rng)
        self.G = DenseBlock(self.split1, self.split2, rng)
        self.H = DenseBlock(self.split1, self.split2, rng)

    def _log_scale(self, y1):
        return self.clamp * (ops.sigmoid(self.H(y1)) * 2 - 1)

    def construct(self, x):
        x1, x2 = x[:, :self.split1], x[:, self.split1:]
        y1 = x1 + self.F(x2)
        y2 = x2 * ops.exp(self._log_scale(y1)) + self.G(y1)
        return ops.cat((y1, y2), 1)

    def inverse(self, y):
        """Exact inverse of :meth:`construct`."""
        y1, y2 = y[:, :self.split1], y[:, self.split1:]
        x2 = (y2 - self.G(y1)) / ops.exp(self._log_scale(y1))
        x1 = y1 - self.F(x2)
        return ops.cat((x1, x2), 1)
