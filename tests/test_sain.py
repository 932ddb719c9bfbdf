"""SAIN parity with the authors' code (tests/data/sain_x2_jpeg_tiny.*, made by their modules).

Forward (both LRs and the latent part), the mixture sample from given noise, the differentiable
JPEG and its vector-Jacobian product, the real codec from the stored bytes, the inverse from
each compressed LR with the given z, and three replayed training steps. Tolerances: SAIN.md 11.
"""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, Tensor

from conftest import DATA, fixture
from sain_reference import diffjpeg as diffjpeg_reference
from src.codecs.diffjpeg import DiffJPEG
from src.codecs.real import decode, encode, roundtrip_batch, to_uint8
from src.convert import read_pth
from src.loss import SAINWithLoss
from src.network.sain import SAINet, torch_state_to_sain
from src.optim import ClippedAdam, TrainStep
from src.sain_step import SAINStep, quantize
from src.utils.checkpoint import load_into

NAME = 'sain_x2_jpeg_tiny'
PTH = os.path.join(DATA, NAME + '.pth')


@pytest.fixture(scope='module')
def d():
    return fixture(NAME)


def _net():
    weights, arch = torch_state_to_sain(read_pth(PTH), PTH)
    net = SAINet(arch['scale'], arch['e_blocks'], arch['v_blocks'], arch['gmm_components'])
    load_into(net, weights, PTH)
    return net, arch


def _near_boundary(lr):
    scaled = np.clip(lr, 0, 1) * 255
    return np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3


def test_converted_layout(d):
    _, arch = _net()
    assert (arch['scale'], arch['e_blocks'], arch['v_blocks'], arch['gmm_components']) == (
        int(d['scale']), int(d['e_blocks']), int(d['v_blocks']), int(d['gmm_components']))


