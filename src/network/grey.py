"""InvGreyNet (IRN-Color): the bijection RGB <-> (grey, z), built from a learnable 3x3 colour
matrix and split-1 coupling blocks (spec EXTENSIONS section 3)."""
import re

import numpy as np
from mindspore import nn

from src.network.blocks import InvBlockExp
from src.network.chain import InvertibleChain
from src.network.linalg import MatrixOp, channel_mix
from src.utils.errors import IRNError

# RGB -> YUV rows (the authors' init for rgb_type RGB); BGR uses the columns reversed.
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                       [-0.147, -0.289, 0.436],
                       [0.615, -0.515, -0.100]], np.float32)
RGB_TYPES = ('RGB', 'BGR')


def grey_init(rgb_type):
    """The initial 3x3 matrix of :class:`Conv1x1Grey` for input channel order ``rgb_type``."""
    if rgb_type not in RGB_TYPES:
        raise IRNError(f"network_grey.rgb_type must be 'RGB' or 'BGR', got {rgb_type!r}")
    return RGB_TO_YUV.copy() if rgb_type == 'RGB' else RGB_TO_YUV[:, ::-1].copy()


class Conv1x1Grey(MatrixOp):
    """Learnable per-pixel 3x3 colour transform (a bias-free 1x1 convolution).

    Row 0 of the matrix gives the grey channel. The inverse uses the matrix inverse,
    recomputed on every call, so training also moves the matrix through the inverse
    pass (see :class:`src.network.linalg.MatrixOp`).
    """

    def __init__(self, rgb_type='RGB'):
        super().__init__(grey_init(rgb_type))

    def graph_key(self):
        """Every Conv1x1Grey is the same function of (x, weights)."""
        return ('Conv1x1Grey',)

    def mix(self, x, w):
        return channel_mix(x, w)

    def unmix(self, y, w_inv):
        return channel_mix(y, w_inv)


class InvGreyNet(InvertibleChain):
    """IRN-Color: ``Conv1x1Grey`` followed by ``block_num[0]`` coupling blocks with split 1.

    The output has the input's size: channel 0 is the grey image, channels 1-2 are z;
    ``forward(rgb)`` gives (grey, z), ``upscale(grey, z)`` colourises (the authors use z = 0),
    ``inverse`` maps a full output back to RGB. Parameter names are the authors'
    (``operations.0.conv_weights``, ``operations.N.F...``). Only ``block_num[0]`` is read, as
    in the authors' code.

    Args:
        block_num (list[int]): ``[K]``, the number of coupling blocks (8 in the paper).
        rgb_type (str): channel order of the images, 'RGB' (the authors' yml) or 'BGR'.
        seed (int): seed of the numpy generator for the xavier initialisation.
    """

    channel_in = channel_out = 3
    lr_channels = 1  # the grey image
    scale = 1  # no rescaling: the grey image has the input's size

    def __init__(self, block_num, rgb_type='RGB', seed=0):
        super().__init__()
        if not block_num or int(block_num[0]) < 0:
            raise IRNError(f'network_grey.block_num must be [K] with K >= 0, got {block_num}')
        rng = np.random.default_rng(seed)
        self.block_num = [int(block_num[0])]
        self.rgb_type = rgb_type
        ops_list = [Conv1x1Grey(rgb_type)]
        ops_list.extend(InvBlockExp(self.channel_in, self.lr_channels, rng)
                        for _ in range(self.block_num[0]))
        self.operations = nn.CellList(ops_list)

    def arch(self):
        """The architecture record a checkpoint of this network carries (rgb_type only sets
        the initial matrix, so it is not part of it)."""
        return {'net': 'InvGreyNet', 'scale': self.scale, 'block_num': list(self.block_num)}

    @staticmethod
    def from_torch(state, path):
        """The authors' state_dict -> (our weights, architecture record)."""
        return torch_to_grey(state, path)


_GREY_KEY = re.compile(r'^operations\.(\d+)\.(conv_weights|[FGH]\.conv[1-5]\.(weight|bias))$')


def torch_to_grey(state, path='<state>'):
    """The authors' IRN-Color (``InvGreyNet``) state dict -> ``(weights, architecture record)``.

    Checks that it is a colour net: a 3x3 ``operations.0.conv_weights`` followed by
    coupling blocks only; the blocks' shapes are checked when loaded into a network.
    """
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    if any(k.endswith('.haar_weights') for k in state):
        raise IRNError(f'{path}: holds a base IRN state_dict (Haar transforms), not an IRN-Color net')
    bad = [k for k in state if not _GREY_KEY.match(k)]
    if bad:
        raise IRNError(f'{path}: unexpected key {bad[0]!r} ({len(bad)} unknown keys): '
                       'not an IRN-Color state_dict')
    matrix = state.get('operations.0.conv_weights')
    if matrix is None:
        raise IRNError(f'{path}: no operations.0.conv_weights: not an IRN-Color state_dict')
    if tuple(matrix.shape) != (3, 3):
        raise IRNError(f'{path}: operations.0.conv_weights is {tuple(matrix.shape)}, not the 3x3 '
                       'colour matrix of IRN-Color (an IRN_LD downsampling matrix?)')
    ops = sorted({int(_GREY_KEY.match(k).group(1)) for k in state})
    if ops != list(range(len(ops))):
        raise IRNError(f'{path}: operations are not numbered 0..{len(ops) - 1}: missing operations')
    extra = [k for k in state if k.endswith('conv_weights') and k != 'operations.0.conv_weights']
    if extra:
        raise IRNError(f'{path}: {extra[0]} is a second matrix: not an IRN-Color state_dict')
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    return weights, {'net': 'InvGreyNet', 'scale': 1, 'block_num': [len(ops) - 1]}
