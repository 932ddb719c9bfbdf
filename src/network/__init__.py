"""IRN networks and their invertible building blocks."""
from src.network.irn import InvRescaleNet, Quantization

__all__ = ['InvRescaleNet', 'Quantization', 'build_from_arch']


def build_from_arch(arch, seed=0, channel_in=3):
    """A fresh InvRescaleNet of the architecture record ``arch`` (``InvRescaleNet.arch()``;
    keys an older record lacks take ``InvRescaleNet.ARCH_DEFAULTS``)."""
    arch = {**InvRescaleNet.ARCH_DEFAULTS, **arch}
    return InvRescaleNet(arch['block_num'], channel_in=channel_in, seed=seed, scale=arch['scale'],
                         use_ConvDownsampling=arch['downsampling'] == 'conv',
                         down_first=arch['down_first'])
