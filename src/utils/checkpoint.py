"""Checkpoint io: atomic writes and architecture-checked loading of network weights."""
import json
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
    assign_weights(net, weights, path, f'the x{net.scale} IRN {net.block_num}')
    return block_num


def assign_weights(net, weights, path, network):
    """Set every parameter of ``net`` from ``{name: array}`` after checking names and shapes.

    ``network`` names the network in the one-line error (e.g. "the x2 IRN [8]").
    """
    params = {p.name: p for p in net.get_parameters()}
    missing = sorted(set(params) - set(weights))
    extra = sorted(set(weights) - set(params))
    if missing or extra:
        what = f'missing {missing[:3]}' if missing else f'unexpected {extra[:3]}'
        raise IRNError(f'{path}: does not match {network}: {what} '
                       f'({len(missing)} missing, {len(extra)} unexpected keys)')
    for name, p in params.items():
        if tuple(weights[name].shape) != tuple(p.shape):
            raise IRNError(f'{path}: {name} has shape {tuple(weights[name].shape)}, '
                           f'the network expects {tuple(p.shape)}')
    for name, p in params.items():
        p.set_data(ms.Tensor(weights[name].astype(np.float32)))


# ---------------------------------------------------------------- training state (resume)
STATE_KEY = 'irn_train_state'  # json: iteration, numpy RNG state, counters, config facts
STATE_PREFIX = 'state_'


def _optimizer_own_params(net, optimizer):
    """The optimizer's own parameters (moments, step): everything that is not a network weight."""
    net_names = {p.name for p in net.get_parameters()}
    own = {}
    for p in optimizer.get_parameters():
        if p.name not in net_names:
            own[p.name] = p
    return own


def save_train_state(path, net, optimizer, state, block_num):
    """Write a resumable training state atomically.

    Holds the network weights (as ``net.<name>``, so :func:`load_weights` reads them), the
    optimizer's own parameters (``moment1.*``, ``moment2.*``, ``adam_step``) and ``state``, a
    json-serialisable dict (iteration, numpy generator state, counters).
    """
    entries = [{'name': 'net.' + p.name, 'data': ms.Tensor(p.asnumpy())} for p in net.get_parameters()]
    entries += [{'name': name, 'data': ms.Tensor(p.asnumpy())}
                for name, p in _optimizer_own_params(net, optimizer).items()]
    meta = {ARCH_KEY: ','.join(str(b) for b in block_num), STATE_KEY: json.dumps(state)}
    atomic_save(lambda tmp: ms.save_checkpoint(entries, tmp, append_dict=meta), path)


def load_train_state(path, net, optimizer):
    """Restore weights and optimizer state written by :func:`save_train_state`; return its dict.

    Raises IRNError naming the file when it is not a training state or does not fit the
    network / optimizer (different scale, blocks or missing moments).
    """
    block_num = load_weights(net, path)
    raw = ms.load_checkpoint(path)
    if STATE_KEY not in raw:
        raise IRNError(f'{path}: holds network weights only, not a training state to resume')
    own = _optimizer_own_params(net, optimizer)
    missing = sorted(set(own) - set(raw))
    if missing:
        raise IRNError(f'{path}: optimizer state incomplete, missing {missing[:3]} '
                       f'({len(missing)} entries)')
    for name, p in own.items():
        value = raw[name].asnumpy()
        if tuple(value.shape) != tuple(p.shape):
            raise IRNError(f'{path}: {name} has shape {tuple(value.shape)}, expected {tuple(p.shape)}')
        p.set_data(ms.Tensor(value.astype(np.float32)))
    state = json.loads(str(raw[STATE_KEY]))
    state['block_num'] = block_num
    return state


def state_path(folder, iteration):
    """``folder/state_00001234.ckpt``: the training state after ``iteration`` updates."""
    return os.path.join(folder, f'{STATE_PREFIX}{int(iteration):08d}.ckpt')


def list_train_states(folder):
    """Training-state files in ``folder``, oldest (lowest iteration) first."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder)
             if n.startswith(STATE_PREFIX) and n.endswith('.ckpt') and n[len(STATE_PREFIX):-5].isdigit()]
    return [os.path.join(folder, n) for n in sorted(names, key=lambda n: int(n[len(STATE_PREFIX):-5]))]


def prune_train_states(folder, keep_last):
    """Delete all but the newest ``keep_last`` training states (``keep_last <= 0`` keeps all)."""
    if keep_last <= 0:
        return []
    old = list_train_states(folder)[:-keep_last]
    for path in old:
        os.remove(path)
    return old
