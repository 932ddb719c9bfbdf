"""SAIN's tools on the fixture's weights: val.py's protocol and report, infer.py's compressed LR
files, and the exported graphs (MINDIR, ONNX) against the Cells."""
import json
import os

import cv2
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import DATA
from src.codecs.real import decode, roundtrip_batch
from src.metrics import calculate_psnr, tensor_to_uint8
from src.sain_eval import MixtureNet, SAINDownscaleNet, SAINUpscaleNet, sain_z
from src.sain_infer import jpeg_comments, read_meta
from src.utils.errors import IRNError

PTH = os.path.join(DATA, 'sain_x2_jpeg_tiny.pth')
IRN = os.path.join(DATA, 'irn_x2_tiny.pth')


@pytest.fixture(scope='module')
def loaded():
    from src.models import load_model
    return load_model(PTH)


def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    return np.round(cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 1.5) * 255).astype(np.uint8)


def _folder(path, sizes):
    os.makedirs(path, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(os.path.join(path, f'im{i}.png'), _photo(h, w, i)[:, :, ::-1])
    return str(path)


def test_bare_pth_is_recognised_as_sain(loaded):
    opt, model, net = loaded
    assert model.name == 'SAIN' and net.arch()['e_blocks'] == 2
    assert opt['test']['qualities'] == [30, 50, 70, 80, 90]


def test_val_report_follows_the_protocol(loaded, tmp_path, capsys):
    from val import main as val_main
    data = _folder(tmp_path / 'set', [(32, 48), (24, 40)])
    report = str(tmp_path / 'r.json')
    assert val_main(['--ckpt', PTH, '--data_path', data, '--qualities', '75', '-1', '--seed', '3',
                     '--irn_ckpt', IRN, '--report', report, '--no_progress']) == 0
    out = capsys.readouterr().out
    assert 'Bicubic & Bicubic' in out and 'JPEG QF 75' in out and 'seed 3, 1 draw(s)' in out
    rows = json.load(open(report))['sets']['set']['images']
    # recompute SAIN at QF 75 for the first image by hand, from the same seeded mixture draw
    _, _, net = loaded
    hr = cv2.imread(os.path.join(data, 'im0.png'))[:, :, ::-1].astype(np.float32) / 255
    lr = SAINDownscaleNet(net)(Tensor(hr.transpose(2, 0, 1)[None].copy())).asnumpy()
    lr_c, sizes = roundtrip_batch(lr, 'jpeg', 75)
    z = sain_z(net, lr_c.shape, 3, 0, 0)
    sr = tensor_to_uint8(SAINUpscaleNet(net)(Tensor(lr_c), Tensor(z)).asnumpy()[0])
    gt = np.round(hr * 255).astype(np.uint8)
    r = rows[0]
    assert r['name'] == 'im0'
    assert r['SAIN_q75_bpp'] == pytest.approx(8 * sizes[0] / (32 * 48))
    assert r['SAIN_q75_psnr_y'] == pytest.approx(calculate_psnr(sr, gt, 2, True), abs=1e-6)
    assert r['SAIN_q75_psnr_rgb'] == pytest.approx(calculate_psnr(sr, gt, 2), abs=1e-6)
    for key in ('IRN_q75_psnr_y', 'bicubic_q75_ssim_rgb', 'SAIN_raw_psnr_y', 'lr_psnr_y'):
        assert np.isfinite(r[key]), key
    assert r['bicubic_q75_psnr_y'] > r['SAIN_q75_psnr_y']  # random weights: SAIN is no good
    assert os.path.isfile(str(tmp_path / 'r.csv'))


def test_infer_down_up_roundtrip(tmp_path, capsys):
    from infer import main as infer_main
    src = str(tmp_path / 'odd.png')
    cv2.imwrite(src, _photo(37, 50, 5)[:, :, ::-1])
    assert infer_main(['down', '--ckpt', PTH, '--input', src, '--output', str(tmp_path / 'lr'),
                       '--format', 'jpeg', '--quality', '60']) == 0
    lr_path = str(tmp_path / 'lr' / 'odd.jpg')
    data = open(lr_path, 'rb').read()
    assert read_meta(data) == {'model': 'SAIN', 'scale': 2, 'height': 37, 'width': 50,
                               'format': 'jpeg', 'quality': 60}
    assert decode(data).shape == (19, 25, 3) and len(jpeg_comments(data)) == 1
    assert infer_main(['up', '--ckpt', PTH, '--input', lr_path, '--output', str(tmp_path / 'hr')]) == 0
    assert cv2.imread(str(tmp_path / 'hr' / 'odd.png')).shape == (37, 50, 3)
    assert infer_main(['down', '--ckpt', PTH, '--input', src, '--output', str(tmp_path / 'w'),
                       '--format', 'webp', '--quality', '80']) == 0
    webp = open(str(tmp_path / 'w' / 'odd.webp'), 'rb').read()
    assert webp[:4] == b'RIFF' and webp[8:12] == b'WEBP'
    assert infer_main(['roundtrip', '--ckpt', PTH, '--input', src, '--output', str(tmp_path / 'rt')]) == 0
    assert 'bpp, round trip PSNR' in capsys.readouterr().out
    with pytest.raises(IRNError, match='--quality 0'):
        infer_main(['down', '--ckpt', PTH, '--input', src, '--output', str(tmp_path), '--quality', '0'])


def _inputs(net, h, w):
    rng = np.random.default_rng(1)
    zc, k = net.channel_out - 3, net.gmm_components
    return (rng.random((1, 3, h, w), dtype=np.float32),
            np.round(rng.random((1, 3, h // 2, w // 2)) * 255).astype(np.float32) / 255,
            rng.standard_normal((1, zc, h // 2, w // 2), dtype=np.float32),
            -np.log(rng.standard_exponential((1, zc, h // 2, w // 2, k), dtype=np.float32)),
            rng.standard_normal((1, zc, h // 2, w // 2, k), dtype=np.float32))


def test_exported_graphs_match_the_cells(loaded, tmp_path):
    import onnxruntime as ort
    from src.exporting import write_graphs
    _, model, net = loaded
    hr, lr, z, gumbel, eps = _inputs(net, 32, 48)
    want = [SAINDownscaleNet(net)(Tensor(hr)).asnumpy(),
            SAINUpscaleNet(net)(Tensor(lr), Tensor(z)).asnumpy(),
            MixtureNet(net)(Tensor(gumbel), Tensor(eps)).asnumpy()]
    feeds = [(hr,), (lr, z), (gumbel, eps)]
    paths = write_graphs(model.export_cells(net), str(tmp_path / 'sain'), 'MINDIR')
    assert [os.path.basename(p) for p in paths] == ['sain_down.mindir', 'sain_up.mindir', 'sain_z.mindir']
    for path, args, expected in zip(paths, feeds, want):
        got = nn.GraphCell(ms.load(path))(*[Tensor(a) for a in args]).asnumpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=path)
    paths = write_graphs(model.export_cells(net, 32, 48), str(tmp_path / 'onnx'), 'ONNX')
    for path, args, expected in zip(paths, feeds, want):
        sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        got = sess.run(None, {i.name: a for i, a in zip(sess.get_inputs(), args)})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=path)


def test_converter_writes_a_checkpoint_that_loads_back(loaded, tmp_path, capsys):
    from src.convert import main as convert_main
    from src.models import load_model
    dst = str(tmp_path / 'sain.ckpt')
    assert convert_main([PTH, dst, '--scale', '2']) == 0
    assert 'SAIN x2 with e_blocks 2, v_blocks 1' in capsys.readouterr().out
    _, model, net = load_model(dst)
    assert model.name == 'SAIN'
    ref = {p.name: p.asnumpy() for p in loaded[2].get_parameters()}
    assert {p.name: p.asnumpy().tobytes() for p in net.get_parameters()} == \
        {k: v.tobytes() for k, v in ref.items()}
    assert convert_main([PTH, str(tmp_path / 'x4.ckpt'), '--scale', '4']) == 2
    assert 'x2 SAIN' in capsys.readouterr().err
