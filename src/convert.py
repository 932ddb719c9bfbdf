"""Convert the authors' PyTorch weights (.pth: IRN, IRN_LD, IRN_E, IRN-Color, SAIN, ...) to a MindSpore
checkpoint, without PyTorch.

Two ``torch.save`` formats are read:

* zip (torch >= 1.6): ``data.pkl``, a pickle whose tensors refer to raw storages by key, and
  ``data/<key>`` files with the little-endian bytes;
* legacy (torch 0.1.10 - 1.5, e.g. torchvision's ``vgg19-dcbb9e9d.pth``): one stream of
  pickles, the magic number, the format version (1001), a system-info dict, the object, the
  list of storage keys, then each storage as an int64 element count and its raw bytes.

Only the handful of classes a state dict uses may be unpickled.

Usage: python -m src.convert IRN_x4.pth irn_x4.ckpt [--scale 4]   (IRN_LD x3: --scale 3)
       python -m src.convert SAINx2_JPEG.pth sain_x2_jpeg.ckpt [--scale 2]
       python -m src.convert IRN_color.pth irn_color.ckpt [--model IRN-Color]
       python -m src.convert CRM_x2_q90.pth crm_x2_q90.ckpt            (the CRM of IRN + JPEG)
       python -m src.convert --vgg19 vgg19-dcbb9e9d.pth vgg19_features.ckpt   (IRN+'s VGG19)
"""
import argparse
import collections
import pickle
import re
import sys
import tarfile
import zipfile

import numpy as np

from src.utils.errors import IRNError

_DTYPES = {'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
           'LongStorage': np.int64, 'IntStorage': np.int32, 'BoolStorage': np.bool_,
           'ByteStorage': np.uint8, 'BFloat16Storage': None}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_VERSION = 1001


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Storage:
    """A storage (or a view of one, legacy format): ``root`` holds the data once it is read."""

    def __init__(self, dtype, numel, root=None, offset=0):
        self.dtype, self.numel, self.offset = np.dtype(dtype).newbyteorder('<'), numel, offset
        self.root = root if root is not None else self
        self.data = None

    def array(self):
        return self.root.data[self.offset:self.offset + self.numel]


class _Tensor:
    """A tensor waiting for its storage's bytes (legacy files store them after the pickle)."""

    def __init__(self, storage=None, offset=0, size=(), stride=()):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):  # torch < 0.4: Tensor.__reduce__ -> (cls, (), state)
        self.storage, self.offset, self.size, self.stride = state[:4]

    def to_numpy(self):
        data = self.storage.array()
        if not self.size:
            return data[self.offset:self.offset + 1].reshape(()).copy()
        extent = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride)) + 1
        if min(self.size) > 0 and (extent > data.size or min(self.stride) < 0):
            raise ValueError(f'a tensor of size {tuple(self.size)} overruns its storage')
        return np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=tuple(self.size),
            strides=tuple(int(s) * data.itemsize for s in self.stride)).copy()


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    return data


_TENSOR_CLASSES = {name.replace('Storage', 'Tensor') for name in _DTYPES}


class _PthUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, path, archive=None, prefix=None):
        super().__init__(fileobj)
        self.path, self.archive, self.prefix = path, archive, prefix
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
            return _rebuild_tensor
        if module == 'torch._utils' and name == '_rebuild_parameter':
            return _rebuild_parameter
        if module == 'torch' and name in _DTYPES:
            return _StorageType(name)
        if module == 'torch' and name in _TENSOR_CLASSES:
            return _Tensor
        raise IRNError(f'{self.path}: unsupported object {module}.{name} in the pickle '
                       '(not a plain state_dict)')

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != 'storage':
            raise IRNError(f'{self.path}: unsupported persistent object {str(pid)[:60]}')
        storage_type, key, numel = pid[1], pid[2], pid[4]
        dtype = _DTYPES.get(getattr(storage_type, 'name', None))
        if dtype is None:
            raise IRNError(f'{self.path}: unsupported storage {getattr(storage_type, "name", "?")}')
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, numel)
            if self.archive is not None:  # zip: the bytes are at hand
                raw = self.archive.read(f'{self.prefix}/data/{key}')
                data = np.frombuffer(raw, dtype=self.storages[key].dtype)
                if data.size < numel:
                    raise IRNError(f'{self.path}: storage {key} is truncated')
                self.storages[key].data = data
        root = self.storages[key]
        view = pid[5] if len(pid) == 6 else None
        if view is not None:  # legacy: (view key, element offset, view size)
            return _Storage(dtype, view[2], root, view[1])
        return root


def _load_zip(path, archive):
    pkls = [n for n in archive.namelist() if n.endswith('/data.pkl')]
    if len(pkls) != 1:
        raise IRNError(f'{path}: no data.pkl inside, not a torch.save() file')
    with archive.open(pkls[0]) as f:
        return _PthUnpickler(f, path, archive, pkls[0][:-len('/data.pkl')]).load()


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f'global {module}.{name} where plain data was expected')


