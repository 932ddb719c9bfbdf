"""Device and execution-mode set-up."""
import os

import mindspore as ms

from src.utils.errors import IRNError


GRAPH_CALL_DEPTH = 4000


def setup_device(target='CPU', graph=True, device_id=None):
    """Select the backend and graph / PyNative mode; GPU and Ascend take ``DEVICE_ID`` by default.

    On CPU, the DenseBlock convolutions use the oneDNN kernels of :mod:`src.network.fast_conv`.
    """
    if target not in ('CPU', 'GPU', 'Ascend'):
        raise IRNError(f'device_target must be CPU, GPU or Ascend, got {target!r}')
    if device_id is None:
        device_id = int(os.environ.get('DEVICE_ID', '0')) if target != 'CPU' else None
    try:
        if device_id is None:
            ms.set_device(target)
        else:
            ms.set_device(target, device_id)
    except (RuntimeError, ValueError) as exc:
        raise IRNError(f'cannot use device {target}: {str(exc).splitlines()[0]}') from None
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    select_conv(target)
    return target


def select_conv(target):
    """Choose the convolution backend (see :mod:`src.network.fast_conv`); returns its name.

    Also raises MindSpore's graph call-depth limit: the x8 plain training graph (24 coupling
    blocks, forward + upscaling + gradients) exceeds the default of 1000.
    """
    ms.set_recursion_limit(GRAPH_CALL_DEPTH)
    from src.network import fast_conv
    return fast_conv.select(target)
