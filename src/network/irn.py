"""InvRescaleNet: the IRN bijection HR <-> (LR, z), and straight-through quantisation."""
import numpy as np
from mindspore import nn, ops

from src.network.blocks import HaarDownsampling, InvBlockExp


class InvRescaleNet(nn.Cell):
    """IRN for scale 2**len(block_num).

    Each level is a Haar transform (C -> 4C channels at half resolution) followed by
    ``block_num[level]`` coupling blocks. ``forward(hr)`` returns the full output
    (B, 3*s*s, H/s, W/s): channels [:3] are the LR image, the rest is z.
    ``inverse(out)`` maps such a tensor back to HR. Cell names follow the authors'
    ``operations.N`` numbering so their checkpoints map one to one.

    Args:
        block_num (list[int]): coupling blocks per level, e.g. [8, 8] for x4.
        channel_in (int): image channels (3).
        seed (int): seed of the numpy generator for the xavier initialisation.
    """

    def __init__(self, block_num, channel_in=3, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.block_num = list(block_num)
        self.scale = 2 ** len(self.block_num)
        self.channel_in = channel_in
        ops_list = []
        channels = channel_in
        for level_blocks in self.block_num:
            ops_list.append(HaarDownsampling(channels))
            channels *= 4
            ops_list.extend(InvBlockExp(channels, channel_in, rng) for _ in range(level_blocks))
        self.channel_out = channels
        self.operations = nn.CellList(ops_list)

    def arch(self):
        """The architecture record a checkpoint of this network carries."""
        return {'net': 'InvRescaleNet', 'scale': self.scale, 'block_num': list(self.block_num)}

    @staticmethod
    def from_torch(state, path):
        """The authors' state_dict -> (our weights, architecture record)."""
        from src.convert import torch_to_irn
        return torch_to_irn(state, path)

    def construct(self, x):
        for op in self.operations:
            x = op(x)
        return x

    def forward(self, hr):
        """HR (B, 3, H, W) -> (lr, z): lr (B, 3, H/s, W/s) unquantised, z the remaining channels."""
        out = self.construct(hr)
        return out[:, :self.channel_in], out[:, self.channel_in:]

    def inverse(self, y):
        """(B, 3*s*s, h, w) -> HR (B, 3, h*s, w*s)."""
        for i in range(len(self.operations) - 1, -1, -1):  # slicing a CellList renames params
            y = self.operations[i].inverse(y)
        return y

    def upscale(self, lr, z):
        """(lr, z) -> HR; lr is usually quantised, z drawn from N(0, I) or zero."""
        return self.inverse(ops.cat((lr, z), 1))


class Quantization(nn.Cell):
    """round(clamp(x, 0, 1) * 255) / 255 with a straight-through (identity) gradient."""

    def construct(self, x):
        q = ops.round(ops.clamp(x, 0.0, 1.0) * 255.0) / 255.0
        return x + ops.stop_gradient(q - x)
