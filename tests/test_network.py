"""Network structure: parameter counts, fresh net == Haar cascade, exact invertibility."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from src.network import InvRescaleNet, Quantization

FILTERS = np.array([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
                   np.float64)


def haar_reference(x):
    """Spec: per channel, 4 filters as a stride-2 cross-correlation / 4, filter-major channels."""
    b, c, h, w = x.shape
    patches = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    out = np.einsum('bcijuv,fuv->bfcij', patches, FILTERS) / 4
    return out.reshape(b, 4 * c, h // 2, w // 2)


@pytest.mark.parametrize('block_num,count', [([8], 1667952), ([8, 8], 4355136),
                                             ([8, 8, 8], 11119248)])
def test_parameter_count(block_num, count):
    net = InvRescaleNet(block_num)
    assert sum(p.size for p in net.trainable_params()) == count


@pytest.mark.parametrize('block_num', [[2], [1, 1]])
def test_fresh_net_is_haar_cascade(block_num):
    x = np.random.default_rng(1).random((2, 3, 24, 40)).astype(np.float32)
    expected = x.astype(np.float64)
    for _ in block_num:
        expected = haar_reference(expected)
    out = InvRescaleNet(block_num)(Tensor(x)).asnumpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize('block_num', [[2], [1, 1], [1, 1, 1]])
def test_inverse_of_forward(block_num):
    net = InvRescaleNet(block_num)
    rng = np.random.default_rng(2)
    for p in net.trainable_params():  # make every block a non-trivial map
        p.set_data(Tensor((rng.standard_normal(p.shape) * 0.02).astype(np.float32)))
    x = rng.random((2, 3, 24, 40)).astype(np.float32)
    out = net(Tensor(x))
    assert out.shape == (2, 3 * net.scale ** 2, 24 // net.scale, 40 // net.scale)
    assert np.abs(out.asnumpy()[:, 3:]).max() > 1e-3  # the blocks really act
    back = net.inverse(out).asnumpy()
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_quantization_values_and_straight_through_gradient():
    x = Tensor(np.array([-0.2, 0.0, 0.5, 0.50196, 1.3], np.float32))
    q = Quantization()
    np.testing.assert_allclose(q(x).asnumpy(), np.round(np.clip(x.asnumpy(), 0, 1) * 255) / 255)

    class Weighted(ms.nn.Cell):
        def construct(self, t):
            return (q(t) * Tensor(np.arange(5, dtype=np.float32))).sum()

    grad = ms.grad(Weighted())(x)
    np.testing.assert_array_equal(grad.asnumpy(), np.arange(5, dtype=np.float32))
