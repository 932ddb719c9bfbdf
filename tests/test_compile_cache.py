"""The compile cache's keying: one folder per checkout, source tree and graph plan; stale
folders go when the code changes; a graph is only ever loaded for the plan it was saved for."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from src.utils import compile_cache
from src.utils.compile_cache import cache_folder, graph_cache, source_digest


def _tree(path, text='x = 1\n'):
    (path / 'src' / 'network').mkdir(parents=True)
    (path / 'train.py').write_text('import src\n')
    (path / 'src' / 'network' / 'blocks.py').write_text(text)
    (path / 'src' / 'network' / 'kernel.cc').write_text('int f();\n')
    return path


def test_folder_follows_source_key_and_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv('IRN_COMPILE_CACHE', raising=False)
    a = _tree(tmp_path / 'a')
    cache = str(tmp_path / 'cache')
    key = {'graph': 'train_step', 'batch': 16, 'net': {'block_num': [8, 8]}}
    first = cache_folder(key, a, cache)
    assert first == cache_folder(dict(reversed(list(key.items()))), a, cache)  # order-free
    assert first.startswith(cache) and first != cache_folder({**key, 'batch': 8}, a, cache)
    digest = source_digest(a)
    for edit in ('src/network/blocks.py', 'src/network/kernel.cc', 'train.py'):
        with open(a / edit, 'a') as f:
            f.write('# edited\n')
        assert source_digest(a) != digest, edit  # any source edit changes the folder
        digest = source_digest(a)
    (a / 'notes.txt').write_text('not source')
    (a / 'src' / '__pycache__').mkdir()
    (a / 'src' / '__pycache__' / 'x.py').write_text('cached')
    assert source_digest(a) == digest  # other files do not
    b = _tree(tmp_path / 'b')  # another checkout of identical sources: its own folder
    assert os.path.dirname(os.path.dirname(cache_folder(key, b, cache))) != \
        os.path.dirname(os.path.dirname(cache_folder(key, a, cache)))
    monkeypatch.setenv('IRN_COMPILE_CACHE', 'off')
    assert cache_folder(key, a) is None


def test_code_change_prunes_only_this_checkouts_old_folders(tmp_path, monkeypatch):
    a, b = _tree(tmp_path / 'a'), _tree(tmp_path / 'b')
    cache = str(tmp_path / 'cache')
    monkeypatch.setenv('MS_COMPILER_CACHE_ENABLE', '0')
    monkeypatch.setenv('MS_COMPILER_CACHE_PATH', str(tmp_path))
    folders = {}
    for name, tree in (('a_old', a), ('b', b)):
        monkeypatch.setitem(compile_cache._state, 'folder', None)
        with graph_cache({'k': 1}, tree, cache) as folder:
            assert os.environ['MS_COMPILER_CACHE_ENABLE'] == '1'
            assert os.environ['MS_COMPILER_CACHE_PATH'] == folder
        assert os.environ['MS_COMPILER_CACHE_ENABLE'] == '0'  # nothing else is cached
        folders[name] = folder
    with open(a / 'src' / 'network' / 'blocks.py', 'a') as f:
        f.write('y = 2\n')
    monkeypatch.setitem(compile_cache._state, 'folder', None)
    with graph_cache({'k': 1}, a, cache) as new:
        pass
    assert new != folders['a_old'] and os.path.isdir(new)
    assert not os.path.exists(os.path.dirname(folders['a_old']))  # old sources of a: gone
    assert os.path.isdir(folders['b'])  # the other checkout's cache is untouched
    with graph_cache({'k': 2}, a, cache) as second:  # one plan per process
        assert second is None and os.environ['MS_COMPILER_CACHE_ENABLE'] == '0'


_SCRIPT = '''
import sys
import numpy as np
import mindspore as ms
from mindspore import nn, Tensor
sys.path.insert(0, {root!r})
from src.utils.compile_cache import graph_cache
ms.set_device('CPU')
ms.set_context(mode=ms.GRAPH_MODE)

class Affine(nn.Cell):
    def construct(self, x):
        return x * 2 + 1

n = int(sys.argv[1])
with graph_cache({{'graph': 'affine', 'n': n}}, cache_root=sys.argv[2]):
    out = Affine()(Tensor(np.ones((n,), np.float32))).asnumpy()
print('OUT', out.tolist())
'''


def test_second_run_loads_the_graph_and_another_shape_gets_its_own(tmp_path):
    script = tmp_path / 'affine.py'
    script.write_text(_SCRIPT.format(root=ROOT))
    cache = str(tmp_path / 'cache')

    def run(n):
        res = subprocess.run([sys.executable, str(script), str(n), cache], capture_output=True,
                             text=True, check=True)
        return res.stdout.split('OUT ')[1].strip(), res.stderr

    assert run(3)[0] == '[3.0, 3.0, 3.0]'
    out, log = run(3)
    assert out == '[3.0, 3.0, 3.0]' and 'Use the compilation cache' in log
    # MindSpore alone would load the shape-3 graph here and return 3 values
    assert run(4)[0] == '[3.0, 3.0, 3.0, 3.0]'
    saved = [f for _, _, files in os.walk(cache) for f in files if f.endswith('.mindir')]
    assert len(saved) == 2


@pytest.fixture(autouse=True)
def _restore_state():
    saved = dict(compile_cache._state)
    yield
    compile_cache._state.update(saved)
