"""IRN networks and their invertible building blocks."""
from src.network.irn import InvRescaleNet, Quantization

__all__ = ['InvRescaleNet', 'Quantization', 'build_network']


def build_network(opt):
    """Build the network described by a parsed config (``network_G`` section)."""
    net_opt = opt['network_G']
    return InvRescaleNet(net_opt['block_num'], channel_in=net_opt['in_nc'],
                         seed=opt['train']['manual_seed'] if 'train' in opt else 0)
