"""InvRescaleNet: the IRN bijection HR <-> (LR, z) (IRN, IRN_LD, IRN_E), and quantisation."""
import numpy as np
from mindspore import nn, ops

from src.network.blocks import HaarDownsampling, InvBlockExp
from src.network.chain import InvertibleChain
from src.network.downsampling import ConvDownsampling
from src.utils.errors import IRNError


def _check_layout(block_num, scale, conv_down, down_first):
    """-> (scale, number of Haar levels); IRNError for a layout the flags cannot build."""
    if not block_num or not all(isinstance(b, (int, np.integer)) and b >= 0 for b in block_num):
        raise IRNError(f'block_num must be a non-empty list of ints >= 0, got {block_num!r}')
    if not conv_down and not down_first:
        if scale is not None and scale != 2 ** len(block_num):
            raise IRNError(f'scale {scale} needs {int(scale).bit_length() - 1} Haar levels in '
                           f'block_num, got {block_num}')
        return 2 ** len(block_num), len(block_num)
    kind = 'IRN_LD (use_ConvDownsampling)' if conv_down else 'IRN_E (down_first)'
    if len(block_num) != 1:
        raise IRNError(f'{kind} uses one block count, block_num [K] (the authors read only '
                       f'block_num[0]), got {block_num}')
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
        raise IRNError(f'{kind} needs an integer scale >= 2, got {scale!r}')
    levels = scale.bit_length() - 1
    if not conv_down and scale != 2 ** levels:
        raise IRNError(f'IRN_E (down_first) needs a power-of-two scale (Haar levels), got {scale}')
    return scale, (0 if conv_down else levels)


def arch_record(scale, block_num, downsampling='haar', down_first=False):
    """The architecture record of an InvRescaleNet layout (see :meth:`InvRescaleNet.arch`)."""
    arch = {'net': 'InvRescaleNet', 'scale': scale, 'block_num': list(block_num)}
    flags = {'downsampling': downsampling, 'down_first': down_first}
    arch.update({k: v for k, v in flags.items() if v != InvRescaleNet.ARCH_DEFAULTS[k]})
    return arch


class InvRescaleNet(InvertibleChain):
    """IRN and its IJCV variants IRN_LD and IRN_E (the authors' ``which_model_G`` flags).

    * IRN (default): scale 2**len(block_num); each level is a Haar transform (C -> 4C
      channels at half resolution) followed by ``block_num[level]`` coupling blocks.
    * IRN_LD (``use_ConvDownsampling``): one learnable :class:`ConvDownsampling` by any
      integer ``scale`` (C -> s*s*C channels), then ``block_num[0]`` coupling blocks.
    * IRN_E (``down_first``): all log2(scale) Haar transforms first, then ``block_num[0]``
      coupling blocks at the lowest resolution (x4 [K] is IRN x4 [0, K]).

    The authors read only ``block_num[0]`` in the two variants and ignore the rest; here a
    longer list is an error, so a layout is never silently dropped.
    The full output (``construct``) is (B, 3*s*s, H/s, W/s): channels [:3] are the LR image,
    the rest is z; ``forward(hr)`` gives (lr, z), ``inverse(out)`` maps such a tensor back to
    HR. Cell names follow the authors' ``operations.N`` numbering so their checkpoints map one
    to one.

    Args:
        block_num (list[int]): coupling blocks per level, e.g. [8, 8] for x4; one entry for
            IRN_LD / IRN_E.
        channel_in (int): image channels (3).
        seed (int): seed of the numpy generator for the xavier initialisation.
        scale (int | None): the scale; required for IRN_LD / IRN_E, checked for IRN.
        use_ConvDownsampling (bool): IRN_LD.
        down_first (bool): IRN_E (implied by ``use_ConvDownsampling``, as the authors do).
    """

    ARCH_DEFAULTS = {'downsampling': 'haar', 'down_first': False}  # base IRN (older records)

    def __init__(self, block_num, channel_in=3, seed=0, scale=None, use_ConvDownsampling=False,
                 down_first=False):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.scale, levels = _check_layout(list(block_num), scale, use_ConvDownsampling, down_first)
        self.block_num = [int(b) for b in block_num]
        self.channel_in = self.lr_channels = channel_in
        self.downsampling = 'conv' if use_ConvDownsampling else 'haar'
        # one Haar level is the same network either way; keep one description of it
        self.down_first = bool(use_ConvDownsampling or (down_first and levels > 1))
        ops_list = []
        channels = channel_in
        if use_ConvDownsampling:
            ops_list.append(ConvDownsampling(self.scale))
            channels *= self.scale ** 2
        elif self.down_first:
            for _ in range(levels):
                ops_list.append(HaarDownsampling(channels))
                channels *= 4
        if self.down_first:
            ops_list.extend(InvBlockExp(channels, channel_in, rng) for _ in range(self.block_num[0]))
        else:
            for level_blocks in self.block_num:
                ops_list.append(HaarDownsampling(channels))
                channels *= 4
                ops_list.extend(InvBlockExp(channels, channel_in, rng) for _ in range(level_blocks))
        self.channel_out = channels
        self.operations = nn.CellList(ops_list)

    def arch(self):
        """The architecture record a checkpoint of this network carries. The IRN_LD / IRN_E
        flags appear only when they differ from :attr:`ARCH_DEFAULTS` (base IRN), so base
        records are unchanged and a record without them is base IRN."""
        return arch_record(self.scale, self.block_num, self.downsampling, self.down_first)

    @staticmethod
    def from_torch(state, path):
        """The authors' state_dict -> (our weights, architecture record)."""
        from src.convert import torch_to_irn
        return torch_to_irn(state, path)


class Quantization(nn.Cell):
    """round(clamp(x, 0, 1) * 255) / 255 with a straight-through (identity) gradient."""

    def construct(self, x):
        q = ops.round(ops.clamp(x, 0.0, 1.0) * 255.0) / 255.0
        return x + ops.stop_gradient(q - x)
