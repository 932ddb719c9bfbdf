"""Checkpoint io: atomic writes, architecture-checked loading, resumable training states.

Every checkpoint records the architecture it holds (``irn_arch``: json of the network's
``arch()`` plus the model name), so a file made for another model, scale or layout is refused in
one line instead of failing inside MindSpore. Files written before the family existed carry only
``irn_block_num`` and are read as base IRN.
"""
import json
import os

import numpy as np
import mindspore as ms

from src.utils.atomic import atomic_write
from src.utils.errors import IRNError

ARCH_KEY = 'irn_arch'              # json: {'model': 'IRN', 'net': 'InvRescaleNet', 'scale': 4, ...}
LEGACY_ARCH_KEY = 'irn_block_num'  # "8,8" (base IRN checkpoints of earlier versions)


def atomic_save(write, path, what='checkpoint'):
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file.

    A failed write (a full disk...) is an IRNError naming ``path``; the file that was there
    before is untouched (:func:`src.utils.atomic.atomic_write`).
    """
    atomic_write(write, path, what)


class _QuietMindSpore:
    """Silence MindSpore's own logger (it prints a CRITICAL line when a save fails, before our
    one-line error)."""

    def __enter__(self):
        try:
            from mindspore.log import _get_logger
            self.logger = _get_logger()
            self.was = self.logger.disabled
            self.logger.disabled = True
        except (ImportError, AttributeError):  # another MindSpore version: keep its messages
            self.logger = None
        return self

    def __exit__(self, *exc):
        if self.logger is not None:
            self.logger.disabled = self.was


def describe_arch(arch):
    """'x4 with block_num [8, 8] (IRN)': how messages name an architecture (a network without
    a scale, e.g. IRN+'s discriminator: 'in_nc 3, nf 64 (Discriminator_VGG_128)')."""
    if not arch:
        return 'an unrecorded architecture'
    rest = ', '.join(f'{k} {v}' for k, v in arch.items() if k not in ('net', 'model', 'scale'))
    scale = f"x{arch['scale']}" if 'scale' in arch else ''
    return f"{scale}{' with ' if scale and rest else ''}{rest} ({arch.get('model') or arch.get('net')})"


def _save(entries, path, arch, extra=None):
    meta = {ARCH_KEY: json.dumps(arch)}
    if arch.get('net') == 'InvRescaleNet' and 'block_num' in arch:  # readable by older versions
        meta[LEGACY_ARCH_KEY] = ','.join(str(b) for b in arch['block_num'])
    meta.update(extra or {})
    what = 'training state' if extra and STATE_KEY in extra else 'checkpoint'
    with _QuietMindSpore():
        atomic_save(lambda tmp: ms.save_checkpoint(entries, tmp, append_dict=meta), path, what)


def save_weights(named_arrays, path, arch, extra=None):
    """Write ``{name: array}`` as a MindSpore checkpoint tagged with ``arch`` (a json-able dict)."""
    entries = [{'name': k, 'data': ms.Tensor(np.asarray(v))} for k, v in named_arrays.items()]
    _save(entries, path, arch, extra)


def _load_ckpt(path):
    if not os.path.isfile(path):
        raise IRNError(f'{path}: checkpoint not found')
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long texts
        raise IRNError(f'{path}: not a readable MindSpore checkpoint ({type(exc).__name__})') from None


def _arch_of(raw):
    if ARCH_KEY in raw:
        return json.loads(str(raw.pop(ARCH_KEY)))
    if LEGACY_ARCH_KEY in raw:
        blocks = [int(b) for b in str(raw.pop(LEGACY_ARCH_KEY)).split(',')]
        return {'net': 'InvRescaleNet', 'scale': 2 ** len(blocks), 'block_num': blocks}
    return None


def read_checkpoint(path, from_torch=None, group='net'):
    """Network weights and recorded architecture of a .ckpt, or of an authors' .pth.

    Args:
        path (str): our .ckpt (weights or a training state) or a PyTorch state_dict .pth.
        from_torch: ``(state_dict, path) -> (weights, arch)`` mapping the authors' names to
            ours (default: the IRN family's, :func:`src.convert.torch_to_irn`).

    Returns:
        (dict name -> np.ndarray, arch dict or None). From a training state, the entries of
        ``group`` (default the main network, ``net``) without their prefix; other entries
        (other networks, optimizers) are dropped.
    """
    if path.endswith('.pth'):
        if not os.path.isfile(path):
            raise IRNError(f'{path}: checkpoint not found')
        from src.convert import read_pth, torch_to_irn
        return (from_torch or torch_to_irn)(read_pth(path), path)
    raw = _load_ckpt(path)
    raw.pop(STATE_KEY, None)
    arch = _arch_of(raw)
    weights = {k: v.asnumpy() for k, v in raw.items() if hasattr(v, 'asnumpy')}
    prefix = group + '.'
    if any(k.startswith(prefix) for k in weights):
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    return weights, arch


def peek_arch(path):
    """The architecture record of a .ckpt (None for a .pth or a file that records none)."""
    if path.endswith('.pth'):
        if not os.path.isfile(path):
            raise IRNError(f'{path}: checkpoint not found')
        return None
    return _arch_of(_load_ckpt(path))


def read_weights(path):
    """``(weights, block_num)`` of an IRN checkpoint (block_num None when not recorded)."""
    weights, arch = read_checkpoint(path)
    return weights, (arch or {}).get('block_num')


def check_arch(stored, net, path):
    """IRNError naming ``path`` when the recorded architecture is not ``net.arch()``.

    Keys a record lacks take the network class's ``ARCH_DEFAULTS`` (older files).
    """
    if stored is None:
        return
    mine = net.arch()
    defaults = getattr(type(net), 'ARCH_DEFAULTS', {})
    keys = [k for k in dict.fromkeys(list(mine) + list(stored)) if k != 'model']
    if any(stored.get(k, defaults.get(k)) != mine.get(k, defaults.get(k)) for k in keys):
        raise IRNError(f'{path}: checkpoint is for scale {describe_arch(stored)}, but the network '
                       f'is {describe_arch(mine)}')


def load_into(net, weights, path):
    """Set ``net``'s parameters from ``weights`` after checking every name and shape."""
    params = {p.name: p for p in net.get_parameters()}
    missing = sorted(set(params) - set(weights))
    extra = sorted(set(weights) - set(params))
    if missing or extra:
        what = f'missing {missing[:3]}' if missing else f'unexpected {extra[:3]}'
        raise IRNError(f'{path}: does not match the {describe_arch(net.arch())} network: {what} '
                       f'({len(missing)} missing, {len(extra)} unexpected keys)')
    for name, p in params.items():
        if tuple(weights[name].shape) != tuple(p.shape):
            raise IRNError(f'{path}: {name} has shape {tuple(weights[name].shape)}, '
                           f'the network expects {tuple(p.shape)}')
    for name, p in params.items():  # float32, or the parameter's own type (BatchNorm counts)
        kind = np.float32 if p.dtype == ms.float32 else ms.dtype_to_nptype(p.dtype)
        p.set_data(ms.Tensor(np.asarray(weights[name]).astype(kind)))


def load_weights(net, path):
    """Load ``path`` (.ckpt weights / training state, or an authors' .pth) into ``net``.

    The recorded architecture must be ``net.arch()``; every key and shape must match. A .pth is
    mapped with ``net.from_torch`` when the network has one. Returns the recorded block layout
    (``block_num``, None when the file records none).
    """
    weights, stored = read_checkpoint(path, getattr(net, 'from_torch', None))
    check_arch(stored, net, path)
    load_into(net, weights, path)
    return (stored or {}).get('block_num')


# ---------------------------------------------------------------- training state (resume)
STATE_KEY = 'irn_train_state'  # json: iteration, numpy RNG state, counters, config facts
STATE_PREFIX = 'state_'


def _grouped(cells):
    """``{group: Cell}`` -> ``{'group.param': Parameter}``, each Parameter once (first group wins).

    A network's parameters are also held by its optimizer; they are stored under the network.
    """
    seen, out = set(), {}
    for group, cell in cells.items():
        for p in cell.get_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out[f'{group}.{p.name}'] = p
    return out


def save_train_state(path, cells, state, arch):
    """Write a resumable training state atomically.

    Args:
        path (str): destination (``state_<iter>.ckpt``).
        cells (dict): ``{group: Cell}``: networks first (the main one as ``net``, so
            :func:`load_weights` reads the file), then optimizers (moments, step counts), e.g.
            ``{'net': G, 'opt': adam}`` or ``{'net': G, 'netD': D, 'opt': adam_g, 'optD': adam_d}``.
            BatchNorm statistics are parameters of their network and come along.
        state (dict): json-serialisable loop state (iteration, generator state, counters).
        arch (dict): the main network's architecture record.
    """
    entries = [{'name': name, 'data': ms.Tensor(p.asnumpy())} for name, p in _grouped(cells).items()]
    _save(entries, path, arch, {STATE_KEY: json.dumps(state)})


def load_train_state(path, cells):
    """Restore what :func:`save_train_state` wrote into ``cells``; return the loop-state dict.

    Raises IRNError naming the file when it is not a training state, was made for another
    architecture than ``cells['net']``, or lacks or misshapes any entry of ``cells``.
    """
    raw = _load_ckpt(path)
    if STATE_KEY not in raw:
        raise IRNError(f'{path}: holds network weights only, not a training state to resume')
    state = json.loads(str(raw.pop(STATE_KEY)))
    check_arch(_arch_of(raw), cells['net'], path)
    wanted = _grouped(cells)
    missing = sorted(set(wanted) - set(raw))
    if missing:
        raise IRNError(f'{path}: training state incomplete for this model, missing {missing[:3]} '
                       f'({len(missing)} entries)')
    for name, p in wanted.items():
        value = raw[name].asnumpy()
        if tuple(value.shape) != tuple(p.shape):
            raise IRNError(f'{path}: {name} has shape {tuple(value.shape)}, expected {tuple(p.shape)}')
    for name, p in wanted.items():
        p.set_data(ms.Tensor(raw[name].asnumpy()))
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
