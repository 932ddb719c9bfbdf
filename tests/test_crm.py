"""IRN with JPEG: the noise fine-tune, the CRM (RRDBNet), the codec in the loop, the evaluation.

Parity with the authors' code (tests/data/irn_ft_x2.* and irn_crm_x2.* + irn_crm_x2_R.pth, copies
of ../shared/fixtures without ``param*/``, configs, the IRN forward / inverse outputs and the
unused ``step*_lr_ref`` of the CRM case). Tolerances: EXTENSIONS.md section 8.4.
"""
import os
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import DATA, ROOT, fixture
from src.codecs import bits_per_pixel, roundtrip_batch
from src.compression import CRMStep, JointCRMStep, compress_image, load_crm, read_crm
from src.convert import convert_crm, main as convert_main, read_pth
from src.loss import IRNLoss, IRNWithLoss, draw_step_noise
from src.network import InvRescaleNet
from src.network.rrdb import RRDBNet
from src.optim import ClippedAdam, TrainStep
from src.utils.checkpoint import load_weights
from src.utils.errors import IRNError
from torch_pickle import write_pth

CRM_PTH = os.path.join(DATA, 'irn_crm_x2_R.pth')


def _irn(name):
    d = fixture(name)
    net = InvRescaleNet([int(b) for b in d['block_num']])
    load_weights(net, os.path.join(DATA, name + '.pth'))
    return net, d


def _check_final(net, d, prefix):
    diffs = np.concatenate([np.abs(p.asnumpy() - d[prefix + p.name]).ravel()
                            for p in net.trainable_params()])
    assert diffs.max() <= 5e-5
    assert np.mean(diffs <= 1e-6) >= 0.999


def _assert_close_uint8(ours, theirs):
    """uint8 images equal up to a few one-level flips (rounding near a quantisation boundary)."""
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999


