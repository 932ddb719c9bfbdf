"""IRN-Color (InvGreyNet) against the authors' code (tests/data/irn_color.*, made by their
IRNColorModel): outputs, quantised grey, colourisation with z = 0 and the given z, the
stand-alone Conv1x1Grey, init matrices, the grey target, three replayed training steps and
the test_IRN-Color.py metrics; plus invertibility on other sizes against float64 numpy."""
import os

import cv2
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import reference64 as ref
from conftest import DATA, fixture
from test_parity import replay_steps
from src.backprop import AccumulatingStep, BlockwiseGrad
from src.convert import read_pth
from src.network.grey import torch_to_grey
from src.data.grey import GreyPatchMaker, grey_target
from src.data.io import uint8_to_float
from src.data.pipeline import build_train_source
from src.evaluate import Downscaler
from src.evaluate_color import color_metrics, evaluate_color
from src.loss import IRNWithLoss
from src.metrics import tensor_to_uint8
from src.network.grey import Conv1x1Grey, InvGreyNet
from src.network.linalg import matrix_inverse
from src.optim import ClippedAdam, TrainStep
from src.utils.checkpoint import load_into, load_weights
from src.utils.errors import IRNError

PTH = os.path.join(DATA, 'irn_color.pth')


def _net():
    d = fixture('irn_color')
    arch = torch_to_grey(read_pth(PTH), PTH)[1]  # the layout the .pth's keys declare
    assert arch['block_num'] == [int(b) for b in d['block_num']]
    net = InvGreyNet(arch['block_num'])
    load_weights(net, PTH)  # the authors' .pth through InvGreyNet.from_torch
    return net, d


