"""IRN networks and their invertible building blocks."""
from src.network.irn import InvRescaleNet, Quantization

__all__ = ['InvRescaleNet', 'Quantization', 'build_network', 'build_from_arch']


def build_from_arch(arch, seed=0, channel_in=3):
    """A fresh InvRescaleNet of the architecture ``arch`` (the dict ``InvRescaleNet.arch()``
    returns and checkpoints record)."""
    return InvRescaleNet(arch['block_num'], channel_in=channel_in, seed=seed, scale=arch['scale'],
                         use_ConvDownsampling=arch['downsampling'] == 'conv',
                         down_first=arch['down_first'])


def build_network(opt):
    """Build the network described by a parsed config (``network_G`` section)."""
    net_opt = opt['network_G']
    flags = net_opt['which_model_G']
    return InvRescaleNet(net_opt['block_num'], channel_in=net_opt['in_nc'],
                         seed=opt['train']['manual_seed'] if 'train' in opt else 0,
                         scale=net_opt['scale'],
                         use_ConvDownsampling=bool(flags.get('use_ConvDownsampling')),
                         down_first=bool(flags.get('down_first')))
