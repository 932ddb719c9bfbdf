"""Write a state dict in PyTorch's .pth formats without PyTorch (for converter tests).

The zip reader is proven on real torch.save files in tests/data; this writer produces
variations of them (a key removed or added) in the same format. The legacy stream format
(torch < 1.6, e.g. torchvision's vgg19-dcbb9e9d.pth) follows torch's ``_legacy_save``:
magic number, version 1001, system info, the object (storages as 6-tuple persistent ids),
the sorted storage keys, then each storage as an int64 element count and its bytes. Its
tensors are written as torch >= 0.4 does (``_rebuild_tensor_v2``) or, with ``old_tensors``,
as torch < 0.4 did (``torch.FloatTensor`` rebuilt by ``__setstate__``).
"""
import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class FloatStorage:  # stands in for torch.FloatStorage when pickling
    pass


class FloatTensor:  # stands in for torch.FloatTensor (torch < 0.4 pickles)
    pass


def _rebuild_tensor_v2(*args):
    raise AssertionError('only used as a pickle reference')


class _Tensor:
    def __init__(self, key, array, legacy=False, old=False):
        self.key, self.array, self.legacy, self.old = key, array, legacy, old

    def __reduce__(self):
        a = self.array
        stride = tuple(s // a.itemsize for s in a.strides)
        storage = ('storage', FloatStorage, self.key, 'cpu', a.size) + ((None,) if self.legacy else ())
        if self.old:
            return FloatTensor, (), (storage, 0, a.shape, stride)
        return _rebuild_tensor_v2, (storage, 0, a.shape, stride, False, None)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj[:1] == ('storage',) else None


def write_pth(path, state, legacy=False, old_tensors=False):
    """Write ``{name: float32 array}`` as ``torch.save(state_dict)`` would (protocol 2): the zip
    format, or with ``legacy`` the stream format of torch < 1.6 (see the module docstring)."""
    torch_mod, utils_mod = types.ModuleType('torch'), types.ModuleType('torch._utils')
    torch_mod.FloatStorage, torch_mod.FloatTensor = FloatStorage, FloatTensor
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage.__module__ = FloatTensor.__module__ = 'torch'
    _rebuild_tensor_v2.__module__ = 'torch._utils'
    saved = {k: sys.modules.get(k) for k in ('torch', 'torch._utils')}
    sys.modules.update({'torch': torch_mod, 'torch._utils': utils_mod})
    try:
        tensors = collections.OrderedDict(  # what state_dict() returns
            (k, _Tensor(str(i), np.ascontiguousarray(v, np.float32), legacy, old_tensors))
            for i, (k, v) in enumerate(state.items()))
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(tensors)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    if legacy:
        keys = sorted(t.key for t in tensors.values())
        arrays = {t.key: t.array for t in tensors.values()}
        with open(path, 'wb') as f:
            for header in (LEGACY_MAGIC, 1001, {'protocol_version': 1001, 'little_endian': True,
                                                'type_sizes': {'short': 2, 'int': 4, 'long': 4}}):
                pickle.dump(header, f, protocol=2)
            f.write(buf.getvalue())
            pickle.dump(keys, f, protocol=2)
            for key in keys:
                f.write(np.int64(arrays[key].size).tobytes() + arrays[key].tobytes())
        return
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', buf.getvalue())
        for t in tensors.values():
            z.writestr(f'archive/data/{t.key}', t.array.tobytes())