def _load_legacy(path, f):
    header = [_PlainUnpickler(f).load() for _ in range(3)]  # magic, version, system info
    if header[1] != _LEGACY_VERSION or not isinstance(header[2], dict):
        raise IRNError(f'{path}: legacy torch.save format version {header[1]} is not supported')
    if not header[2].get('little_endian', True):
        raise IRNError(f'{path}: written on a big-endian machine, not supported')
    unpickler = _PthUnpickler(f, path)
    state = unpickler.load()
    for key in _PlainUnpickler(f).load():
        storage = unpickler.storages.get(key)
        count = np.frombuffer(f.read(8), '<i8')
        if storage is None or count.size != 1 or int(count[0]) != storage.numel:
            raise IRNError(f'{path}: storage {key} does not match its description (corrupt file)')
        raw = f.read(storage.numel * storage.dtype.itemsize)
        if len(raw) < storage.numel * storage.dtype.itemsize:
            raise IRNError(f'{path}: storage {key} is truncated')
        storage.data = np.frombuffer(raw, storage.dtype)
    return state


def _is_legacy(f):
    try:
        return _PlainUnpickler(f).load() == _LEGACY_MAGIC
    except Exception:  # any non-pickle content: not this format
        return False
    finally:
        f.seek(0)


def read_pth(path):
    """Read a PyTorch ``state_dict`` .pth (zip or legacy format) into ``{name: np.ndarray}``."""
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        raise IRNError(f'{path}: file not found') from None
    except OSError as exc:
        raise IRNError(f'{path}: cannot be read ({exc.strerror})') from None
    with f:
        try:
            is_zip = zipfile.is_zipfile(f)
            f.seek(0)
            if is_zip:
                with zipfile.ZipFile(f) as archive:
                    state = _load_zip(path, archive)
            elif _is_legacy(f):
                state = _load_legacy(path, f)
            elif tarfile.is_tarfile(path):
                raise IRNError(f'{path}: torch.save tar format (torch < 0.1.10) is not supported; '
                               'load and re-save it with torch')
            else:
                raise IRNError(f'{path}: not a PyTorch .pth file (truncated or another format)')
        except IRNError:
            raise
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError,
                AttributeError, zipfile.BadZipFile, OSError) as exc:
            raise IRNError(f'{path}: corrupt or truncated .pth ({type(exc).__name__}: {exc})') from None
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']
    if not isinstance(state, dict):
        raise IRNError(f'{path}: does not hold a state_dict')
    try:
        return collections.OrderedDict(
            (k, v.to_numpy() if isinstance(v, _Tensor) else v) for k, v in state.items())
    except (TypeError, ValueError, AttributeError) as exc:  # a storage never filled, bad strides
        raise IRNError(f'{path}: corrupt or truncated .pth ({type(exc).__name__}: {exc})') from None


_KEY = re.compile(r'^operations\.(\d+)\.(haar_weights|conv_weights|[FGH]\.conv[1-5]\.(weight|bias))$')


def _layout(kinds, state, path):
    """Operation kinds in order ('haar' / 'conv' / 'block') -> the architecture they build."""
    from src.network.irn import arch_record
    n = len(kinds)
    if kinds[0] == 'conv':  # IRN_LD: one ConvDownsampling, then coupling blocks
        if 'conv' in kinds[1:] or 'haar' in kinds:
            raise IRNError(f'{path}: a ConvDownsampling must be the only downsampling (operations.0)')
        shape = state['operations.0.conv_weights'].shape
        s = int(round(shape[0] ** 0.5)) if len(shape) == 2 else 0
        if s < 2 or shape != (s * s, s * s):
            raise IRNError(f'{path}: operations.0.conv_weights has shape {shape}, expected (s*s, s*s)')
        return arch_record(s, [n - 1], 'conv', True)
    haar = [i for i, k in enumerate(kinds) if k == 'haar']
    if not haar or haar[0] != 0:
        raise IRNError(f'{path}: operations.0 is not a Haar transform or a ConvDownsampling')
    for level, i in enumerate(haar):
        w = state[f'operations.{i}.haar_weights']
        if w.shape != (3 * 4 ** (level + 1), 1, 2, 2):
            raise IRNError(f'{path}: operations.{i}.haar_weights has shape {w.shape}, expected '
                           f'{(3 * 4 ** (level + 1), 1, 2, 2)}')
    if len(haar) > 1 and haar == list(range(len(haar))):  # IRN_E: all Haar levels first
        return arch_record(2 ** len(haar), [n - len(haar)], 'haar', True)
    bounds = haar + [n]
    block_num = [bounds[i + 1] - bounds[i] - 1 for i in range(len(haar))]
    return arch_record(2 ** len(haar), block_num)


