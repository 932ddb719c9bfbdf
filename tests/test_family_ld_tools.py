"""IRN_LD / IRN_E through the tools: the paper configs, a tiny training run, infer.py (any size,
fractional scales), export (MINDIR, ONNX) and val.py, on the authors' tiny fixtures."""
import os

import cv2
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import DATA, ROOT
from export import export_graphs
from infer import main as infer_main
from test_infer import _photo
from src.config import load_config
from src.data.io import read_image_uint8, uint8_to_float
from src.fractional import from_grid, to_grid
from src.inference import DownscaleNet, Rescaler, UpscaleNet, make_z
from src.lrfile import as_uint8, read_lr_meta
from src.models import create_model, load_network
from src.utils.checkpoint import read_checkpoint
from src.utils.errors import IRNError

PTH3 = os.path.join(DATA, 'irn_ld_x3.pth')
OPTIONS = os.path.join(ROOT, 'src', 'options')
SAMPLE = os.path.join(ROOT, 'data', 'sample')


def _config(name, *overrides):
    return load_config(os.path.join(OPTIONS, name), list(overrides), device_target='CPU')


@pytest.mark.parametrize('name,overrides,scale,count,lam', [
    ('train_IRN_x3.yml', (), 3, 3139029, 9.0),
    ('train_IRN_x3.yml', ('scale=5', 'datasets.train.GT_size=145'), 5, None, 25.0),
    ('train_IRN_E_x4.yml', (), 4, 5374368, 16.0),
    ('test_IRN_x3.yml', (), 3, 3139029, 9.0),
    ('test_IRN_E_x4.yml', (), 4, 5374368, 16.0)])
def test_paper_configs_build_the_networks(name, overrides, scale, count, lam):
    opt = _config(name, *overrides)
    assert opt['scale'] == opt['network_G']['scale'] == scale
    assert opt['train']['lambda_fit_forw'] == lam
    net = create_model(opt).build_net()
    assert net.scale == scale and net.channel_out == 3 * scale * scale
    if count is not None:
        assert sum(p.size for p in net.trainable_params()) == count
    flags = opt['network_G']['which_model_G']
    assert net.downsampling == ('conv' if flags['use_ConvDownsampling'] else 'haar')
    assert net.down_first == (flags['use_ConvDownsampling'] or flags['down_first'])


@pytest.mark.parametrize('name,overrides,message', [
    ('train_IRN_x3.yml', ('network_G.block_num=[8, 8]',), 'takes one block count'),
    ('train_IRN_x4.yml', ('scale=3', 'network_G.block_num=[8]'), 'needs the learnable downsampling'),
    ('train_IRN_E_x4.yml', ('scale=6', 'datasets.train.GT_size=144'), 'needs the learnable'),
    ('train_IRN_x3.yml', ('scale=9',), 'scale must be one of'),
    ('train_IRN_x3.yml', ('scale=5',), 'GT_size (144) must be a multiple of scale 5')])
def test_config_errors_are_one_line(name, overrides, message):
    with pytest.raises(IRNError) as err:
        _config(name, *overrides)
    assert message in str(err.value) and '\n' not in str(err.value)


def test_tiny_ld_training_run(tmp_path):
    from src.trainer import Trainer
    opt = load_config(os.path.join(OPTIONS, 'train_IRN_x3.yml'),
                      ['network_G.block_num=[1]', 'datasets.train.GT_size=24',
                       'datasets.train.batch_size=2', 'datasets.train.n_workers=1',
                       'train.niter=3', 'train.val_freq=1000', 'logger.print_freq=1',
                       'train.memory_mode=invertible', 'name=ld'],
                      device_target='CPU', data_path=os.path.join(SAMPLE, 'train'),
                      output_dir=str(tmp_path))
    trainer = Trainer(opt)
    start = trainer.net.operations[0].conv_weights.asnumpy().copy()
    trainer.run()
    weights, arch = read_checkpoint(str(tmp_path / 'ld' / 'final_G.ckpt'))
    assert arch['downsampling'] == 'conv' and arch['scale'] == 3 and arch['block_num'] == [1]
    moved = np.abs(weights['operations.0.conv_weights'] - start).max()
    assert 1e-4 < moved < 1e-3  # three Adam steps of lr 2e-4 move each entry by <= ~2e-4 each


