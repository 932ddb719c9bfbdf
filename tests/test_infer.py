"""infer.py on the tiny authors' x4 fixture: any size, tiling, odd inputs, clear errors."""
import logging
import os

import cv2
import numpy as np
import pytest

from conftest import DATA
from infer import main as infer_main, pad_to_multiple
from src.data.io import read_image_uint8
from src.inference import Rescaler, load_network, make_z
from src.lrfile import read_lr_meta, write_lr_png
from src.metrics import calculate_psnr
from src.utils.errors import IRNError
from src.utils.graphs import compilations
from src.utils.tiling import tile_spans, tiled_apply

PTH4 = os.path.join(DATA, 'irn_x4_tiny.pth')
PTH2 = os.path.join(DATA, 'irn_x2_tiny.pth')


@pytest.fixture(scope='module')
def rescaler():
    return Rescaler(load_network(PTH4, scale=4))


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 1.5)
    return np.round(img * 255).astype(np.uint8)


def test_tile_spans_cover_and_tiled_apply_is_exact_for_local_maps():
    for length, tile, overlap, align in [(100, 32, 8, 4), (37, 16, 6, 1), (20, 64, 8, 4)]:
        spans = tile_spans(length, tile, overlap, align)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(t0 <= c0 and c1 <= t1 and t1 - t0 <= max(tile, 1) for c0, c1, t0, t1 in spans)
        assert all(c0 % align == 0 and t0 % align == 0 for c0, _, t0, _ in spans)
        assert len({t1 - t0 for _, _, t0, t1 in spans}) == 1  # one tile shape: one graph
        half = overlap // 2
        assert all((c0 == 0 or c0 - t0 >= half) and (c1 == length or t1 - c1 >= half)
                   for c0, c1, t0, t1 in spans)
    x = np.random.default_rng(0).random((36, 52, 3)).astype(np.float32)
    pool = lambda t: t[0].reshape(t[0].shape[0] // 4, 4, t[0].shape[1] // 4, 4, 3).mean((1, 3))
    np.testing.assert_allclose(tiled_apply(pool, [x], 16, 8, align=4, out_num=1, out_den=4),
                               pool([x]), atol=1e-7)
    up = lambda t: np.repeat(np.repeat(t[0] + t[1], 2, 0), 2, 1)
    np.testing.assert_array_equal(tiled_apply(up, [x, x], 10, 4, out_num=2), up([x, x]))
    with pytest.raises(IRNError, match='overlap'):
        tile_spans(100, 16, 16, 4)


def test_tiled_matches_untiled(rescaler):
    hr8 = _photo(101, 123)
    hr = pad_to_multiple(hr8, 4).astype(np.float32) / 255
    lr = rescaler.down(hr)
    before = compilations()
    lr_t = rescaler.down(hr, tile=48, overlap=16)
    assert compilations() == before + 1  # 3 x 4 tiles of one shape
    assert lr_t.shape == lr.shape == (26, 31, 3)
    assert np.mean(lr_t != lr) < 0.05  # only pixels near tile seams may move, by 1/255
    z = make_z(rescaler.z_shape(26, 31), 'sample', 0)
    sr = rescaler.up(lr, z)
    sr_t = rescaler.up(lr_t, z, tile=48, overlap=16)
    to8 = lambda a: np.round(np.clip(a[:101, :123], 0, 1) * 255).astype(np.uint8)
    diff = abs(calculate_psnr(to8(sr), hr8) - calculate_psnr(to8(sr_t), hr8))
    assert diff < 0.05
    assert calculate_psnr(to8(sr_t), to8(sr)) > 40


def test_down_up_any_size_crops_back(tmp_path, capsys):
    src = tmp_path / 'odd.png'
    cv2.imwrite(str(src), _photo(45, 70, 1))
    assert infer_main(['down', '--ckpt', PTH4, '--input', str(src), '--output',
                       str(tmp_path / 'lr')]) == 0
    lr_path = tmp_path / 'lr' / 'odd.png'
    meta = read_lr_meta(str(lr_path), lr_path.read_bytes())
    assert meta['scale'] == 4 and (meta['height'], meta['width']) == (45, 70)
    assert cv2.imread(str(lr_path)).shape == (12, 18, 3)
    assert infer_main(['up', '--ckpt', PTH4, '--input', str(tmp_path / 'lr'), '--output',
                       str(tmp_path / 'hr'), '--z_mode', 'zero']) == 0
    assert cv2.imread(str(tmp_path / 'hr' / 'odd.png')).shape == (45, 70, 3)
    assert infer_main(['roundtrip', '--ckpt', PTH4, '--input', str(src), '--output',
                       str(tmp_path / 'rt'), '--tile', '32', '--tile_overlap', '8']) == 0
    out = capsys.readouterr().out
    assert 'round trip PSNR' in out and 'tiles 32 overlap 8' in out
    assert cv2.imread(str(tmp_path / 'rt' / 'odd_rt.png')).shape == (45, 70, 3)


def test_gray_rgba_16bit_inputs_and_jpeg_warning(tmp_path, caplog):
    folder = tmp_path / 'in'
    folder.mkdir()
    img = _photo(24, 28, 2)
    cv2.imwrite(str(folder / 'gray.png'), img[:, :, 0])
    rgba16 = np.concatenate([img, np.full((24, 28, 1), 255, np.uint8)], 2).astype(np.uint16) * 257
    cv2.imwrite(str(folder / 'rgba16.png'), rgba16)
    assert infer_main(['down', '--ckpt', PTH4, '--input', str(folder), '--output',
                       str(tmp_path / 'lr')]) == 0
    for name in ('gray', 'rgba16'):
        lr = cv2.imread(str(tmp_path / 'lr' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert lr.dtype == np.uint8 and lr.shape == (6, 7, 3)
    # RGBA 16-bit of the same pixels gives exactly the LR of the 8-bit RGB image
    cv2.imwrite(str(tmp_path / 'rgb.png'), img)
    infer_main(['down', '--ckpt', PTH4, '--input', str(tmp_path / 'rgb.png'),
                '--output', str(tmp_path / 'rgb_lr.jpg')])
    assert 'must be stored losslessly' in caplog.text
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'rgb_lr.png')),
                                  cv2.imread(str(tmp_path / 'lr' / 'rgba16.png')))