def _uint8(chw):
    """A fixture CHW float image as HxWx3 uint8 (clamp, x255, round)."""
    return np.round(np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


class _Replay:
    """A numpy-generator stand-in returning the recorded draws of one step, in the authors'
    order (the uniform, the LR noise if it was applied, then z); shapes are checked."""

    def __init__(self, d, k):
        self.draws = [d[f'step{k}_noise']] if d[f'step{k}_noise_applied'] else []
        self.draws.append(d[f'step{k}_z'])
        self.prob, self.calls = float(d[f'step{k}_noise_prob']), []

    def random(self):
        assert not self.calls, 'the uniform must be drawn first'
        self.calls.append('u')
        return self.prob

    def standard_normal(self, shape, dtype=None):
        assert self.calls[:1] == ['u'] and self.draws
        value = self.draws.pop(0)
        assert value.shape == tuple(shape) and dtype == np.float32
        self.calls.append('n')
        return value


def test_finetune_steps_replay():
    net, d = _irn('irn_ft_x2')
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
    loss = IRNWithLoss(net, float(d['lambda_fit']), criterion_forw=str(d['pixel_criterion_forw']),
                       noise_on_y=True)
    step = TrainStep(loss, adam)
    y_noise = (float(d['y_noise_prob']), float(d['y_noise_scale']))
    for k in range(int(d['train_steps'])):
        lr_ref = d[f'step{k}_lr_ref']
        b, c, h, w = lr_ref.shape
        rng = _Replay(d, k)
        noise = draw_step_noise(rng, b, c, d[f'step{k}_z'].shape[1], h, w, y_noise)
        assert not rng.draws and len(rng.calls) == 2 + int(d[f'step{k}_noise_applied'])
        expected = d[f'step{k}_noise'] * np.float32(y_noise[1])  # zeros when not applied
        np.testing.assert_array_equal(noise[:, :c], expected)
        out = step(Tensor(d[f'step{k}_hr']), Tensor(lr_ref), Tensor(noise),
                   Tensor(float(d['lr_G']), ms.float32))
        _, l_fit, l_ce, l_rec, norm, applied = [o.asnumpy() for o in out]
        assert applied
        for value, key in ((l_fit, 'loss_fit'), (l_ce, 'loss_ce'), (l_rec, 'loss_rec'),
                           (norm, 'grad_norm')):
            np.testing.assert_allclose(value, d[f'step{k}_{key}'], rtol=1e-4, err_msg=key)
    _check_final(net, d, 'final/')


def test_noise_draws_from_a_generator():
    """One uniform per batch; no LR-noise draw (and zeros) when it is >= prob; replayable."""
    a = draw_step_noise(np.random.default_rng(3), 4, 3, 9, 5, 6, (0.5, 0.01))
    b = draw_step_noise(np.random.default_rng(3), 4, 3, 9, 5, 6, (0.5, 0.01))
    np.testing.assert_array_equal(a, b)
    for prob, applied in ((0.0, False), (1.0, True)):
        rng = np.random.default_rng(5)
        out = draw_step_noise(rng, 2, 3, 9, 4, 4, (prob, 0.01))
        ref = np.random.default_rng(5)
        ref.random()
        lr_noise = 0.01 * ref.standard_normal((2, 3, 4, 4), dtype=np.float32) if applied else 0
        np.testing.assert_allclose(out[:, :3], lr_noise + np.zeros((2, 3, 4, 4)), rtol=1e-6)
        np.testing.assert_array_equal(out[:, 3:], ref.standard_normal((2, 9, 4, 4), np.float32))
    plain = draw_step_noise(np.random.default_rng(7), 2, 3, 9, 4, 4)
    np.testing.assert_array_equal(plain, np.random.default_rng(7).standard_normal(
        (2, 9, 4, 4), dtype=np.float32))


def test_rrdbnet_layout_and_init():
    net = RRDBNet(nf=64, nb=8, gc=32)
    assert sum(p.size for p in net.trainable_params()) == 5795843
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    w1 = params['RRDB_trunk.3.RDB2.conv1.weight']  # kaiming normal (fan_in) x 0.1
    np.testing.assert_allclose(w1.std(), 0.1 * np.sqrt(2.0 / (64 * 9)), rtol=0.05)
    assert not params['RRDB_trunk.3.RDB2.conv1.bias'].any()
    assert not params['RRDB_trunk.7.RDB3.conv5.weight'].any()
    assert not params['RRDB_trunk.7.RDB3.conv5.bias'].any()
    bound = 1 / np.sqrt(3 * 9)  # PyTorch default init of conv_first
    first = params['conv_first.weight']
    assert np.abs(first).max() <= bound and np.abs(first).max() > 0.9 * bound
    small = {p.name for p in RRDBNet(nf=16, nb=2, gc=8).get_parameters()}
    assert small == set(read_pth(CRM_PTH))  # the authors' key names


def test_crm_forward_and_codec():
    d = fixture('irn_crm_x2')
    crm = load_crm(CRM_PTH)
    assert crm.layout() == {'in_nc': 3, 'out_nc': 3, 'nf': int(d['r_nf']), 'nb': int(d['r_nb']),
                            'gc': int(d['r_gc'])}
    np.testing.assert_allclose(crm(Tensor(d['crm_in'])).asnumpy(), d['crm_out'], atol=1e-5, rtol=0)
    jpeg, sizes = roundtrip_batch(d['jpeg_in'], 'jpeg', int(d['jpg_quality']))
    np.testing.assert_array_equal(jpeg, d['jpeg_out'])  # bit-exact with the authors' apply_jpg
    assert sizes == list(d['jpeg_nbytes']) == list(d['test_jpeg_file_bytes'])
    h, w = d['input'].shape[2:]
    assert [bits_per_pixel(n, h, w) for n in sizes] == list(d['test_bpp'])
    webp, webp_sizes = roundtrip_batch(d['jpeg_in'], 'webp', 90)
    assert webp.shape == d['jpeg_in'].shape and min(webp_sizes) > 0
    np.testing.assert_array_equal(np.round(webp * 255) / np.float32(255), webp)  # 8-bit values


def test_crm_steps():
    g, d = _irn('irn_crm_x2')
    crm = load_crm(CRM_PTH)
    crm.set_train(True)
    adam = ClippedAdam(crm.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=0.0, clip_norm=10.0)
    step = CRMStep(g, crm, adam, 'jpeg', int(d['jpg_quality']), float(d['lambda_rec_jpeg']))
    g_before = {p.name: p.asnumpy() for p in g.get_parameters()}
    for k in range(int(d['train_steps'])):
        out = step(d[f'step{k}_hr'], Tensor(float(d['lr_R']), ms.float32))
        ref_lr = d[f'step{k}_lr']
        _assert_close_uint8(np.round(out['lr'] * 255), np.round(ref_lr * 255))
        np.testing.assert_array_equal(roundtrip_batch(ref_lr, 'jpeg', 90)[0], d[f'step{k}_jpeg'])
        assert out['applied']
        np.testing.assert_allclose(out['loss'], d[f'step{k}_loss_jpeg'], rtol=1e-4)
        np.testing.assert_allclose(out['grad_norm'], d[f'step{k}_grad_norm'], rtol=1e-4)
    _check_final(crm, d, 'finalR/')
    for p in g.get_parameters():  # IRN frozen
        np.testing.assert_array_equal(p.asnumpy(), g_before[p.name])


def test_joint_steps():
    g, d = _irn('irn_crm_x2')
    crm = load_crm(CRM_PTH)
    crm.set_train(True)
    opt_g = ClippedAdam(g.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
    opt_r = ClippedAdam(crm.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=0.0,
                        clip_norm=10.0, prefix='crm_')
    step = JointCRMStep(g, crm, opt_g, opt_r, IRNLoss(3, float(d['lambda_fit_forw'])))
    lr_g, lr_r = Tensor(float(d['lr_G']), ms.float32), Tensor(float(d['lr_R']), ms.float32)
    for k in range(int(d['joint_steps'])):
        out = step(d[f'joint{k}_hr'], d[f'joint{k}_lr_ref'], d[f'joint{k}_z'], lr_g, lr_r)
        np.testing.assert_array_equal(out['jpeg'], d[f'joint{k}_jpeg'])
        assert out['applied']
        for key in ('l_fit', 'l_ce', 'l_rec', 'l_jpeg', 'grad_norm_g', 'grad_norm_r'):
            ref = 'loss_' + key[2:] if key.startswith('l_') else key
            np.testing.assert_allclose(out[key], d[f'joint{k}_{ref}'], rtol=1e-4, err_msg=key)
    _check_final(g, d, 'joint_finalG/')
    _check_final(crm, d, 'joint_finalR/')


def test_compression_evaluation():
    """The authors' test(): LR -> JPEG 90 -> Q(CRM) -> upscale with the recorded z; metrics."""
    g, d = _irn('irn_crm_x2')
    crm = load_crm(CRM_PTH)
    names = {'psnr_rgb': 'psnr', 'ssim_rgb': 'ssim', 'psnr_y': 'psnr_y', 'ssim_y': 'ssim_y',
             'lr_psnr_rgb': 'psnr_lr', 'lr_ssim_rgb': 'ssim_lr', 'lr_psnr_y': 'psnr_y_lr',
             'lr_ssim_y': 'ssim_y_lr', 'psnr_restore': 'psnr_restore'}
    for i in range(d['input'].shape[0]):
        hr = d['input'][i].transpose(1, 2, 0)
        res, images = compress_image(g, crm, hr, 'jpeg', int(d['jpg_quality']), [d['z'][i:i + 1]],
                                     crop=int(d['test_crop']))
        _assert_close_uint8(images['lr'], _uint8(d['lr_quant'][i]))
        _assert_close_uint8(images['restore'], _uint8(d['test_restore_L'][i]))
        _assert_close_uint8(images['sr'], _uint8(d['test_fake_H'][i]))
        assert res['bytes'] == d['test_jpeg_file_bytes'][i]
        assert res['bpp'] == d['test_bpp'][i]
        for ours, theirs in names.items():
            np.testing.assert_allclose(res[ours], d['test_' + theirs][i], rtol=1e-4, atol=1e-4,
                                       err_msg=ours)


def test_crm_converter_and_errors(tmp_path):
    out = str(tmp_path / 'crm.ckpt')
    assert convert_crm(CRM_PTH, out) == {'in_nc': 3, 'out_nc': 3, 'nf': 16, 'nb': 2, 'gc': 8}
    assert convert_main([CRM_PTH, str(tmp_path / 'cli.ckpt')]) == 0  # tells a CRM from an IRN
    assert read_crm(str(tmp_path / 'cli.ckpt'))[1]['gc'] == 8
    ours, layout = read_crm(out)
    theirs = read_pth(CRM_PTH)
    assert layout['nb'] == 2 and set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])
    state = dict(theirs)
    state.pop('RRDB_trunk.1.RDB3.conv5.bias')
    bad = str(tmp_path / 'missing.pth')
    write_pth(bad, state)
    with pytest.raises(IRNError, match='missing.pth: RRDB_trunk.1.RDB3.conv5.bias missing'):
        load_crm(bad)
    with pytest.raises(IRNError, match='not an RRDBNet'):
        load_crm(os.path.join(DATA, 'irn_crm_x2.pth'))  # an IRN, not a CRM
    with pytest.raises(IRNError, match='nope.ckpt: checkpoint not found'):
        load_crm(str(tmp_path / 'nope.ckpt'))
    irn_ckpt = str(tmp_path / 'irn.ckpt')
    convert_main([os.path.join(DATA, 'irn_crm_x2.pth'), irn_ckpt])
    with pytest.raises(IRNError, match=r'irn.ckpt: not a CRM checkpoint \(it holds x2 with '
                                       r'block_num \[1\] \(IRN\)\)'):
        load_crm(irn_ckpt)


