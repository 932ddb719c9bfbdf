"""Write a state dict in PyTorch's .pth zip format without PyTorch (for converter error tests).

The reader is proven on real torch.save files in tests/data; this writer only produces
variations of them (a key removed or added) in the same format.
"""
import io
import pickle
import sys
import types
import zipfile

import numpy as np


class FloatStorage:  # stands in for torch.FloatStorage when pickling
    pass


def _rebuild_tensor_v2(*args):
    raise AssertionError('only used as a pickle reference')


class _Tensor:
    def __init__(self, key, array):
        self.key, self.array = key, array

    def __reduce__(self):
        a = self.array
        stride = tuple(s // a.itemsize for s in a.strides)
        return _rebuild_tensor_v2, (('storage', FloatStorage, self.key, 'cpu', a.size), 0,
                                    a.shape, stride, False, None)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj[:1] == ('storage',) else None


def write_pth(path, state):
    """Write ``{name: float32 array}`` as ``torch.save(state_dict)`` would (zip, protocol 2)."""
    torch_mod, utils_mod = types.ModuleType('torch'), types.ModuleType('torch._utils')
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = 'torch', 'torch._utils'
    saved = {k: sys.modules.get(k) for k in ('torch', 'torch._utils')}
    sys.modules.update({'torch': torch_mod, 'torch._utils': utils_mod})
    try:
        tensors = {k: _Tensor(str(i), np.ascontiguousarray(v, np.float32))
                   for i, (k, v) in enumerate(state.items())}
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(tensors)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', buf.getvalue())
        for t in tensors.values():
            z.writestr(f'archive/data/{t.key}', t.array.tobytes())