def test_forward_inverse_and_taps(d):
    net, _ = _net()
    out, lr = [t.asnumpy() for t in net(Tensor(d['input']))]
    np.testing.assert_allclose(out, d['fwd_out'], atol=1e-5, rtol=0)  # simulated LR and z part
    np.testing.assert_allclose(lr, d['fwd_lr'], atol=1e-5, rtol=0)    # HQ LR of the last EIB
    assert np.abs(d['fwd_out'][:, :3] - d['fwd_lr']).max() > 1e-2     # the two LRs differ
    q = quantize(lr)
    edge = _near_boundary(d['fwd_lr'])
    assert np.array_equal(q[~edge], d['lr_quant'][~edge])
    x, lr_rec = [t.asnumpy() for t in net.inverse(Tensor(d['fwd_out']))]
    np.testing.assert_allclose(x, d['rev_exact'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(lr_rec, d['rev_exact_lr'], atol=1e-5, rtol=0)
    simulated = DiffJPEG(int(d['train_qf']))(Tensor(d['lr_quant'])).asnumpy()
    for key, lr_in in (('rev_quant_z', d['lr_quant']), ('rev_jpeg75_z', d['realcomp_JPEG_q75']),
                       ('rev_jpeg90_z', d['realcomp_JPEG_q90']), ('rev_diffjpeg_z', simulated)):
        x, lr_rec = [t.asnumpy() for t in net.inverse(Tensor(np.concatenate((lr_in, d['z']), 1)))]
        np.testing.assert_allclose(x, d[key], atol=1e-5, rtol=0, err_msg=key)
        np.testing.assert_allclose(lr_rec, d[key + '_lr'], atol=1e-5, rtol=0, err_msg=key)


def test_mixture_sample(d):
    net, _ = _net()
    probs, _, std = [t.asnumpy() for t in net.gmm.parts()]
    np.testing.assert_allclose(probs, d['gmm_probs'], rtol=1e-6)
    np.testing.assert_allclose(std, d['gmm_std'], rtol=1e-6)
    z = net.gmm(Tensor(d['z_gumbel']), Tensor(d['z_eps'])).asnumpy()
    assert z.shape == d['z'].shape == net.latent_shape(d['fwd_lr'].shape)
    np.testing.assert_allclose(z, d['z'], atol=1e-6, rtol=0)


class _Vjp(nn.Cell):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def construct(self, x, w):
        return (self.codec(x) * w).sum()


def test_diffjpeg_outputs_and_vjp(d, pynative):
    x = d['diffjpeg_in']
    for key, quality, differentiable in (('diffjpeg_q75', 75, True), ('diffjpeg_q30', 30, True),
                                         ('diffjpeg_q90', 90, True), ('diffjpeg_hard_q75', 75, False)):
        out = DiffJPEG(quality, differentiable)(Tensor(x)).asnumpy()
        np.testing.assert_allclose(out, d[key], atol=5e-6, rtol=0, err_msg=key)
    w, ref = Tensor(d['diffjpeg_vjp_w']), d['diffjpeg_q75_vjp']
    grad = ms.grad(_Vjp(DiffJPEG(75)))(Tensor(x), w).asnumpy()
    # the Fourier rounding's float32 backward carries ~1e-4 relative noise (SAIN.md 10.13)
    assert np.linalg.norm(grad - ref) <= 1e-4 * np.linalg.norm(ref)
    assert np.abs(grad - ref).max() <= 1e-4 * np.abs(ref).max()
    # ... and it is no noisier than the authors' own float32 against a float64 evaluation
    exact = ms.grad(_Vjp(DiffJPEG(75, dtype=ms.float64)))(
        Tensor(x.astype(np.float64)), Tensor(d['diffjpeg_vjp_w'].astype(np.float64))).asnumpy()
    assert np.linalg.norm(grad - exact) <= 2 * np.linalg.norm(ref - exact)


@pytest.mark.parametrize('shape,quality', [((2, 3, 32, 48), 75), ((1, 3, 48, 16), 30)])
def test_diffjpeg_other_sizes_against_float64(shape, quality, pynative):
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    for differentiable in (True, False):
        out = DiffJPEG(quality, differentiable)(Tensor(x)).asnumpy()
        ref = diffjpeg_reference(x.astype(np.float64), quality, differentiable)
        if differentiable:
            np.testing.assert_allclose(out, ref, atol=5e-6, rtol=0)
        else:  # a coefficient within float noise of .5 may round the other way
            assert np.mean(np.abs(out - ref) > 5e-6) < 0.01


def test_real_codec_from_stored_bytes(d):
    for key, fmt, quality in (('realcomp_JPEG_q75', 'jpeg', 75), ('realcomp_JPEG_q90', 'jpeg', 90),
                              ('realcomp_WebP_q90', 'webp', 90)):
        stored = d[key + '_bytes0'].tobytes()
        decoded = decode(stored).transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
        assert np.array_equal(decoded, d[key]), key
        ours, sizes = roundtrip_batch(d['lr_quant'], fmt, quality)
        assert np.array_equal(ours, d[key]), key
        if fmt == 'jpeg':  # libjpeg-turbo through OpenCV writes Pillow's bytes
            assert sizes == [len(stored)]
            assert encode(to_uint8(d['lr_quant'][0].transpose(1, 2, 0)), fmt, quality) == stored
    for k in range(int(d['train_steps'])):
        assert np.array_equal(roundtrip_batch(d[f'step{k}_lr_ref'], 'jpeg', 75)[0], d[f'step{k}_realcomp_ref'])
        assert np.array_equal(roundtrip_batch(d[f'step{k}_lr_quant'], 'jpeg', 75)[0], d[f'step{k}_realcomp_lr'])


def test_training_steps(d):
    """The authors' optimize_parameters replayed: per step the mixture draw, the HQ LR, every
    loss term and the pre-clip gradient norm; then the weights after the last Adam update."""
    net, _ = _net()
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=float(d['weight_decay']),
                       clip_norm=float(d['clip']))
    loss = SAINWithLoss(net, DiffJPEG(int(d['train_qf'])), float(d['lambda_fit']), float(d['lambda_rec']))
    step = SAINStep(net, TrainStep(loss, adam), 'JPEG', int(d['train_qf']))
    lr = Tensor(np.float32(d['lr']))
    names = ('loss', 'loss_fit1', 'loss_fit2', 'loss_reg', 'loss_rel', 'loss_back_rec', 'grad_norm')
    for k in range(int(d['train_steps'])):
        hr, gumbel, eps = d[f'step{k}_hr'], d[f'step{k}_gumbel'], d[f'step{k}_eps']
        z = net.gmm(Tensor(gumbel), Tensor(eps)).asnumpy()
        np.testing.assert_allclose(z, d[f'step{k}_z'], atol=1e-5, rtol=0)
        tap = step.tap(Tensor(hr)).asnumpy()
        np.testing.assert_allclose(tap, d[f'step{k}_fwd_lr'], atol=1e-5, rtol=0)
        edge = _near_boundary(d[f'step{k}_fwd_lr'])
        assert np.array_equal(quantize(tap)[~edge], d[f'step{k}_lr_quant'][~edge])
        # the fixture's Q(y): a rounding flip at a boundary would move a whole 8x8 block's slopes
        out = step(hr, d[f'step{k}_lr_ref'], gumbel, eps, lr, lr_quant=d[f'step{k}_lr_quant'])
        values = [o.asnumpy() for o in out]
        assert values[-1], f'step {k} was skipped'
        for name, value in zip(names, values):
            np.testing.assert_allclose(value, d[f'step{k}_{name}'], rtol=1e-4, err_msg=f'step {k} {name}')
    diffs = np.concatenate([np.abs(p.asnumpy() - d['final/' + p.name]).ravel()
                            for p in net.trainable_params()])
    assert diffs.size == sum(d['final/' + p.name].size for p in net.trainable_params())
    assert np.mean(diffs <= 1e-5) >= 0.999
    assert diffs.max() <= 2e-4