def test_rate_distortion_script(tmp_path):
    import csv
    import cv2
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    from rate_distortion import FIELDS, METHODS, main as rd_main
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(((32, 48), (40, 36))):
        img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 2.0)
        cv2.imwrite(str(folder / f'im{i}.png'), np.round(img * 255).astype(np.uint8))
    out = str(tmp_path / 'rd')
    qualities = [10, 50, 90]
    assert rd_main(['--data_path', str(folder), '--ckpt', os.path.join(DATA, 'irn_crm_x2.pth'),
                    '--crm', CRM_PTH, '--qualities', *map(str, qualities), '--out', out]) == 0
    with open(out + '.csv') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == FIELDS
    assert [(r['method'], int(r['quality'])) for r in rows] == [
        (m, q) for m in METHODS for q in qualities]
    assert all(int(r['images']) == 2 for r in rows)
    for method in METHODS:
        bpp = [float(r['bpp']) for r in rows if r['method'] == method]
        assert all(a < b for a, b in zip(bpp, bpp[1:])), (method, bpp)
    same_lr = [float(r['bpp']) for r in rows if r['method'].startswith('irn')]
    assert same_lr[:3] == same_lr[3:]  # the CRM does not change what is stored
    assert cv2.imread(out + '.png').shape[2] == 3


