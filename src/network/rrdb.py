"""RRDBNet: the Compression Restoration Module (CRM) of IRN with JPEG (EXTENSIONS.md 5.3).

conv_first (3x3, in -> nf), ``nb`` residual-in-residual dense blocks, trunk_conv (3x3), a long
skip from conv_first, conv_last (3x3, nf -> out). No upsampling, no output activation: it maps
a JPEG-decoded LR to a restored LR of the same size. Parameter names are the authors'
(``conv_first.weight``, ``RRDB_trunk.0.RDB1.conv1.weight``, ...), so their .pth maps one to one.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import nn

from src.network.blocks import dense_block
from src.network.fast_conv import dense_conv


def _conv(cin, cout, weight, bias):
    conv = nn.Conv2d(cin, cout, 3, pad_mode='pad', padding=1, has_bias=True,
                     weight_init='zeros', bias_init='zeros')
    conv.weight.set_data(ms.Tensor(weight.astype(np.float32)))
    conv.bias.set_data(ms.Tensor(bias.astype(np.float32)))
    return conv


def _kaiming_conv(cin, cout, scale, rng):
    """kaiming_normal (fan_in, gain sqrt 2) x ``scale``, zero bias (authors' initialize_weights)."""
    std = math.sqrt(2.0 / (cin * 9))
    return _conv(cin, cout, rng.standard_normal((cout, cin, 3, 3)) * std * scale, np.zeros(cout))


def _default_conv(cin, cout, rng):
    """PyTorch's default Conv2d init: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(cin * 9)
    return _conv(cin, cout, rng.uniform(-bound, bound, (cout, cin, 3, 3)),
                 rng.uniform(-bound, bound, cout))


class ResidualDenseBlock5C(nn.Cell):
    """x + 0.2 * DenseBlock(x): five 3x3 convs with ``gc`` growth, LeakyReLU 0.2 after conv1-4.

    conv1-4: kaiming-normal x0.1, zero bias; conv5 all zero, so a fresh block is the identity.
    """

    def __init__(self, nf, gc, rng):
        super().__init__()
        for k in range(1, 5):
            setattr(self, f'conv{k}', _kaiming_conv(nf + (k - 1) * gc, gc, 0.1, rng))
        self.conv5 = _conv(nf + 4 * gc, nf, np.zeros((nf, nf + 4 * gc, 3, 3)), np.zeros(nf))

    def weights(self):
        """(w1, b1, ..., w5, b5), the argument of :func:`src.network.blocks.dense_block`."""
        return (self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias,
                self.conv3.weight, self.conv3.bias, self.conv4.weight, self.conv4.bias,
                self.conv5.weight, self.conv5.bias)

    def construct(self, x):
        return dense_block(x, self.weights()) * 0.2 + x


class RRDB(nn.Cell):
    """x + 0.2 * RDB3(RDB2(RDB1(x)))."""

    def __init__(self, nf, gc, rng):
        super().__init__()
        self.RDB1 = ResidualDenseBlock5C(nf, gc, rng)
        self.RDB2 = ResidualDenseBlock5C(nf, gc, rng)
        self.RDB3 = ResidualDenseBlock5C(nf, gc, rng)

    def construct(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Cell):
    """The CRM: ``construct(x)`` (B, in_nc, h, w) -> (B, out_nc, h, w).

    Args:
        in_nc, out_nc (int): image channels (3, 3).
        nf (int): feature channels (authors: 64).
        nb (int): number of RRDBs (8).
        gc (int): growth channels of the dense blocks (32).
        seed (int): seed of the numpy generator for the initialisation.
    """

    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=8, gc=32, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.in_nc, self.out_nc, self.nf, self.nb, self.gc = in_nc, out_nc, nf, nb, gc
        self.conv_first = _default_conv(in_nc, nf, rng)
        self.RRDB_trunk = nn.CellList([RRDB(nf, gc, rng) for _ in range(nb)])
        self.trunk_conv = _default_conv(nf, nf, rng)
        self.conv_last = _default_conv(nf, out_nc, rng)

    def construct(self, x):
        fea = dense_conv((x,), self.conv_first.weight, self.conv_first.bias, False)
        trunk = fea
        for block in self.RRDB_trunk:
            trunk = block(trunk)
        trunk = dense_conv((trunk,), self.trunk_conv.weight, self.trunk_conv.bias, False)
        return dense_conv((fea + trunk,), self.conv_last.weight, self.conv_last.bias, False)

    def layout(self):
        """The constructor's layout arguments: in_nc, out_nc, nf, nb, gc."""
        return {'in_nc': self.in_nc, 'out_nc': self.out_nc, 'nf': self.nf, 'nb': self.nb,
                'gc': self.gc}

    def arch(self):
        """The architecture record a checkpoint of this network carries."""
        return {'net': 'RRDBNet', **self.layout()}

    @staticmethod
    def from_torch(state, path):
        """The authors' CRM state_dict -> (our weights, architecture record)."""
        from src.convert import torch_to_crm
        return torch_to_crm(state, path)
