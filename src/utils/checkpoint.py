"""Checkpoint io: atomic writes and architecture-checked loading of network weights."""
import os
import tempfile

import numpy as np
import mindspore as ms

from src.utils.errors import IRNError

ARCH_KEY = 'irn_block_num'  # stored beside the weights: "8,8" for x4


def atomic_save(write, path):
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights(named_arrays, path, block_num, extra=None):
    """Write ``{name: array}`` as a MindSpore checkpoint tagged with the architecture."""
    entries = [{'name': k, 'data': ms.Tensor(np.asarray(v))} for k, v in named_arrays.items()]
    meta = {ARCH_KEY: ','.join(str(b) for b in block_num)}
    meta.update(extra or {})
    atomic_save(lambda tmp: ms.save_checkpoint(entries, tmp, append_dict=meta), path)


def read_weights(path):
    """Read network weights from a MindSpore .ckpt or an authors' PyTorch .pth file.

    Returns:
        (dict name -> np.ndarray, block_num list or None when the file does not say).
    """
    if not os.path.isfile(path):
        raise IRNError(f'{path}: checkpoint not found')
    if path.endswith('.pth'):
        from src.convert import torch_state_to_ours, read_pth
        weights, block_num = torch_state_to_ours(read_pth(path), path)
        return weights, block_num
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long texts
        raise IRNError(f'{path}: not a readable MindSpore checkpoint ({type(exc).__name__})') from None
    block_num = None
    if ARCH_KEY in raw:
        block_num = [int(b) for b in str(raw.pop(ARCH_KEY)).split(',')]
    weights = {k: v.asnumpy() for k, v in raw.items() if hasattr(v, 'asnumpy')}
    return weights, block_num


def load_weights(net, path):
    """Load network weights into ``net`` after checking the file fits its architecture.

    Accepts a .ckpt written by this project (network weights or a training state, whose
    ``net.``-prefixed entries are used) or an authors' .pth. Raises IRNError naming the file
    when the scale / block layout differ, or a key is missing, extra or of the wrong shape.
    """
    weights, block_num = read_weights(path)
    if any(k.startswith('net.') for k in weights):
        weights = {k[4:]: v for k, v in weights.items() if k.startswith('net.')}
    if block_num is not None and list(block_num) != list(net.block_num):
        raise IRNError(f'{path}: checkpoint is for scale x{2 ** len(block_num)} with blocks '
                       f'{block_num}, but the network is x{net.scale} with blocks {net.block_num}')
    params = {p.name: p for p in net.get_parameters()}
    missing = sorted(set(params) - set(weights))
    extra = sorted(set(weights) - set(params))
    if missing or extra:
        what = f'missing {missing[:3]}' if missing else f'unexpected {extra[:3]}'
        raise IRNError(f'{path}: does not match the x{net.scale} IRN {net.block_num}: {what} '
                       f'({len(missing)} missing, {len(extra)} unexpected keys)')
    for name, p in params.items():
        if tuple(weights[name].shape) != tuple(p.shape):
            raise IRNError(f'{path}: {name} has shape {tuple(weights[name].shape)}, '
                           f'the network expects {tuple(p.shape)}')
    for name, p in params.items():
        p.set_data(ms.Tensor(weights[name].astype(np.float32)))
    return block_num