def test_forward_grey_and_colourisation():
    net, d = _net()
    out = net(Tensor(d['input'])).asnumpy()
    np.testing.assert_allclose(out, d['fwd_out'], atol=1e-5, rtol=0)
    grey_q, z = [t.asnumpy() for t in Downscaler(net)(Tensor(d['input']))]
    assert grey_q.shape == d['lr_quant'].shape and z.shape == d['z'].shape
    scaled = np.clip(d['fwd_out'][:, :1], 0, 1) * 255
    near_boundary = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3
    assert np.array_equal(grey_q[~near_boundary], d['lr_quant'][~near_boundary])
    rev = net.inverse(Tensor(d['fwd_out'])).asnumpy()
    np.testing.assert_allclose(rev, d['rev_exact'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(rev, d['input'], atol=1e-5, rtol=0)
    grey = Tensor(d['lr_quant'])
    np.testing.assert_allclose(net.upscale(grey, Tensor(d['z'])).asnumpy(), d['rev_quant_z'],
                               atol=1e-5, rtol=0)
    zero = Tensor(np.zeros_like(d['z']))
    np.testing.assert_allclose(net.upscale(grey, zero).asnumpy(), d['rev_quant_zero'],
                               atol=1e-5, rtol=0)


def test_conv1x1grey_standalone_and_init():
    d = fixture('irn_color')
    op = Conv1x1Grey()
    np.testing.assert_array_equal(op.conv_weights.asnumpy(), d['c1_init_rgb'])
    np.testing.assert_array_equal(Conv1x1Grey('BGR').conv_weights.asnumpy(), d['c1_init_bgr'])
    op.conv_weights.set_data(Tensor(d['c1_weight']))
    np.testing.assert_allclose(op(Tensor(d['c1_in'])).asnumpy(), d['c1_fwd'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(op.inverse(Tensor(d['c1_fwd'])).asnumpy(), d['c1_rev'],
                               atol=1e-6, rtol=0)
    op.freeze_inverse()  # the export form: the inverse a constant taken now
    np.testing.assert_allclose(op.inverse(Tensor(d['c1_fwd'])).asnumpy(), d['c1_rev'],
                               atol=1e-6, rtol=0)
    with pytest.raises(IRNError, match="rgb_type must be 'RGB' or 'BGR'"):
        Conv1x1Grey('YUV')


def test_fresh_net_is_the_colour_matrix_and_paper_size():
    net = InvGreyNet([8])
    assert sum(p.size for p in net.trainable_params()) == 1413601  # spec section 3
    x = np.random.default_rng(3).random((1, 3, 9, 14)).astype(np.float32)
    w = net.operations[0].conv_weights.asnumpy().astype(np.float64)
    expected = np.einsum('kj,bjhw->bkhw', w, x.astype(np.float64))  # identity blocks at init
    np.testing.assert_allclose(net(Tensor(x)).asnumpy(), expected, atol=1e-6)
    np.testing.assert_allclose(ref.evaluate(net, x), expected, atol=1e-12)


def test_matrix_inverse_and_its_gradient_are_exact():
    d = fixture('irn_color')
    w = d['c1_weight']
    cot = np.random.default_rng(4).standard_normal((3, 3))

    class Probe(nn.Cell):
        def construct(self, m, c):
            return (matrix_inverse(m) * c).sum()

    inv = np.linalg.inv(w.astype(np.float64))
    np.testing.assert_allclose(matrix_inverse(Tensor(w)).asnumpy(), inv, rtol=0,
                               atol=np.spacing(np.float32(np.abs(inv).max())))
    grad = ms.grad(Probe())(Tensor(w), Tensor(cot.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(grad, -inv.T @ cot @ inv.T, rtol=1e-6, atol=1e-6)


def test_grey_target_is_the_authors_bit_for_bit():
    d = fixture('irn_color')
    pairs = [('input', 'grey_ref')] + [(f'step{k}_hr', f'step{k}_grey_ref')
                                       for k in range(int(d['train_steps']))]
    for image, target in pairs:
        for b in range(d[image].shape[0]):
            grey = grey_target(d[image][b].transpose(1, 2, 0)).transpose(2, 0, 1)
            np.testing.assert_array_equal(grey, d[target][b])


@pytest.mark.parametrize('mode,micro', [('plain', None), ('recompute', None), ('invertible', 1)])
def test_training_steps(mode, micro):
    """The authors' three steps in the plain step and the block-wise memory modes (micro-batches
    of 1 accumulate the batch of 2)."""
    net, d = _net()
    init = net.operations[0].conv_weights.asnumpy().copy()
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
    loss = IRNWithLoss(net, float(d['lambda_fit']), gaussian_scale=float(d['gaussian_scale']))
    if mode == 'plain':
        step = TrainStep(loss, adam)
    else:
        step = AccumulatingStep(BlockwiseGrad(loss, store_inputs=mode == 'recompute'), adam, micro)
    replay_steps(net, d, step, target='grey_ref')
    final = net.operations[0].conv_weights.asnumpy()
    expected = d['final/operations.0.conv_weights']
    assert np.abs(expected - init).max() > 1e-4  # the matrix is trained ...
    np.testing.assert_allclose(final, expected, atol=1e-6, rtol=0)  # ... as theirs


def test_metrics_as_test_irn_color():
    net, d = _net()
    crop = int(d['test_crop'])
    keys = ('psnr_rgb', 'ssim_rgb', 'psnr_grey', 'ssim_grey')
    fixture_keys = ('test_psnr', 'test_ssim', 'test_psnr_grey', 'test_ssim_grey')
    for b in range(d['input'].shape[0]):  # the protocol, on the authors' own images
        m = color_metrics(tensor_to_uint8(d['input'][b]), tensor_to_uint8(d['rev_quant_zero'][b]),
                          tensor_to_uint8(d['grey_ref'][b]), tensor_to_uint8(d['lr_quant'][b]), crop)
        for key, fkey in zip(keys, fixture_keys):
            np.testing.assert_allclose(m[key], d[fkey][b], rtol=1e-12, err_msg=key)
    source = [(str(b), d['input'][b].transpose(1, 2, 0)) for b in range(d['input'].shape[0])]
    rows = evaluate_color(net, source, crop)  # our network end to end
    for b, row in enumerate(rows):
        for key, fkey in zip(keys, fixture_keys):
            np.testing.assert_allclose(row[key], d[fkey][b], rtol=1e-6, err_msg=key)


def test_invertible_on_odd_sizes_against_float64():
    net = InvGreyNet([2])
    rng = np.random.default_rng(5)
    for p in net.trainable_params():  # non-trivial blocks, a perturbed matrix
        p.set_data(Tensor((p.asnumpy() + rng.standard_normal(p.shape) * 0.02).astype(np.float32)))
    x = rng.random((2, 3, 13, 21)).astype(np.float32)
    expected = ref.evaluate(net, x)
    w = net.operations[0].conv_weights.asnumpy().astype(np.float64)
    mixed = np.einsum('kj,bjhw->bkhw', w, x.astype(np.float64))
    assert np.abs(expected - mixed).max() > 1e-2  # the blocks really act
    out = net(Tensor(x))
    np.testing.assert_allclose(out.asnumpy(), expected, atol=1e-5, rtol=0)
    back = net.inverse(out).asnumpy()
    np.testing.assert_allclose(back, x, atol=1e-5, rtol=0)
    np.testing.assert_allclose(back, ref.evaluate(net, out.asnumpy(), inverse=True), atol=1e-5,
                               rtol=0)


def test_converter_rejects_other_models():
    irn = read_pth(os.path.join(DATA, 'irn_x2_tiny.pth'))
    with pytest.raises(IRNError, match='base IRN state_dict'):
        torch_to_grey(irn, 'irn.pth')
    state = dict(read_pth(PTH))
    state['operations.0.conv_weights'] = np.eye(4, dtype=np.float32)
    with pytest.raises(IRNError, match='not the 3x3 colour matrix'):
        torch_to_grey(state, 'ld.pth')
    weights, arch = torch_to_grey(read_pth(PTH), PTH)
    assert arch == InvGreyNet([2]).arch()
    with pytest.raises(IRNError, match='checkpoint is for .*block_num \\[2\\].*block_num \\[3\\]'):
        load_weights(InvGreyNet([3]), PTH)
    with pytest.raises(IRNError, match='missing'):
        load_into(InvGreyNet([3]), weights, PTH)


def test_grey_training_patches(tmp_path):
    """The authors' use_grey sample: GT_size crop at randint positions (no mod-crop), images
    smaller than GT_size resized to GT_size x GT_size first, grey = the cv2 grey of the patch."""
    rng_img = np.random.default_rng(6)
    img = rng_img.integers(0, 256, (21, 27, 3), dtype=np.uint8)
    maker = GreyPatchMaker(16, use_flip=False, use_rot=False)
    patch, grey = maker(img, np.random.default_rng(7))
    draws = np.random.default_rng(7)
    top, left = int(draws.integers(0, 21 - 16 + 1)), int(draws.integers(0, 27 - 16 + 1))
    np.testing.assert_array_equal(patch, uint8_to_float(img[top:top + 16, left:left + 16]))
    np.testing.assert_array_equal(grey, grey_target(patch))
    small = img[:9, :20]
    patch, _ = maker(small, np.random.default_rng(8))
    whole = cv2.resize(uint8_to_float(small), (16, 16), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(patch, whole)
    flipping = GreyPatchMaker(16)
    for seed in range(4):  # flips / transpose: the grey is still the patch's own
        patch, grey = flipping(img, np.random.default_rng(seed))
        assert patch.shape == (16, 16, 3) and grey.shape == (16, 16, 1)
        np.testing.assert_array_equal(grey, grey_target(patch))
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f'{i}.png'), img[..., ::-1])
    opt = {'scale': 2, 'train': {'niter': 3, 'manual_seed': 0},
           'datasets': {'train': {'dataroot_GT': str(folder), 'batch_size': 2, 'GT_size': 16,
                                  'use_grey': True}}}
    hr, target = build_train_source(opt)[0]
    assert hr.shape == (3, 16, 16) and target.shape == (1, 16, 16)
    np.testing.assert_array_equal(target, grey_target(hr.transpose(1, 2, 0)).transpose(2, 0, 1))