def test_bicubic_lr_warns_and_upscales_full_size(tmp_path, caplog):
    lr = tmp_path / 'bicubic.png'
    cv2.imwrite(str(lr), cv2.resize(_photo(40, 48, 3), (12, 10), interpolation=cv2.INTER_AREA))
    with caplog.at_level(logging.WARNING, logger='irn'):
        infer_main(['up', '--ckpt', PTH4, '--input', str(lr), '--output', str(tmp_path / 'o')])
    assert 'no IRN metadata' in caplog.text and 'poorly' in caplog.text
    assert cv2.imread(str(tmp_path / 'o' / 'bicubic.png')).shape == (40, 48, 3)


def test_errors(tmp_path):
    bad = tmp_path / 'notes.png'
    bad.write_text('not an image')
    with pytest.raises(IRNError, match='notes.png'):
        infer_main(['down', '--ckpt', PTH4, '--input', str(bad), '--output', str(tmp_path)])
    with pytest.raises(IRNError, match=r'x2 IRN.*x4 was asked'):
        infer_main(['down', '--ckpt', PTH2, '--scale', '4', '--input', str(bad),
                    '--output', str(tmp_path)])
    lr8 = _photo(10, 12, 4)
    wrong = tmp_path / 'wrong.png'
    write_lr_png(str(wrong), lr8, {'scale': 4, 'height': 44, 'width': 48})
    with pytest.raises(IRNError, match=r'wrong.png: LR is 10x12.*needs 11x12'):
        infer_main(['up', '--ckpt', PTH4, '--input', str(wrong), '--output', str(tmp_path / 'o')])
    x2 = tmp_path / 'x2.png'
    write_lr_png(str(x2), lr8, {'scale': 2, 'height': 20, 'width': 24})
    with pytest.raises(IRNError, match='made at x2, but the checkpoint is x4'):
        infer_main(['up', '--ckpt', PTH4, '--input', str(x2), '--output', str(tmp_path / 'o')])
    src = tmp_path / 'same.png'
    cv2.imwrite(str(src), _photo(8, 8))
    with pytest.raises(IRNError, match='overwrite the input'):
        infer_main(['up', '--ckpt', PTH4, '--input', str(src), '--output', str(src)])
    assert read_image_uint8(str(src)).shape == (8, 8, 3)