def torch_to_irn(state, path='<state>'):
    """Map the authors' parameter names to ours and infer the architecture.

    Returns ``(weights, arch)`` with ``arch`` as ``InvRescaleNet.arch()``: IRN, IRN_LD
    (``operations.0.conv_weights``, s*s x s*s) or IRN_E (all Haar levels first). Haar weights
    are checked and dropped (ours are fixed).
    """
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    bad = [k for k in state if not _KEY.match(k)]
    if bad:
        raise IRNError(f'{path}: unexpected key {bad[0]!r} ({len(bad)} unknown keys): not an IRN state_dict')
    ops = sorted({int(_KEY.match(k).group(1)) for k in state})
    if ops != list(range(len(ops))):
        raise IRNError(f'{path}: operations are not numbered 0..{len(ops) - 1}: missing operations')
    kinds = ['haar' if f'operations.{i}.haar_weights' in state else
             'conv' if f'operations.{i}.conv_weights' in state else 'block' for i in ops]
    arch = _layout(kinds, state, path)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if 'haar' not in k}
    return weights, arch


def convert_crm(src, dst):
    """Convert an authors' CRM .pth to our CRM .ckpt (layout recorded). Returns the layout."""
    from src.compression import save_crm
    from src.network.rrdb import crm_state_to_ours
    weights, layout = crm_state_to_ours(read_pth(src), src)
    save_crm(weights, layout, dst)
    return layout


def convert(src, dst, scale=None, model=None):
    """Convert ``src`` (.pth) to ``dst`` (.ckpt); checks every key, shape and ``scale``.

    The model is the one whose key names the file holds (:func:`src.models.checkpoint_model`:
    IRN's ``operations.N`` incl. IRN_LD / IRN_E, IRN-Color's 3x3 colour matrix, SAIN's
    ``down_operations`` / ``comp_operations`` / ``gmm``, ...); ``model``, if given, must be it.
    Returns ``(model name, architecture record)``.
    """
    from src.config import load_config
    from src.models import checkpoint_model, create_model
    cls, _ = checkpoint_model(src)
    if model is not None and cls.name != model:
        raise IRNError(f'{src}: holds {cls.name} weights, not an {model} net (--model {model})')
    m = create_model(load_config(model=cls.name))
    net = m.load_net(src, expect_scale=scale)
    if scale is not None and net.scale == 1:
        raise IRNError(f'{src}: --scale does not apply to {cls.name} (it does not rescale)')
    m.save_net(dst, net)
    return cls.name, net.arch()


def convert_vgg19(src, dst):
    """torchvision's ``vgg19`` .pth -> ``features.0..34`` .ckpt for IRN+'s feature loss.

    Checks every name and shape (:func:`src.network.vgg.vgg19_from_torch`); returns the number
    of parameters written.
    """
    from src.network.vgg import vgg19_from_torch, write_vgg19_features
    weights = vgg19_from_torch(read_pth(src), src)
    write_vgg19_features(weights, dst)
    return sum(v.size for v in weights.values())


def main(argv=None):
    from src.models import MODELS
    parser = argparse.ArgumentParser(description="Convert the authors' IRN-family .pth weights "
                                     "(IRN, IRN-Color, SAIN, the CRM; torchvision's VGG19 for "
                                     'IRN+ with --vgg19) to a MindSpore .ckpt')
    parser.add_argument('src', help='PyTorch state_dict, e.g. IRN_x4.pth, IRN_color.pth, '
                        'SAINx2_JPEG.pth, CRM_x2_q90.pth or vgg19-dcbb9e9d.pth')
    parser.add_argument('dst', help='output MindSpore checkpoint, e.g. irn_x4.ckpt')
    parser.add_argument('--scale', type=int, choices=range(2, 9), metavar='S',
                        help='expected scale (checked): 2/4/8, or 2..8 for IRN_LD')
    parser.add_argument('--model', choices=tuple(MODELS),
                        help='expected model (checked; default: read from the keys)')
    parser.add_argument('--vgg19', action='store_true',
                        help="src is torchvision's vgg19 file: keep features.0-34 for IRN+'s "
                             'feature loss (path.pretrain_model_F)')
    args = parser.parse_args(argv)
    try:
        if args.vgg19:
            count = convert_vgg19(args.src, args.dst)
            print(f'wrote {args.dst}: VGG19 features.0-34 (16 convolutions, {count} parameters)')
            return 0
        from src.network.rrdb import is_crm_state
        if is_crm_state(read_pth(args.src)):
            layout = convert_crm(args.src, args.dst)
            print(f'wrote {args.dst}: CRM (RRDBNet) '
                  + ' '.join(f'{k} {v}' for k, v in layout.items()))
            return 0
        name, arch = convert(args.src, args.dst, args.scale, args.model)
    except IRNError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    from src.utils.checkpoint import describe_arch
    print(f'wrote {args.dst}: {name} {describe_arch(arch)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
