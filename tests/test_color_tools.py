"""IRN-Color through the family's tools: configs, training with exact resume and validation,
val.py reports, infer.py decolor / colorize, export (MINDIR + ONNX) against the Cells, and the
converter's one-line errors. Tiny images and the 2-block fixture network keep it fast."""
import csv
import os

import cv2
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import DATA, ROOT
from src.config import load_config
from src.convert import main as convert_main
from src.data.io import read_image, uint8_to_float
from src.evaluate_color import evaluate_color
from src.inference import DownscaleNet, UpscaleNet
from src.lrfile import png_text_chunks, write_lr_png
from src.metrics import tensor_to_uint8
from src.models import load_model, load_network
from src.utils.checkpoint import list_train_states, read_checkpoint
from src.utils.errors import IRNError

PTH = os.path.join(DATA, 'irn_color.pth')
TRAIN = os.path.join(ROOT, 'src', 'options', 'train_IRN_color.yml')
TEST = os.path.join(ROOT, 'src', 'options', 'test_IRN_color.yml')


@pytest.fixture(scope='module')
def net():
    return load_network(PTH)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Two small RGB images (one odd-sized) and a plain grey photo."""
    root = tmp_path_factory.mktemp('colour')
    rgb = read_image(os.path.join(DATA, 'kodim23_crop.png'))
    cv2.imwrite(str(root / 'a.png'), np.round(rgb[:20, :26, ::-1] * 255).astype(np.uint8))
    cv2.imwrite(str(root / 'b.png'), np.round(rgb[40:57, 50:73, ::-1] * 255).astype(np.uint8))
    grey = cv2.imread(os.path.join(DATA, 'bridge_crop_gray.png'), cv2.IMREAD_UNCHANGED)
    plain = root / 'plain'
    plain.mkdir()
    cv2.imwrite(str(plain / 'bridge.png'), grey[:18, :22])
    return root


def test_paper_configs_and_errors():
    opt = load_config(TRAIN)
    assert opt['model'] == 'IRN-Color' and opt['scale'] == 2
    assert opt['network_grey']['block_num'] == [8] and opt['datasets']['train']['batch_size'] == 8
    assert opt['datasets']['train']['GT_size'] == 144 and opt['datasets']['train']['use_grey']
    t = opt['train']
    assert (t['lambda_fit_forw'], t['lambda_rec_back'], t['lambda_ce_forw'], t['gaussian_scale']) \
        == (3.0, 1.0, 1.0, 0.0)
    assert (t['lr_G'], t['weight_decay_G'], t['gradient_clipping'], t['manual_seed']) \
        == (2e-4, 1e-5, 10.0, 10)
    assert load_config(TEST)['crop_border'] is None
    for override, message in (('network_grey.block_num=[2,2]', 'must be \\[K\\]'),
                              ('network_grey.Conv1x1Grey_learnable=false', 'never reads it'),
                              ('network_grey.which_model.rgb_type=YUV', 'rgb_type must be one'),
                              ('network_grey.blocks=[2]', "unknown key 'network_grey.blocks'")):
        with pytest.raises(IRNError, match=message):
            load_config(TRAIN, [override])
    with pytest.raises(IRNError, match="unknown key 'network_grey'"):
        load_config(os.path.join(ROOT, 'src', 'options', 'train_IRN_x2.yml'),
                    ['network_grey.block_num=[1]'])


def _tiny(out, *extra):
    overrides = ['network_grey.block_num=[1]', 'datasets.train.GT_size=16',
                 'datasets.train.batch_size=2', 'datasets.train.n_workers=1', 'train.niter=3',
                 'logger.print_freq=1', 'logger.save_checkpoint_freq=1', 'train.val_freq=3',
                 'name=run', *extra]
    return load_config(TRAIN, overrides, device_target='CPU', output_dir=str(out),
                       data_path=os.path.join(ROOT, 'data', 'sample', 'train'))


def test_training_resume_and_validation(tmp_path, photos, monkeypatch):
    from src.trainer import Trainer
    from src.train_log import read_csv
    full = Trainer(_tiny(tmp_path / 'full', f'datasets.val.dataroot_GT={photos}'))
    result = full.run()
    run = tmp_path / 'full' / 'run'
    rows = read_csv(str(run / 'loss.csv'))
    assert [r['iter'] for r in rows] == [1, 2, 3] and all(r['l_fit'] >= 0 for r in rows)
    val = read_csv(str(run / 'val.csv'))
    assert [r['iter'] for r in val] == [3] and result['best']['iteration'] == 3
    assert 'test_IRN-Color protocol, z = 0, crop 2' in open(run / 'train.log').read()
    _, arch = read_checkpoint(str(run / 'best_G.ckpt'))
    assert arch == {'model': 'IRN-Color', 'net': 'InvGreyNet', 'scale': 1, 'block_num': [1]}

    original = Trainer.fetch

    def crash_after_2(self, batch):
        if self.iteration == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, 'fetch', crash_after_2)
    part = Trainer(_tiny(tmp_path / 'part'))
    with pytest.raises(KeyboardInterrupt):
        part.run()
    monkeypatch.setattr(Trainer, 'fetch', original)
    states = list_train_states(str(tmp_path / 'part' / 'run' / 'checkpoints'))
    assert [os.path.basename(s) for s in states][-1] == 'state_00000002.ckpt'
    resumed = Trainer(_tiny(tmp_path / 'part'), resume=True)
    assert resumed.iteration == 2
    resumed.run()
    params = list(full.optimizer.get_parameters())  # weights (matrix included), moments, step
    assert any(p.name.startswith('moment1.') for p in params)
    assert 'operations.0.conv_weights' in [p.name for p in params]
    for a, b in zip(params, resumed.optimizer.get_parameters()):
        assert a.name == b.name
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), atol=1e-6, rtol=0, err_msg=a.name)


def test_val_report_names_the_protocol(tmp_path, photos, net, capsys):
    from val import main as val_main
    report = tmp_path / 'r.json'
    assert val_main(['--config', TEST, '--ckpt', PTH, '--data_path', str(photos), '--report',
                     str(report), '--no_progress', '--output_dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'protocol test_IRN-Color' in out and 'grey PSNR' in out
    with open(tmp_path / 'r.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['a', 'b', 'MEAN']
    assert all(r['model'] == 'IRN-Color' and r['crop'] == '2' and r['z_mode'] == 'zero'
               for r in rows)
    source = [(n, read_image(str(photos / f'{n}.png'))[:h, :w]) for n, h, w in
              (('a', 20, 26), ('b', 16, 22))]  # mod-crop 2
    for row, want in zip(rows, evaluate_color(net, source, 2)):
        for key in ('psnr_rgb', 'ssim_rgb', 'psnr_grey', 'ssim_grey'):
            assert float(row[key]) == pytest.approx(want[key], rel=1e-9)


def test_infer_decolor_colorize(tmp_path, photos, net, caplog):
    from infer import main as infer_main
    assert infer_main(['decolor', '--ckpt', PTH, '--input', str(photos / 'b.png'),
                       '--output', str(tmp_path / 'g')]) == 0
    grey_png = tmp_path / 'g' / 'b.png'
    grey8 = cv2.imread(str(grey_png), cv2.IMREAD_UNCHANGED)
    assert grey8.dtype == np.uint8 and grey8.shape == (17, 23)  # any size, one channel
    meta = png_text_chunks(open(grey_png, 'rb').read())['irn']
    assert '"model": "IRN-Color"' in meta and '"height": 17' in meta
    rgb = read_image(str(photos / 'b.png'))
    x = Tensor(rgb.transpose(2, 0, 1)[None].copy())
    want = tensor_to_uint8(DownscaleNet(net)(x).asnumpy()[0])[..., 0]
    np.testing.assert_array_equal(grey8, want)
    assert infer_main(['colorize', '--ckpt', PTH, '--input', str(grey_png),
                       '--output', str(tmp_path / 'c')]) == 0
    colour = read_image(str(tmp_path / 'c' / 'b.png'))
    g = Tensor(uint8_to_float(grey8)[None, None])
    want = UpscaleNet(net)(g, Tensor(np.zeros((1, 2, 17, 23), np.float32))).asnumpy()[0]
    np.testing.assert_array_equal(np.round(colour * 255), tensor_to_uint8(want))

    caplog.clear()  # a plain grey photo: a warning, and still an output
    assert infer_main(['colorize', '--ckpt', PTH, '--input', str(photos / 'plain'),
                       '--output', str(tmp_path / 'p')]) == 0
    assert 'not made by `infer.py decolor`' in caplog.text and 'poorly' in caplog.text
    assert os.path.isfile(tmp_path / 'p' / 'bridge.png')

    irn_lr = tmp_path / 'irn_lr.png'  # an LR of IRN's `infer.py down`
    write_lr_png(str(irn_lr), np.zeros((4, 5, 3), np.uint8),
                 {'scale': 4, 'height': 16, 'width': 20})
    with pytest.raises(IRNError, match='not a grey image of `infer.py decolor`'):
        infer_main(['colorize', '--ckpt', PTH, '--input', str(irn_lr), '--output', str(tmp_path)])
    resized = tmp_path / 'resized.png'
    write_lr_png(str(resized), grey8[:10], {'model': 'IRN-Color', 'scale': 1, 'height': 17,
                                            'width': 23})
    with pytest.raises(IRNError, match='was it resized'):
        infer_main(['colorize', '--ckpt', PTH, '--input', str(resized), '--output', str(tmp_path)])


def test_export_both_graphs_match_the_cells(tmp_path, net):
    ort = pytest.importorskip('onnxruntime')
    from export import main as export_main
    rng = np.random.default_rng(9)
    rgb = rng.random((1, 3, 12, 18)).astype(np.float32)
    grey = np.round(rng.random((1, 1, 12, 18)) * 255).astype(np.float32) / 255
    z = rng.standard_normal((1, 2, 12, 18)).astype(np.float32) * 0.1
    want_grey = DownscaleNet(net)(Tensor(rgb)).asnumpy()
    want_rgb = UpscaleNet(net)(Tensor(grey), Tensor(z)).asnumpy()
    frozen = load_network(PTH)
    frozen.freeze_inverses()  # what export does: the matrix inverse as a constant
    np.testing.assert_allclose(UpscaleNet(frozen)(Tensor(grey), Tensor(z)).asnumpy(), want_rgb,
                               atol=1e-6, rtol=0)
    prefix = str(tmp_path / 'colour')
    assert export_main(['--ckpt', PTH, '--file_name', prefix]) == 0  # MINDIR, dynamic sizes
    decolor = nn.GraphCell(ms.load(prefix + '_decolor.mindir'))
    colorize = nn.GraphCell(ms.load(prefix + '_colorize.mindir'))
    np.testing.assert_allclose(decolor(Tensor(rgb)).asnumpy(), want_grey, atol=1e-5)
    np.testing.assert_allclose(colorize(Tensor(grey), Tensor(z)).asnumpy(), want_rgb, atol=1e-5)
    assert decolor(Tensor(rgb[:, :, :7, :9])).shape == (1, 1, 7, 9)
    assert export_main(['--ckpt', PTH, '--file_name', prefix, '--file_format', 'ONNX',
                        '--height', '12', '--width', '18']) == 0
    sess = ort.InferenceSession(prefix + '_decolor.onnx', providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(sess.run(None, {'rgb': rgb})[0], want_grey, atol=1e-5)
    sess = ort.InferenceSession(prefix + '_colorize.onnx', providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(sess.run(None, {'grey': grey, 'z': z})[0], want_rgb, atol=1e-4)


def _error(capsys, argv):
    assert convert_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0, err
    return err


def test_converter(tmp_path, capsys):
    dst = str(tmp_path / 'colour.ckpt')
    assert convert_main([PTH, dst]) == 0
    assert 'IRN-Color' in capsys.readouterr().out
    _, model, net = load_model(dst)
    assert model.name == 'IRN-Color' and net.block_num == [2]
    irn = os.path.join(DATA, 'irn_x2_tiny.pth')
    assert 'not an IRN-Color net' in _error(capsys, [irn, dst, '--model', 'IRN-Color'])
    assert 'does not apply to IRN-Color' in _error(capsys, [PTH, dst, '--scale', '2'])
    with pytest.raises(IRNError, match='checkpoint of a IRN-Color model, but this is IRN'):
        load_model(dst, os.path.join(ROOT, 'src', 'options', 'test_IRN_x2.yml'))

