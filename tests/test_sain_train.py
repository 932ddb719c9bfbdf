"""SAIN training step: micro-batching computes the plain step's update; noise draws."""
import numpy as np
from mindspore import Tensor

from src.backprop import AccumulatingStep, PlainGrad
from src.codecs.diffjpeg import DiffJPEG
from src.loss import SAINWithLoss
from src.network.sain import SAINet
from src.optim import ClippedAdam, TrainStep
from src.sain_step import SAINStep, draw_gmm_noise


def _step(micro):
    net = SAINet(2, 1, 1, 5, seed=1)
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
    loss = SAINWithLoss(net, DiffJPEG(75), 4.0)
    train = TrainStep(loss, adam) if micro is None else AccumulatingStep(PlainGrad(loss, adam.params),
                                                                          adam, micro)
    return net, SAINStep(net, train, 'JPEG', 75)


def test_micro_batch_equals_plain_step(pynative):
    rng = np.random.default_rng(0)
    hr = rng.random((2, 3, 32, 32)).astype(np.float32)
    lr_ref = rng.random((2, 3, 16, 16)).astype(np.float32)
    gumbel, eps = draw_gmm_noise(rng, (2, 9, 16, 16), 5)
    results = []
    for micro in (None, 1):
        net, step = _step(micro)
        out = [float(o.asnumpy()) for o in step(hr, lr_ref, gumbel, eps, Tensor(np.float32(2e-4)))]
        assert out[-1] == 1.0 and np.isfinite(out[:-1]).all()
        results.append((out, {p.name: p.asnumpy() for p in net.trainable_params()}))
    (plain, w_plain), (micro, w_micro) = results
    np.testing.assert_allclose(micro[:-1], plain[:-1], rtol=1e-5)
    assert max(np.abs(w_plain[k] - w_micro[k]).max() for k in w_plain) <= 1e-5
    assert np.abs(w_plain['gmm.gmm_para'] - SAINet(2, 1, 1, 5, seed=1).gmm.gmm_para.asnumpy()).max() > 0


def test_noise_draw_order_and_shapes():
    a = np.random.default_rng(4)
    gumbel, eps = draw_gmm_noise(a, (2, 9, 3, 5), 5)
    b = np.random.default_rng(4)
    assert gumbel.shape == eps.shape == (2, 9, 3, 5, 5) and gumbel.dtype == np.float32
    np.testing.assert_array_equal(gumbel, -np.log(b.standard_exponential((2, 9, 3, 5, 5), np.float32)))
    np.testing.assert_array_equal(eps, b.standard_normal((2, 9, 3, 5, 5), np.float32))
