"""Parity with the authors' PyTorch code (tests/data/irn_x{2,4}_tiny.*, made by their code).

Forward, inverse and quantisation outputs, and three replayed training steps: losses, the
pre-clip gradient norm, and the weights after the last Adam update.
"""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import DATA, fixture
from src.loss import IRNWithLoss
from src.network import Quantization, build_from_arch
from src.optim import ClippedAdam, TrainStep
from src.utils.checkpoint import load_weights, read_checkpoint

CASES = ['irn_x2_tiny', 'irn_x4_tiny']


def fixture_net(name):
    """The network of tests/data/<name>.pth (architecture read from its keys), and the npz."""
    d = fixture(name)
    pth = os.path.join(DATA, name + '.pth')
    arch = read_checkpoint(pth)[1]
    assert arch['block_num'] == [int(b) for b in d['block_num']] and arch['scale'] == int(d['scale'])
    net = build_from_arch(arch)
    load_weights(net, pth)
    return net, d


def check_outputs(name):
    """Forward, inverse, quantised LR and the inverse with the fixture's z and with z = 0."""
    net, d = fixture_net(name)
    out = net(Tensor(d['input'])).asnumpy()
    np.testing.assert_allclose(out, d['fwd_out'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(net.inverse(Tensor(d['fwd_out'])).asnumpy(), d['rev_exact'],
                               atol=1e-5, rtol=0)
    lr = out[:, :3]
    quant = Quantization()(Tensor(lr)).asnumpy()
    scaled = np.clip(d['fwd_out'][:, :3], 0, 1) * 255
    near_boundary = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3
    assert np.array_equal(quant[~near_boundary], d['lr_quant'][~near_boundary])
    lr_q = Tensor(d['lr_quant'])
    np.testing.assert_allclose(net.upscale(lr_q, Tensor(d['z'])).asnumpy(), d['rev_quant_z'],
                               atol=1e-5, rtol=0)
    zero = Tensor(np.zeros_like(d['z']))
    np.testing.assert_allclose(net.upscale(lr_q, zero).asnumpy(), d['rev_quant_zero'],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', CASES)
def test_forward_inverse_quantisation(name):
    check_outputs(name)


def replay_steps(net, d, step, target='lr_ref'):
    """Run fixture ``d``'s recorded steps through ``step`` (called as ``step(hr, ref, z, lr)``,
    ``ref`` the ``step{k}_<target>`` array); check losses, norms and the final weights."""
    lr = Tensor(2e-4, ms.float32)
    for k in range(int(d['train_steps'])):
        out = step(Tensor(d[f'step{k}_hr']), Tensor(d[f'step{k}_{target}']), Tensor(d[f'step{k}_z']), lr)
        _, l_fit, l_ce, l_rec, norm, applied = [o.asnumpy() for o in out]
        assert applied
        for value, key in ((l_fit, 'loss_fit'), (l_ce, 'loss_ce'), (l_rec, 'loss_rec'),
                           (norm, 'grad_norm')):
            np.testing.assert_allclose(value, d[f'step{k}_{key}'], rtol=1e-4, err_msg=key)
    diffs = np.concatenate([np.abs(p.asnumpy() - d['final/' + p.name]).ravel()
                            for p in net.trainable_params()])
    assert diffs.max() <= 5e-5
    assert np.mean(diffs <= 1e-6) >= 0.999


def replay(name, make_step):
    """Replay an IRN fixture's steps through ``make_step(net, scale)``; returns the net."""
    net, d = fixture_net(name)
    replay_steps(net, d, make_step(net, int(d['scale'])))
    return net


def plain_step(net, scale):
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
    return TrainStep(IRNWithLoss(net, float(scale ** 2)), adam)


@pytest.mark.parametrize('name', CASES)
def test_training_steps_graph(name):
    replay(name, plain_step)


def test_training_steps_pynative(pynative):
    replay('irn_x4_tiny', plain_step)