def test_finetune_config_drives_the_trainer_noise(tmp_path):
    """train_IRN_x2_finetune.yml: l1 forward fit, LR noise drawn from the trainer's generator."""
    from src.config import load_config
    from src.trainer import Trainer
    opt = load_config(os.path.join(ROOT, 'src/options/train_IRN_x2_finetune.yml'),
                      ['network_G.block_num=[1]', 'datasets.train.GT_size=32',
                       'datasets.train.batch_size=2'], device_target='CPU',
                      data_path=os.path.join(ROOT, 'data', 'sample', 'train'),
                      output_dir=str(tmp_path))
    t = opt['train']
    assert (t['lr_G'], t['pixel_criterion_forw'], t['add_noise_on_y'], t['y_noise_prob'],
            t['y_noise_scale'], t['lr_steps'], t['niter']) == (1e-5, 'l1', True, 0.5, 0.01,
                                                              [100000], 100000)
    trainer = Trainer(opt)
    assert trainer.model.step.net_with_loss.loss.criterion_forw == 'l1'
    ref = np.random.default_rng(t['manual_seed'])
    for _ in range(4):
        expected = draw_step_noise(ref, 2, 3, 9, 16, 16, (0.5, 0.01))
        np.testing.assert_array_equal(trainer.model.draw_noise(trainer.rng, (2, 3, 16, 16)),
                                      expected)
    with pytest.raises(IRNError, match='needs train.y_noise_prob'):
        load_config(os.path.join(ROOT, 'src/options/train_IRN_x2_finetune.yml'),
                    ['train.y_noise_prob=null'])


