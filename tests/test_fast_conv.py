"""The oneDNN convolution custom op equals MindSpore's Conv2D, forward and gradients."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import ops

from conftest import CONV
from src.network import fast_conv
from src.network.blocks import DenseBlock, dense_block
from src.utils.errors import IRNError


def test_cpu_default_is_the_onednn_kernel():
    # The rest of the suite (parity, training, backprop) runs on whatever conftest selected;
    # it must be the fast path, or those tests would not cover what users run.
    assert CONV == 'dnnl'


def _grads(conv, x, w, b, g, graph):
    def loss(x, w, b):
        return (conv(x, w, b) * g).sum()
    fn = ms.value_and_grad(loss, grad_position=(0, 1, 2))
    if graph:
        fn = ms.jit(fn)
    value, grads = fn(x, w, b)
    return [value.asnumpy()] + [t.asnumpy() for t in grads]


def _reference(x, w, b):
    return ops.conv2d(x, w, b, pad_mode='pad', padding=1)


@pytest.mark.parametrize('shape', [(2, 9, 12, 20, 32), (1, 3, 7, 5, 9), (3, 45, 6, 6, 3)])
@pytest.mark.parametrize('graph', [True, False])
def test_forward_and_gradients_match_mindspore_conv(shape, graph):
    n, ci, h, wd, co = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b, g = (ms.Tensor(rng.standard_normal(s).astype(np.float32))
                  for s in ((n, ci, h, wd), (co, ci, 3, 3), (co,), (n, co, h, wd)))
    np.testing.assert_allclose(fast_conv.conv3x3(x, w, b).asnumpy(), _reference(x, w, b).asnumpy(),
                               rtol=1e-5, atol=1e-4)
    ours = _grads(fast_conv.conv3x3, x, w, b, g, graph)
    ref = _grads(_reference, x, w, b, g, graph)
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-4 * max(1.0, np.abs(r).max()))


def test_dense_block_gradients_match():
    rng = np.random.default_rng(3)
    block = DenseBlock(9, 3, rng)
    weights = tuple(ms.Tensor(rng.standard_normal(t.shape).astype(np.float32) * 0.1)
                    for t in block.weights())
    x = ms.Tensor(rng.standard_normal((2, 9, 10, 14)).astype(np.float32))

    def loss(x, *w):
        return (dense_block(x, w) ** 2).sum()
    grad = ms.jit(ms.grad(loss, grad_position=tuple(range(11))))
    fast = [t.asnumpy() for t in grad(x, *weights)]
    with fast_conv.mindspore_conv():
        plain = [t.asnumpy() for t in ms.jit(ms.grad(loss, grad_position=tuple(range(11))))(
            x, *weights)]
    for a, r in zip(fast, plain):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(r).max()))


@pytest.fixture
def restore_backend():
    yield
    fast_conv.select('CPU')  # the suite's default, whatever the test did


def test_backend_selection_and_errors(monkeypatch, tmp_path, restore_backend):
    monkeypatch.setenv('IRN_CONV', 'mindspore')
    assert fast_conv.select('CPU') == 'mindspore'
    monkeypatch.setenv('IRN_CONV', 'auto')
    assert fast_conv.select('GPU') == 'mindspore'
    monkeypatch.setenv('IRN_CONV', 'fast')
    with pytest.raises(IRNError, match='IRN_CONV=fast'):
        fast_conv.select('CPU')
    monkeypatch.setenv('IRN_CONV', 'dnnl')
    with pytest.raises(IRNError, match='needs --device_target CPU'):
        fast_conv.select('Ascend')
    # Missing headers: a one-line error with IRN_CONV=dnnl, a fallback (with a warning) on auto.
    monkeypatch.setenv('IRN_KERNEL_CACHE', str(tmp_path))
    monkeypatch.setattr(fast_conv.sys, 'prefix', str(tmp_path))
    monkeypatch.delenv('IRN_DNNL_INCLUDE', raising=False)
    with pytest.raises(IRNError, match='oneDNN headers not found'):
        fast_conv.select('CPU')
    monkeypatch.setenv('IRN_CONV', 'auto')
    assert fast_conv.select('CPU') == 'mindspore'
    monkeypatch.undo()
    assert fast_conv.select('CPU') == 'dnnl'


def test_fresh_build_into_an_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('IRN_KERNEL_CACHE', str(tmp_path))
    so = fast_conv.build()
    assert so.startswith(str(tmp_path)) and so.endswith('.so')
    assert fast_conv.build() == so  # cached
