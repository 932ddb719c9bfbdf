"""SAIN network structure: parameter counts, float64 agreement and exact inverse at other
scales, batches and odd non-square sizes, the mixture's gradients, the converter's checks."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import fixture
from sain_reference import sain_forward, sain_inverse
from src.network.sain import SAINet, torch_state_to_sain
from src.utils.errors import IRNError


@pytest.mark.parametrize('scale,e_blocks,v_blocks,key', [(2, 5, 3, 'nparams_x2_e5v3'),
                                                         (4, 10, 6, 'nparams_x4_e10v6')])
def test_parameter_counts(scale, e_blocks, v_blocks, key):
    expected = fixture('sain_x2_jpeg_tiny')[key]  # (all incl. the Haar kernels, trainable)
    assert SAINet(scale, e_blocks, v_blocks, 5).num_parameters() == tuple(int(n) for n in expected)


def _perturbed(scale, e_blocks, v_blocks, seed):
    """A net whose every sub-network (conv5 included) and the mixture are non-trivial."""
    net = SAINet(scale, e_blocks, v_blocks, 5, seed=seed)
    rng = np.random.default_rng(seed)
    for p in net.trainable_params():
        if p.name.endswith('conv5.weight') or p.name.endswith('conv5.bias'):
            p.set_data(Tensor((rng.standard_normal(p.shape) * 0.01).astype(np.float32)))
    net.gmm.gmm_para.set_data(Tensor(rng.standard_normal((3, 5)).astype(np.float32) * 0.5))
    return net, {p.name: p.asnumpy().astype(np.float64) for p in net.trainable_params()}


@pytest.mark.parametrize('scale,hr_shape', [(2, (2, 3, 22, 30)), (4, (2, 3, 36, 20))])
def test_against_float64_and_inverse(scale, hr_shape):
    levels = int(np.log2(scale))
    net, params = _perturbed(scale, 2, 1, seed=scale)
    rng = np.random.default_rng(7)
    x = rng.random(hr_shape).astype(np.float32)
    out, lr = [t.asnumpy() for t in net(Tensor(x))]
    h, w = hr_shape[2] // scale, hr_shape[3] // scale
    assert out.shape == (2, 3 * scale ** 2, h, w) and lr.shape == (2, 3, h, w)
    ref_out, ref_lr = sain_forward(x.astype(np.float64), params, levels, 2, 1)
    np.testing.assert_allclose(out, ref_out, atol=1e-6, rtol=0)
    np.testing.assert_allclose(lr, ref_lr, atol=1e-6, rtol=0)
    assert np.abs(out[:, :3] - lr).max() > 1e-3  # the VB really changes the LR
    back, tap = [t.asnumpy() for t in net.inverse(Tensor(out))]
    np.testing.assert_allclose(back, x, atol=1e-6, rtol=0)
    np.testing.assert_allclose(tap, lr, atol=1e-6, rtol=0)  # exact inverse: same tap value
    # inverse from another LR with a sampled z, as at test time
    z_shape = net.latent_shape(lr.shape)
    gumbel = -np.log(rng.standard_exponential(z_shape + (5,))).astype(np.float32)
    eps = rng.standard_normal(z_shape + (5,)).astype(np.float32)
    z = net.gmm(Tensor(gumbel), Tensor(eps)).asnumpy()
    y = np.concatenate((np.round(np.clip(lr, 0, 1) * 255) / 255, z), 1).astype(np.float32)
    rec, rec_lr = [t.asnumpy() for t in net.inverse(Tensor(y))]
    ref_rec, ref_rec_lr = sain_inverse(y.astype(np.float64), params, levels, 2, 1)
    scale_of = max(1.0, np.abs(ref_rec).max())  # z of a few units: outputs far from [0, 1]
    np.testing.assert_allclose(rec, ref_rec, atol=1e-6 * scale_of, rtol=0)
    np.testing.assert_allclose(rec_lr, ref_rec_lr, atol=1e-6 * scale_of, rtol=0)


def test_mixture_sample_float64_and_gradients(pynative):
    net, params = _perturbed(2, 1, 0, seed=5)
    para = params['gmm.gmm_para']
    rng = np.random.default_rng(11)
    gumbel = -np.log(rng.standard_exponential((2, 3, 4, 5, 5)))
    eps = rng.standard_normal((2, 3, 4, 5, 5))
    z = net.gmm(Tensor(gumbel.astype(np.float32)), Tensor(eps.astype(np.float32))).asnumpy()
    probs = np.exp(para[0]) / np.exp(para[0]).sum()
    pick = np.argmax(np.log(probs) + gumbel, -1)
    std = np.exp(0.5 * np.clip(para[2], -20, 20))
    expected = para[1][pick] + np.take_along_axis(eps, pick[..., None], -1)[..., 0] * std[pick]
    np.testing.assert_allclose(z, expected, atol=1e-5, rtol=0)
    # straight-through: d z / d mu_k = 1 where k is picked; pi only through the soft weights
    grad = ms.grad(lambda g, e: net.gmm(g, e).sum(), None, net.gmm.trainable_params())(
        Tensor(gumbel.astype(np.float32)), Tensor(eps.astype(np.float32)))[0].asnumpy()
    np.testing.assert_allclose(grad[1], np.bincount(pick.ravel(), minlength=5), rtol=1e-5)
    soft = np.exp(np.log(probs) + gumbel)
    soft /= soft.sum(-1, keepdims=True)
    samples = para[1] + eps * std
    d_logits = soft * (samples - (soft * samples).sum(-1, keepdims=True))  # d sum(soft.s)/d logits
    d_pi = d_logits.sum(axis=(0, 1, 2, 3)) - probs * d_logits.sum()  # through log(softmax)
    np.testing.assert_allclose(grad[0], d_pi, rtol=1e-4, atol=1e-4)


def test_converter_checks():
    net = SAINet(2, 1, 1, 3)
    state = {p.name: p.asnumpy() for p in net.trainable_params()}
    good = np.tile(np.array([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]],
                             [[1, -1], [-1, 1]]], np.float32)[:, None], (3, 1, 1, 1))
    state['haar_operations.0.haar_weights'] = good
    weights, arch = torch_state_to_sain({'module.' + k: v for k, v in state.items()}, 'a.pth')
    assert arch == net.arch() and set(weights) == {p.name for p in net.trainable_params()}
    with pytest.raises(IRNError, match='a.pth: unexpected key'):
        torch_state_to_sain({**state, 'operations.0.F.conv1.weight': good}, 'a.pth')
    with pytest.raises(IRNError, match='not the Haar kernel'):
        torch_state_to_sain({**state, 'haar_operations.0.haar_weights': -good}, 'a.pth')
    gap = {k: v for k, v in state.items() if not k.startswith('down_operations.0.')}
    gap.update({k.replace('down_operations.0.', 'down_operations.1.'): v for k, v in state.items()
                if k.startswith('down_operations.0.')})
    with pytest.raises(IRNError, match='not numbered'):
        torch_state_to_sain(gap, 'a.pth')
    with pytest.raises(IRNError, match='power of two'):
        SAINet(3, 1, 1)
