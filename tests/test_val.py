"""val.py end to end on the tiny authors' x4 fixture, checked against an independent numpy
computation of the paper's metrics from the network's own outputs."""
import csv
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from mindspore import Tensor

from conftest import DATA, ROOT
from src.data.io import read_image
from src.evaluate import sample_z
from src.network import InvRescaleNet
from src.utils.checkpoint import load_weights
from src.utils.errors import IRNError
from src.utils.graphs import compilations
from val import default_config, main as val_main, parse_args

PTH4 = os.path.join(DATA, 'irn_x4_tiny.pth')
PTH2 = os.path.join(DATA, 'irn_x2_tiny.pth')
CONFIG = os.path.join(ROOT, 'src', 'options', 'test_IRN_x4.yml')


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    """A DIV2K-style root (DIV2K_valid_HR/) and a plain folder with a grey, odd-sized image."""
    root = tmp_path_factory.mktemp('valdata')
    div2k = root / 'DIV2K' / 'DIV2K_valid_HR'
    div2k.mkdir(parents=True)
    shutil.copy(os.path.join(DATA, 'kodim23_crop.png'), div2k / '0801.png')
    other = root / 'Tiny'
    other.mkdir()
    shutil.copy(os.path.join(DATA, 'bridge_crop_gray.png'), other / 'bridge.png')
    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.random((54, 62, 3)), (0, 0), 2) * 255  # 54x62 -> 52x60
    cv2.imwrite(str(other / 'noise.png'), np.round(smooth).astype(np.uint8))
    return str(root / 'DIV2K'), str(other)


@pytest.fixture(scope='module')
def net():
    n = InvRescaleNet([1, 1])
    load_weights(n, PTH4)
    return n


def _psnr(a, b, crop):
    a, b = a.astype(np.float64), b.astype(np.float64)
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    return 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def _y(img):
    return 16 + img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255


def _to8(chw):
    return np.round(np.clip(chw, 0, 1) * 255).transpose(1, 2, 0)


