"""RRDBNet: the Compression Restoration Module (CRM) of IRN with JPEG (EXTENSIONS.md 5.3).

conv_first (3x3, in -> nf), ``nb`` residual-in-residual dense blocks, trunk_conv (3x3), a long
skip from conv_first, conv_last (3x3, nf -> out). No upsampling, no output activation: it maps
a JPEG-decoded LR to a restored LR of the same size. Parameter names are the authors'
(``conv_first.weight``, ``RRDB_trunk.0.RDB1.conv1.weight``, ...), so their .pth maps one to one.
"""
import math
import re

import numpy as np
import mindspore as ms
from mindspore import nn

from src.network.blocks import dense_block
from src.network.fast_conv import dense_conv
from src.utils.errors import IRNError


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
        return torch_to_crm(state, path)


_RRDB_KEY = re.compile(r'^(conv_first|trunk_conv|conv_last)\.(weight|bias)$'
                       r'|^RRDB_trunk\.(\d+)\.RDB[123]\.conv[1-5]\.(weight|bias)$')


def is_crm_state(state):
    """True when a state dict holds the authors' CRM (RRDBNet) rather than an IRN."""
    return 'conv_first.weight' in state or 'module.conv_first.weight' in state


def crm_state_to_ours(state, path='<state>'):
    """The authors' CRM (``RRDBNet``) state dict -> ``(weights, layout)``.

    ``layout`` = {in_nc, out_nc, nf, nb, gc}, read from the tensor shapes; every key and shape
    is then checked against an RRDBNet of that layout (one-line IRNError naming the file).
    """
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    bad = [k for k in state if not _RRDB_KEY.match(k)]
    if bad:
        raise IRNError(f'{path}: unexpected key {bad[0]!r} ({len(bad)} unknown keys): not an '
                       'RRDBNet (CRM) state_dict')
    for key in ('conv_first.weight', 'conv_last.weight'):
        if key not in state or np.ndim(state[key]) != 4:
            raise IRNError(f'{path}: {key} missing or not a 4-d conv weight: not a CRM state_dict')
    blocks = sorted({int(m.group(3)) for m in map(_RRDB_KEY.match, state) if m.group(3)})
    if blocks != list(range(len(blocks))):
        raise IRNError(f'{path}: RRDB_trunk blocks are not numbered 0..{len(blocks) - 1}')
    first, last = state['conv_first.weight'], state['conv_last.weight']
    gc_key = 'RRDB_trunk.0.RDB1.conv1.weight'
    layout = {'in_nc': int(first.shape[1]), 'out_nc': int(last.shape[0]), 'nf': int(first.shape[0]),
              'nb': len(blocks), 'gc': int(state[gc_key].shape[0]) if gc_key in state else 32}
    expected = {p.name: tuple(p.shape) for p in RRDBNet(**layout).get_parameters()}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise IRNError(f'{path}: {missing[0]} missing ({len(missing)} keys) for an RRDBNet '
                       f'{layout}')
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise IRNError(f'{path}: {name} has shape {tuple(state[name].shape)}, an RRDBNet '
                           f'{layout} expects {shape}')
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}, layout


def torch_to_crm(state, path):
    """:func:`crm_state_to_ours` returning ``(weights, architecture record)``."""
    weights, layout = crm_state_to_ours(state, path)
    return weights, {'net': 'RRDBNet', **layout}
