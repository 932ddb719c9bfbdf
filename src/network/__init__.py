"""IRN networks and their invertible building blocks."""
from src.network.irn import InvRescaleNet, Quantization

__all__ = ['InvRescaleNet', 'Quantization']
