"""Converter: the authors' .pth -> MindSpore .ckpt, and its error messages."""
import os

import numpy as np
import pytest

from conftest import DATA
from torch_pickle import write_pth
from src.convert import main, read_pth
from src.network import InvRescaleNet
from src.utils.checkpoint import load_weights, read_weights
from src.utils.errors import IRNError

PTH = os.path.join(DATA, 'irn_x4_tiny.pth')


def test_convert_roundtrip(tmp_path):
    dst = str(tmp_path / 'x4.ckpt')
    assert main([PTH, dst, '--scale', '4']) == 0
    weights, block_num = read_weights(dst)
    assert block_num == [1, 1]
    state = read_pth(PTH)
    for name, value in state.items():
        if 'haar' not in name:
            np.testing.assert_array_equal(weights[name], value)
    assert len(weights) == len([k for k in state if 'haar' not in k])


def test_fake_writer_matches_real_reader(tmp_path):
    state = read_pth(PTH)
    write_pth(str(tmp_path / 'copy.pth'), state)
    again = read_pth(str(tmp_path / 'copy.pth'))
    assert list(again) == list(state)
    for k in state:
        np.testing.assert_array_equal(again[k], state[k])


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0, err
    return err


def test_scale_mismatch(tmp_path, capsys):
    err = _error(capsys, [PTH, str(tmp_path / 'o.ckpt'), '--scale', '2'])
    assert 'x4' in err and '--scale 2' in err


def test_truncated(tmp_path, capsys):
    bad = tmp_path / 'cut.pth'
    bad.write_bytes(open(PTH, 'rb').read()[:100000])
    err = _error(capsys, [str(bad), str(tmp_path / 'o.ckpt')])
    assert 'cut.pth' in err and 'truncated' in err


def test_not_a_pth(tmp_path, capsys):
    bad = tmp_path / 'notes.pth'
    bad.write_text('hello')
    assert 'not a PyTorch .pth' in _error(capsys, [str(bad), str(tmp_path / 'o.ckpt')])
    assert 'not found' in _error(capsys, [str(tmp_path / 'nope.pth'), str(tmp_path / 'o.ckpt')])


def test_missing_and_extra_key(tmp_path, capsys):
    state = read_pth(PTH)
    missing = dict(state)
    del missing['operations.3.G.conv2.bias']
    write_pth(str(tmp_path / 'missing.pth'), missing)
    err = _error(capsys, [str(tmp_path / 'missing.pth'), str(tmp_path / 'o.ckpt')])
    assert 'missing' in err and 'operations.3.G.conv2.bias' in err
    extra = dict(state)
    extra['operations.1.F.conv6.weight'] = np.zeros((3,), np.float32)
    write_pth(str(tmp_path / 'extra.pth'), extra)
    err = _error(capsys, [str(tmp_path / 'extra.pth'), str(tmp_path / 'o.ckpt')])
    assert 'operations.1.F.conv6.weight' in err
    assert not os.path.exists(tmp_path / 'o.ckpt')


def test_wrong_shape_and_wrong_scale_checkpoint(tmp_path):
    state = read_pth(PTH)
    state['operations.1.F.conv1.weight'] = state['operations.1.F.conv1.weight'][:16]
    write_pth(str(tmp_path / 'shape.pth'), state)
    with pytest.raises(IRNError, match='operations.1.F.conv1.weight has shape'):
        load_weights(InvRescaleNet([1, 1]), str(tmp_path / 'shape.pth'))
    dst = str(tmp_path / 'x4.ckpt')
    assert main([PTH, dst]) == 0
    with pytest.raises(IRNError, match='scale x4 .* network is x2'):
        load_weights(InvRescaleNet([1]), dst)