def test_infer_lossy_lr_and_crm(tmp_path, caplog):
    import logging
    import cv2
    from infer import main as infer_main
    from src.codecs import decode, encode
    from src.lrfile import read_lr_meta
    g_pth = os.path.join(DATA, 'irn_crm_x2.pth')
    rng = np.random.default_rng(1)
    img = np.round(cv2.GaussianBlur(rng.random((21, 30, 3)), (0, 0), 1.5) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    common = ['--ckpt', g_pth, '--input', str(tmp_path / 'a.png')]
    with caplog.at_level(logging.WARNING, logger='irn'):
        assert infer_main(['down', *common, '--output', str(tmp_path / 'png')]) == 0
        assert infer_main(['down', *common, '--format', 'jpeg', '--quality', '80',
                           '--output', str(tmp_path / 'jpg')]) == 0
    assert 'plain IRN cannot upscale a lossy LR well' in caplog.text and '--crm' in caplog.text
    lr8 = cv2.imread(str(tmp_path / 'png' / 'a.png'))[:, :, ::-1]
    data = open(tmp_path / 'jpg' / 'a.jpg', 'rb').read()
    assert read_lr_meta('a.jpg', data)['height'] == 21
    np.testing.assert_array_equal(decode(data), decode(encode(lr8, 'jpeg', 80)))  # same codec
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='irn'):
        infer_main(['up', '--ckpt', g_pth, '--input', str(tmp_path / 'jpg' / 'a.jpg'),
                    '--output', str(tmp_path / 'plain')])
    assert 'without a CRM (--crm)' in caplog.text
    infer_main(['up', '--ckpt', g_pth, '--input', str(tmp_path / 'jpg' / 'a.jpg'), '--crm',
                CRM_PTH, '--output', str(tmp_path / 'crm'), '--z_mode', 'zero'])
    out = cv2.imread(str(tmp_path / 'crm' / 'a.png'))
    assert out.shape == (21, 30, 3)  # cropped back with the JPEG comment's metadata
    from src.compression import restore_lr
    from src.inference import Rescaler, load_network
    restored = restore_lr(load_crm(CRM_PTH), decode(data))
    sr = Rescaler(load_network(g_pth)).up(restored / np.float32(255), np.zeros((11, 15, 9),
                                                                               np.float32))
    expected = np.round(np.clip(sr[:21, :30], 0, 1) * 255).astype(np.uint8)
    assert np.mean(out[:, :, ::-1] == expected) >= 0.999
    infer_main(['down', '--ckpt', g_pth, '--input', str(tmp_path / 'a.png'), '--format', 'webp',
                '--output', str(tmp_path / 'w.webp')])
    webp = open(tmp_path / 'w.webp', 'rb').read()
    assert webp[:4] == b'RIFF' and webp[8:12] == b'WEBP'
    assert 'cannot crop the padding' in caplog.text