def test_infer_any_size_and_fractional_scale(tmp_path):
    src = tmp_path / 'odd.png'
    cv2.imwrite(str(src), _photo(20, 25, 5))
    assert infer_main(['down', '--ckpt', PTH3, '--input', str(src), '--output',
                       str(tmp_path / 'lr')]) == 0
    assert cv2.imread(str(tmp_path / 'lr' / 'odd.png')).shape == (7, 9, 3)  # padded to 21x27
    assert infer_main(['up', '--ckpt', PTH3, '--input', str(tmp_path / 'lr'), '--output',
                       str(tmp_path / 'hr'), '--z_mode', 'zero']) == 0
    assert cv2.imread(str(tmp_path / 'hr' / 'odd.png')).shape == (20, 25, 3)

    assert infer_main(['down', '--ckpt', PTH3, '--scale', '2.5', '--input', str(src),
                       '--output', str(tmp_path / 'lr25')]) == 0
    lr_path = tmp_path / 'lr25' / 'odd.png'
    meta = read_lr_meta(str(lr_path), lr_path.read_bytes())
    assert meta['fractional_scale'] == 2.5 and (meta['height'], meta['width']) == (20, 25)
    assert (meta['grid_height'], meta['grid_width']) == (24, 30)  # 3 x ceil(20/2.5), 3 x ceil(25/2.5)
    lr8 = read_image_uint8(str(lr_path))
    assert lr8.shape == (8, 10, 3)
    rescaler = Rescaler(load_network(PTH3))
    hr = uint8_to_float(read_image_uint8(str(src)))
    np.testing.assert_array_equal(lr8, as_uint8(rescaler.down(to_grid(hr, meta))))
    assert infer_main(['up', '--ckpt', PTH3, '--input', str(lr_path), '--output',
                       str(tmp_path / 'hr25'), '--z_mode', 'zero']) == 0
    sr8 = read_image_uint8(str(tmp_path / 'hr25' / 'odd.png'))
    assert sr8.shape == (20, 25, 3)
    z = make_z(rescaler.z_shape(8, 10), 'zero')
    want = as_uint8(from_grid(rescaler.up(uint8_to_float(lr8), z), meta))
    assert np.abs(sr8.astype(int) - want).max() <= 1  # a rounding step may fall either way
    with pytest.raises(IRNError, match='made at x2.5, but --scale 1.5'):
        infer_main(['up', '--ckpt', PTH3, '--scale', '1.5', '--input', str(lr_path), '--output',
                    str(tmp_path / 'o')])
    with pytest.raises(IRNError, match=r'checkpoint is an x3 IRN .* but x2 was asked for \(--scale 2'):
        infer_main(['down', '--ckpt', PTH3, '--scale', '2', '--input', str(src), '--output',
                    str(tmp_path / 'o')])


@pytest.fixture(scope='module')
def ld_net():
    return load_network(PTH3)


def test_export_mindir_and_onnx_match_the_cells(ld_net, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    h, w = 24, 36
    rng = np.random.default_rng(0)
    hr = rng.random((1, 3, h, w)).astype(np.float32)
    lr = np.round(rng.random((1, 3, h // 3, w // 3)) * 255).astype(np.float32) / 255
    z = rng.standard_normal((1, 24, h // 3, w // 3)).astype(np.float32)
    want_down = DownscaleNet(ld_net)(Tensor(hr)).asnumpy()
    want_up = UpscaleNet(ld_net)(Tensor(lr), Tensor(z)).asnumpy()
    mindir = export_graphs(ld_net, str(tmp_path / 'ld'), 'MINDIR')
    np.testing.assert_allclose(nn.GraphCell(ms.load(mindir[0]))(Tensor(hr)).asnumpy(), want_down,
                               atol=1e-5)
    # up ends in w^-1 (row sums up to 17 at x3): the graphs' MindSpore Conv2D and the Cell's
    # fast conv differ by float32 rounding that it scales up, hence the relative term
    np.testing.assert_allclose(nn.GraphCell(ms.load(mindir[1]))(Tensor(lr), Tensor(z)).asnumpy(),
                               want_up, atol=1e-5, rtol=1e-5)
    onnx = export_graphs(ld_net, str(tmp_path / 'ld'), 'ONNX', h, w)
    down = ort.InferenceSession(onnx[0], providers=['CPUExecutionProvider'])
    up = ort.InferenceSession(onnx[1], providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(down.run(None, {'hr': hr})[0], want_down, atol=1e-5)
    np.testing.assert_allclose(up.run(None, {'lr': lr, 'z': z})[0], want_up, atol=1e-4)


def test_val_on_ld_x3(tmp_path):
    import json
    from val import main as val_main
    folder = tmp_path / 'set'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), _photo(50, 61, 7))  # mod-cropped to 48x60
    report = tmp_path / 'r.json'
    assert val_main(['--ckpt', PTH3, '--data_path', str(folder), '--output_dir',
                     str(tmp_path / 'out'), '--z_draws', '1', '--report', str(report),
                     '--no_progress']) == 0
    text = report.read_text()
    data = json.loads(text)
    assert '"crop": 3' in text and '"scale": 3' in text, text[:400]
    assert 'downsampling' in json.dumps(data)
