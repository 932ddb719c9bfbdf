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


def _grads(fn, args, g, graph):
    def loss(*a):
        return (fn(*a) * g).sum()
    grad = ms.value_and_grad(loss, grad_position=tuple(range(len(args))))
    if graph:
        grad = ms.jit(grad)
    value, grads = grad(*args)
    return [value.asnumpy()] + [t.asnumpy() for t in grads]


def _reference(pieces, w, b, lrelu):
    y = ops.Conv2D(w.shape[0], (3, 3), pad_mode='pad', pad=1)(ops.cat(pieces, 1), w)
    y = ops.bias_add(y, b)
    return ops.leaky_relu(y, 0.2) if lrelu else y


# (batch, channels of each piece, height, width, out channels): the DenseBlock's shapes, small
@pytest.mark.parametrize('shape', [(2, (9,), 12, 20, 32), (1, (3, 4), 7, 5, 9),
                                   (3, (45, 32, 32, 32, 32), 6, 6, 3)])
@pytest.mark.parametrize('lrelu', [True, False])
@pytest.mark.parametrize('graph', [True, False])
def test_forward_and_gradients_match_mindspore_conv(shape, lrelu, graph):
    n, chans, h, wd, co = shape
    rng = np.random.default_rng(sum(chans) + co)
    pieces = tuple(ms.Tensor(rng.standard_normal((n, c, h, wd)).astype(np.float32)) for c in chans)
    w, b, g = (ms.Tensor(rng.standard_normal(s).astype(np.float32))
               for s in ((co, sum(chans), 3, 3), (co,), (n, co, h, wd)))
    k = len(pieces)

    def ours(*a):
        return fast_conv.dense_conv(a[:k], a[k], a[k + 1], lrelu)

    def ref(*a):
        return _reference(a[:k], a[k], a[k + 1], lrelu)
    args = pieces + (w, b)
    np.testing.assert_allclose(ours(*args).asnumpy(), ref(*args).asnumpy(), rtol=1e-5, atol=1e-4)
    got, want = _grads(ours, args, g, graph), _grads(ref, args, g, graph)
    assert len(got) == k + 3
    for a, r in zip(got, want):
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


def test_auto_memory_mode_follows_the_conv_backend():
    from src.optim import resolve_memory_mode
    assert resolve_memory_mode('auto') == 'plain'
    with fast_conv.mindspore_conv():
        assert resolve_memory_mode('auto') == 'recompute'
    assert resolve_memory_mode('invertible') == 'invertible'
