"""VGG19 weights for IRN+: the --vgg19 converter and the loader, on synthetic torchvision files.

The state dicts have torchvision's vgg19 layout (``features.N.weight/bias`` for the 16 convs,
``classifier.*``) with random values, written by tests/torch_pickle.py in the legacy stream
format of torchvision's own vgg19-dcbb9e9d.pth (torch < 0.4 tensors) and in the zip format.
The classifier is shrunk: the converter drops it whatever its shape.
"""
import os

import numpy as np
import pytest

from conftest import DATA
from torch_pickle import write_pth
from src.convert import main
from src.network.vgg import VGG_HELP, VGGFeatureExtractor, load_vgg19_features, vgg19_feature_shapes
from src.utils.errors import IRNError


@pytest.fixture(scope='module')
def vgg_state():
    rng = np.random.default_rng(1)
    state = {name: rng.standard_normal(shape, dtype=np.float32)
             for name, shape in vgg19_feature_shapes().items()}
    for i in (0, 3, 6):
        state[f'classifier.{i}.weight'] = rng.standard_normal((4, 3), dtype=np.float32)
        state[f'classifier.{i}.bias'] = rng.standard_normal(4, dtype=np.float32)
    return state


@pytest.fixture(scope='module')
def legacy_file(vgg_state, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('vgg') / 'vgg19-legacy.pth')
    write_pth(path, vgg_state, legacy=True, old_tensors=True)
    return path


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and err.count('\n') == 0, err
    return err


def test_convert_legacy_and_zip(vgg_state, legacy_file, tmp_path, capsys):
    dst = str(tmp_path / 'vgg19_features.ckpt')
    assert main(['--vgg19', legacy_file, dst]) == 0
    assert '16 convolutions' in capsys.readouterr().out
    weights = load_vgg19_features(dst)
    shapes = vgg19_feature_shapes()
    assert sorted(weights) == sorted(shapes)
    for name, shape in shapes.items():
        assert weights[name].shape == shape and weights[name].dtype == np.float32
        np.testing.assert_array_equal(weights[name], vgg_state[name])
    net_f = VGGFeatureExtractor(weights, dst)
    assert [p.name for p in net_f.get_parameters()][2:] == list(shapes)
    zipped = str(tmp_path / 'vgg19-zip.pth')
    write_pth(zipped, vgg_state)
    direct = load_vgg19_features(zipped)  # a .pth is read directly too
    for name in shapes:
        np.testing.assert_array_equal(direct[name], vgg_state[name])


def test_missing_key_and_wrong_shape(vgg_state, tmp_path, capsys):
    missing = {k: v for k, v in vgg_state.items() if k != 'features.34.bias'}
    write_pth(str(tmp_path / 'missing.pth'), missing, legacy=True)
    err = _error(capsys, ['--vgg19', str(tmp_path / 'missing.pth'), str(tmp_path / 'o.ckpt')])
    assert 'missing.pth' in err and 'missing features.34.bias' in err
    shape = dict(vgg_state, **{'features.10.weight': vgg_state['features.10.weight'][:, :64]})
    write_pth(str(tmp_path / 'shape.pth'), shape, legacy=True)
    err = _error(capsys, ['--vgg19', str(tmp_path / 'shape.pth'), str(tmp_path / 'o.ckpt')])
    assert 'features.10.weight has shape (256, 64, 3, 3)' in err and '(256, 128, 3, 3)' in err
    assert not os.path.exists(tmp_path / 'o.ckpt')


def test_wrong_files(vgg_state, legacy_file, tmp_path, capsys):
    irn = os.path.join(DATA, 'irn_x4_tiny.pth')
    err = _error(capsys, ['--vgg19', irn, str(tmp_path / 'o.ckpt')])
    assert 'unexpected key' in err and 'not a torchvision vgg19' in err
    bn = dict(vgg_state, **{'features.1.running_mean': np.zeros(64, np.float32)})
    write_pth(str(tmp_path / 'vgg19_bn.pth'), bn)
    err = _error(capsys, ['--vgg19', str(tmp_path / 'vgg19_bn.pth'), str(tmp_path / 'o.ckpt')])
    assert 'features.1.running_mean' in err
    err = _error(capsys, [legacy_file, str(tmp_path / 'o.ckpt')])  # VGG given as an IRN
    assert 'not an IRN state_dict' in err
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    assert 'not a PyTorch .pth' in _error(capsys, ['--vgg19', str(text), str(tmp_path / 'o.ckpt')])
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(open(legacy_file, 'rb').read()[:-1000])
    assert 'truncated' in _error(capsys, ['--vgg19', str(cut), str(tmp_path / 'o.ckpt')])
    assert not os.path.exists(tmp_path / 'o.ckpt')


def test_loader_errors(tmp_path):
    with pytest.raises(IRNError) as info:
        load_vgg19_features(None)
    assert 'vgg19-dcbb9e9d.pth' in str(info.value) and str(info.value) == VGG_HELP
    with pytest.raises(IRNError, match='not found.*vgg19-dcbb9e9d.pth'):
        load_vgg19_features(str(tmp_path / 'nope.ckpt'))
    assert main([os.path.join(DATA, 'irn_x4_tiny.pth'), str(tmp_path / 'irn.ckpt')]) == 0
    with pytest.raises(IRNError, match='not a VGG19 features checkpoint'):
        load_vgg19_features(str(tmp_path / 'irn.ckpt'))
