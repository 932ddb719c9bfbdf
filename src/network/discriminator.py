"""IRN+'s discriminator: ``Discriminator_VGG_128`` (the ESRGAN-style VGG discriminator).

The convolutions are :mod:`src.network.convs` layers (fast on CPU).
PyTorch's default initialisation is reproduced in distribution (not bit for bit: the draws
come from a seeded numpy generator), and the BatchNorms run the way the authors run them:
always on batch statistics, updating their running statistics on every forward.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor

from src.network.convs import Conv3x3, Conv4x4Stride2
from src.utils.errors import IRNError


def torch_default_init(shape, rng):
    """PyTorch's default Conv/Linear init: kaiming_uniform(a=sqrt(5)) weights and the matching
    bias, both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = prod(weight shape[1:]).

    Returns ``(weight, bias)`` float32 arrays; ``shape`` is the weight's shape.
    """
    bound = 1.0 / math.sqrt(int(np.prod(shape[1:])))
    weight = rng.uniform(-bound, bound, shape).astype(np.float32)
    bias = rng.uniform(-bound, bound, shape[0]).astype(np.float32)
    return weight, bias


class BatchNorm2d(nn.Cell):
    """``torch.nn.BatchNorm2d`` as the authors use it in D: always in training mode.

    Normalises with the batch mean and biased variance (eps 1e-5), then applies the affine
    weight/bias. Every call also updates ``running_mean`` / ``running_var`` as torch does with
    momentum 0.1 (new = 0.9 * old + 0.1 * batch value, the variance unbiased: n / (n - 1)) and
    counts ``num_batches_tracked``. The running statistics are never used for normalising
    (D is never put in eval mode); they are kept so the state matches the authors' state dict.
    """

    def __init__(self, channels):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones(channels, np.float32)), name='weight')
        self.bias = Parameter(Tensor(np.zeros(channels, np.float32)), name='bias')
        self.running_mean = Parameter(Tensor(np.zeros(channels, np.float32)), name='running_mean',
                                      requires_grad=False)
        self.running_var = Parameter(Tensor(np.ones(channels, np.float32)), name='running_var',
                                     requires_grad=False)
        self.num_batches_tracked = Parameter(Tensor(0, ms.int64), name='num_batches_tracked',
                                             requires_grad=False)
        self.one = Tensor(1, ms.int64)

    def construct(self, x):
        # MindSpore's functional batch_norm: torch's momentum convention and unbiased running
        # variance (tests/test_irn_plus.py checks both against the authors' running stats).
        ops.assign_add(self.num_batches_tracked, self.one)
        return ops.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                              True, 0.1, 1e-5)


class Discriminator_VGG_128(nn.Cell):  # pylint: disable=invalid-name  (the authors' name)
    """VGG-style discriminator: 10 convolutions, 2 linear layers, one logit per image.

    conv0_0 (3x3, bias) + LReLU; conv0_1 (4x4, stride 2) + BN + LReLU; then four stages of
    [3x3 conv, BN, LReLU, 4x4 stride-2 conv, BN, LReLU] (nf -> 2nf -> 4nf -> 8nf -> 8nf, no conv
    bias); flatten; linear1 (512*4*4 -> 100) + LReLU; linear2 (100 -> 1). LReLU slope 0.2.
    Each stride-2 conv maps n to floor(n / 2), so inputs must be 128-159 px on each side.
    Parameter names are the authors' (``conv0_0.weight``, ``bn0_1.running_mean``, ...).

    Args:
        in_nc (int): input channels (3).
        nf (int): base width (64); the flatten needs ``8 * nf == 512``.
        seed (int): seed of the numpy generator for PyTorch's default initialisation.
    """

    MIN_SIZE, MAX_SIZE = 128, 159

    def __init__(self, in_nc=3, nf=64, seed=0):
        super().__init__()
        self.in_nc, self.nf = in_nc, nf
        if nf * 8 != 512:
            raise IRNError(f'network_D.nf must be 64 (linear1 takes 512*4*4 features), got {nf}')
        rng = np.random.default_rng(seed)
        widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8]
        self.conv0_0 = self._conv(in_nc, nf, 3, 1, True, rng)
        self.conv0_1 = self._conv(nf, nf, 4, 2, False, rng)
        self.bn0_1 = BatchNorm2d(nf)
        cin = nf
        for stage in range(1, 5):
            cout = widths[stage]
            setattr(self, f'conv{stage}_0', self._conv(cin, cout, 3, 1, False, rng))
            setattr(self, f'bn{stage}_0', BatchNorm2d(cout))
            setattr(self, f'conv{stage}_1', self._conv(cout, cout, 4, 2, False, rng))
            setattr(self, f'bn{stage}_1', BatchNorm2d(cout))
            cin = cout
        self.linear1 = self._dense(512 * 4 * 4, 100, rng)
        self.linear2 = self._dense(100, 1, rng)
        self.lrelu = nn.LeakyReLU(0.2)

    @staticmethod
    def _conv(cin, cout, k, stride, bias, rng):
        weight, b = torch_default_init((cout, cin, k, k), rng)
        if stride == 2:
            return Conv4x4Stride2(weight)
        return Conv3x3(weight, b if bias else None)

    @staticmethod
    def _dense(cin, cout, rng):
        weight, b = torch_default_init((cout, cin), rng)
        return nn.Dense(cin, cout, weight_init=Tensor(weight), bias_init=Tensor(b))

    def arch(self):
        """The architecture record (json-able) checkpoints carry and loading compares."""
        return {'net': 'Discriminator_VGG_128', 'in_nc': self.in_nc, 'nf': self.nf}

    @classmethod
    def check_size(cls, size, what):
        """Raise IRNError unless ``size`` px fits the flatten (128-159); ``what`` names it."""
        if not cls.MIN_SIZE <= size <= cls.MAX_SIZE:
            raise IRNError(f'{what} is {size}, but Discriminator_VGG_128 takes {cls.MIN_SIZE}-'
                           f'{cls.MAX_SIZE} px images (its linear1 expects 512x4x4 features)')

    def construct(self, x):
        fea = self.lrelu(self.conv0_0(x))
        fea = self.lrelu(self.bn0_1(self.conv0_1(fea)))
        fea = self.lrelu(self.bn1_0(self.conv1_0(fea)))
        fea = self.lrelu(self.bn1_1(self.conv1_1(fea)))
        fea = self.lrelu(self.bn2_0(self.conv2_0(fea)))
        fea = self.lrelu(self.bn2_1(self.conv2_1(fea)))
        fea = self.lrelu(self.bn3_0(self.conv3_0(fea)))
        fea = self.lrelu(self.bn3_1(self.conv3_1(fea)))
        fea = self.lrelu(self.bn4_0(self.conv4_0(fea)))
        fea = self.lrelu(self.bn4_1(self.conv4_1(fea)))
        fea = self.lrelu(self.linear1(fea.reshape(fea.shape[0], -1)))
        return self.linear2(fea)


def load_discriminator(net_d, path):
    """Load D's weights and BatchNorm statistics from the authors' ``*_D.pth`` (their names,
    a ``module.`` prefix of DataParallel dropped) or from one of our training states (its
    ``netD.`` entries). Every name and shape is checked (one-line IRNError naming ``path``)."""
    from src.utils.checkpoint import load_into, read_checkpoint

    def from_torch(state, _):
        return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}, None

    load_into(net_d, read_checkpoint(path, from_torch, group='netD')[0], path)
