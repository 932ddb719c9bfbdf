"""Mixed precision for IRN training (``train.amp_level``).

``O0``: everything in float32 (default, the reference numbers).
``O1``: only the dense sub-networks F, G, H of every coupling block (all the convolutions
that carry the cost) run in float16; their inputs are cast to float16 and their outputs back
to float32. The Haar transforms, sigmoid, exp, the division of the inverse, the
quantisation and every loss sum stay in float32, and the master weights and Adam state
remain float32. (The earlier MindSpore port trained in pure fp16, O3, with fp16 loss sums.)
Parameter names are unchanged, so checkpoints are interchangeable with O0.
"""
from src.network.blocks import InvBlockExp
from src.utils.errors import IRNError

__all__ = ['apply_amp']


def apply_amp(net, level):
    """Apply ``level`` ('O0' or 'O1') to an InvRescaleNet in place; returns ``net``."""
    if level not in ('O0', 'O1'):
        raise IRNError(f"train.amp_level must be 'O0' or 'O1', got {level!r}")
    for _, cell in net.cells_and_names():
        if isinstance(cell, InvBlockExp):
            cell.half = level == 'O1'
    return net