def _expected(net, path, index, z_mode, draws, seed=0):
    """The paper's numbers from the network's outputs, in plain numpy (static-shape graph)."""
    hr = read_image(path)
    hr = hr[:hr.shape[0] // 4 * 4, :hr.shape[1] // 4 * 4]
    out = net(Tensor(np.ascontiguousarray(hr.transpose(2, 0, 1)[None]))).asnumpy()
    lr_q = np.round(np.clip(out[:, :3], 0, 1) * 255) / 255
    gt = np.round(hr.astype(np.float64) * 255)
    psnr, psnr_y = [], []
    for d in range(draws):
        z = np.zeros_like(out[:, 3:]) if z_mode == 'zero' else \
            sample_z(out[:, 3:].shape, 'sample', seed, index, d)
        sr = _to8(net.inverse(Tensor(np.concatenate([lr_q, z], 1).astype(np.float32)))
                  .asnumpy()[0])
        psnr.append(_psnr(sr, gt, 4))
        psnr_y.append(_psnr(_y(sr), _y(gt), 4))
    return float(np.mean(psnr)), float(np.mean(psnr_y)), _to8(lr_q[0])


def test_val_zero_z_golden_values_reports_and_images(sets, net, tmp_path, capsys):
    div2k, tiny = sets
    out = tmp_path / 'out'
    before = compilations()
    assert val_main(['--config', CONFIG, '--ckpt', PTH4, '--data_path', div2k, tiny,
                     '--z_mode', 'zero', '--report', str(tmp_path / 'rep.json'),
                     '--save_images', '--output_dir', str(out), '--no_progress']) == 0
    text = capsys.readouterr().out
    assert 'z = 0' in text and 'DIV2K_valid_HR image' in text and 'Tiny (2)' in text
    sizes = {read_image(p).shape[:2] for p in (os.path.join(div2k, 'DIV2K_valid_HR', '0801.png'),
                                              os.path.join(tiny, 'bridge.png'),
                                              os.path.join(tiny, 'noise.png'))}
    sizes = {(h // 4 * 4, w // 4 * 4) for h, w in sizes}
    assert compilations() - before == 2 * len(sizes)  # static graphs: per direction and size
    assert f'graphs compiled: {compilations()}' in text
    report = json.loads((tmp_path / 'rep.json').read_text())
    assert report['protocol']['z_mode'] == 'zero' and report['protocol']['z_draws'] == 1
    assert list(report['sets']) == ['DIV2K_valid_HR', 'Tiny']
    images = [(os.path.join(div2k, 'DIV2K_valid_HR', '0801.png'), 'DIV2K_valid_HR', 0),
              (os.path.join(tiny, 'bridge.png'), 'Tiny', 0),
              (os.path.join(tiny, 'noise.png'), 'Tiny', 1)]
    for path, set_name, i in images:
        got = report['sets'][set_name]['images'][i]
        psnr, psnr_y, lr8 = _expected(net, path, i, 'zero', 1)
        # val.py runs static-shape graphs per image size, _expected the bare network: float32
        # rounding may differ by ~1e-5 dB; any protocol error moves PSNR by far more.
        assert got['psnr_rgb'] == pytest.approx(psnr, abs=1e-4)
        assert got['psnr_y'] == pytest.approx(psnr_y, abs=1e-4)
        name = got['name']
        saved = {k: cv2.imread(str(out / set_name / k / f'{name}.png'))
                 for k in ('SR', 'LR', 'LR_bicubic', 'GT')}
        assert saved['LR'].shape == lr8.shape and saved['SR'].shape[0] == 4 * lr8.shape[0]
        assert saved['LR_bicubic'].shape == lr8.shape
        np.testing.assert_array_equal(saved['LR'][:, :, ::-1], lr8)
        lr_ref = saved['LR_bicubic'][:, :, ::-1]
        assert got['lr_psnr_rgb'] == pytest.approx(_psnr(lr8, lr_ref, 0), abs=1e-6)
    tiny_mean = report['sets']['Tiny']['mean']['psnr_y']
    assert tiny_mean == pytest.approx(np.mean([r['psnr_y'] for r in
                                               report['sets']['Tiny']['images']]))
    with open(tmp_path / 'rep.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['0801', 'MEAN', 'bridge', 'noise', 'MEAN']
    assert all(r['z_mode'] == 'zero' for r in rows)


def test_val_sampled_z_is_mean_over_seeded_draws(sets, net, tmp_path, capsys):
    _, tiny = sets
    val_main(['--config', CONFIG, '--ckpt', PTH4, '--data_path', tiny, '--z_draws', '2',
              '--seed', '3', '--report', str(tmp_path / 'r.json'), '--no_progress'])
    assert '2 draw(s), seed 3' in capsys.readouterr().out
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['protocol'] == {**report['protocol'], 'z_mode': 'sample', 'z_draws': 2,
                                  'seed': 3}
    got = report['sets']['Tiny']['images'][1]
    psnr, psnr_y, _ = _expected(net, os.path.join(tiny, 'noise.png'), 1, 'sample', 2, seed=3)
    assert got['psnr_rgb'] == pytest.approx(psnr, abs=1e-4)
    assert got['psnr_y'] == pytest.approx(psnr_y, abs=1e-4)


def test_val_errors(sets, tmp_path):
    _, tiny = sets
    with pytest.raises(IRNError, match='x2 IRN.*x4 was asked'):
        val_main(['--config', CONFIG, '--ckpt', PTH2, '--data_path', tiny])
    with pytest.raises(IRNError, match='no test set given'):
        val_main(['--config', CONFIG, '--ckpt', PTH4])
    with pytest.raises(IRNError, match='data path not found'):
        val_main(['--config', CONFIG, '--ckpt', PTH4, '--data_path', str(tmp_path / 'nope')])
    with pytest.raises(IRNError, match='checkpoint not found'):
        val_main(['--config', CONFIG, '--ckpt', str(tmp_path / 'x.ckpt'), '--data_path', tiny])


def test_default_config_follows_the_checkpoint_scale():
    assert default_config(parse_args(['--ckpt', PTH2])).endswith('test_IRN_x2.yml')
    assert default_config(parse_args(['--ckpt', PTH2, '--scale', '8'])).endswith('test_IRN_x8.yml')
    assert default_config(parse_args(['--config', CONFIG])) == CONFIG


def test_run_eval_script_checks_arguments(tmp_path):
    script = os.path.join(ROOT, 'scripts', 'run_eval.sh')
    for args, message in (([], 'usage'), (['5', '.', PTH4], 'SCALE must be 2, 3, 4 or 8'),
                          (['4', str(tmp_path / 'no'), PTH4], 'data path not found'),
                          (['4', str(tmp_path), str(tmp_path / 'x.ckpt')], 'checkpoint not found')):
        res = subprocess.run(['bash', script, *args], capture_output=True, text=True, check=False)
        assert res.returncode == 2 and message in res.stderr
