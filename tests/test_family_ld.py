"""IRN_LD (learnable ConvDownsampling, any integer scale) and IRN_E (all downsampling first).

Parity with the authors' code (tests/data/irn_ld_x3.*, irn_ld_x2.*, irn_e_x4.*: their fixtures
without the ``param/*`` copy of the .pth and unused keys), invertibility on odd sizes against a
float64 numpy evaluation, parameter counts, the matrix init, and checkpoint architecture checks.
"""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from conftest import DATA, ROOT, fixture
from reference64 import conv_down, evaluate
from test_backprop import make
from test_parity import check_outputs, fixture_net, plain_step, replay
from torch_pickle import write_pth
from src.convert import main as convert_main, read_pth
from src.network import InvRescaleNet
from src.network.downsampling import ConvDownsampling
from src.utils.checkpoint import load_weights, read_checkpoint, save_weights
from src.utils.errors import IRNError

CASES = ['irn_ld_x3', 'irn_ld_x2', 'irn_e_x4']
LD = dict(use_ConvDownsampling=True)
E = dict(down_first=True)


@pytest.mark.parametrize('name', CASES)
def test_forward_inverse_quantisation(name):
    check_outputs(name)


@pytest.mark.parametrize('name', ['irn_ld_x3', 'irn_ld_x2'])
def test_conv_downsampling_standalone(name):
    d = fixture(name)
    op = ConvDownsampling(int(d['scale']))
    op.conv_weights.set_data(Tensor(d['cd_weight']))  # a perturbed, non-orthogonal matrix
    np.testing.assert_allclose(op(Tensor(d['cd_in'])).asnumpy(), d['cd_fwd'], atol=1e-6, rtol=0)
    back = op.inverse(Tensor(d['cd_fwd'])).asnumpy()
    np.testing.assert_allclose(back, d['cd_rev'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(back, d['cd_in'], atol=1e-5, rtol=0)
    frozen = ConvDownsampling(int(d['scale']))  # export form: w^-1 a constant (ONNX has no inverse)
    frozen.conv_weights.set_data(Tensor(d['cd_weight']))
    frozen.freeze_inverse()
    np.testing.assert_allclose(frozen.inverse(Tensor(d['cd_fwd'])).asnumpy(), back, atol=1e-6, rtol=0)


def _check_matrix_trained(net, name):
    """The learnable matrix moved in the 3 steps, and to where the authors' code moved it."""
    w = net.operations[0].conv_weights
    start = read_pth(os.path.join(DATA, name + '.pth'))[w.name]
    final = fixture(name)['final/' + w.name]
    assert np.abs(final - start).max() > 1e-4
    np.testing.assert_allclose(w.asnumpy(), final, atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', CASES)
def test_training_steps_plain(name):
    net = replay(name, plain_step)
    if name.startswith('irn_ld'):
        _check_matrix_trained(net, name)


@pytest.mark.parametrize('name,mode,micro', [('irn_ld_x3', 'invertible', None),
                                             ('irn_ld_x2', 'recompute', 1),
                                             ('irn_e_x4', 'invertible', None)])
def test_training_steps_blockwise(name, mode, micro):
    """The matrix gradient through its inverse, block by block (and in micro-batches of 1);
    IRN_E's Haar levels share one graph though their shapes differ."""
    net = replay(name, make(mode, micro))
    if name.startswith('irn_ld'):
        _check_matrix_trained(net, name)


def _random_net(scale, flags, blocks=1, seed=3):
    net = InvRescaleNet([blocks], scale=scale, **flags)
    rng = np.random.default_rng(seed)
    for p in net.trainable_params():
        if p.name.endswith('conv_weights'):
            p.set_data(Tensor(p.asnumpy() + 0.05 * rng.standard_normal(p.shape).astype(np.float32)))
        else:
            p.set_data(Tensor((rng.standard_normal(p.shape) * 0.02).astype(np.float32)))
    return net, rng


@pytest.mark.parametrize('scale,flags,size', [(3, LD, (21, 15)), (5, LD, (25, 35)),
                                              (4, E, (36, 20))])
def test_invertibility_odd_sizes_against_float64(scale, flags, size):
    net, rng = _random_net(scale, flags)
    x = rng.random((2, 3) + size).astype(np.float32)
    ref = evaluate(net, x)
    if flags is LD:  # the coupling block really changes the downsampled image
        plain = conv_down(x.astype(np.float64), net.operations[0].conv_weights.asnumpy().astype(np.float64))
        assert np.abs(ref - plain).max() > 1e-2
    out = net(Tensor(x)).asnumpy()
    assert out.shape == (2, 3 * scale ** 2, size[0] // scale, size[1] // scale)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(evaluate(net, ref, inverse=True), x, atol=1e-10, rtol=0)
    np.testing.assert_allclose(net.inverse(Tensor(ref.astype(np.float32))).asnumpy(), x,
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(net.inverse(Tensor(out)).asnumpy(), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize('scale,flags,blocks,count', [(3, LD, 12, 3139029), (4, E, 8, 2687184),
                                                      (4, E, 16, 5374368)])
def test_parameter_counts(scale, flags, blocks, count):
    net = InvRescaleNet([blocks], scale=scale, **flags)
    assert sum(p.size for p in net.trainable_params()) == count


def test_init_matrices_are_the_authors():
    for name in ('irn_ld_x2', 'irn_ld_x3'):  # the .pth holds the authors' init
        stored = read_pth(os.path.join(DATA, name + '.pth'))['operations.0.conv_weights']
        s = int(round(stored.shape[0] ** 0.5))
        np.testing.assert_array_equal(ConvDownsampling(s).conv_weights.asnumpy(), stored)


@pytest.mark.parametrize('scale', [3, 4, 5, 6, 7, 8])
def test_fresh_ld_net_is_box_average_and_subpixels(scale):
    """Spec: row 0 = 1/s^2 (the LR is the s x s mean), rows k >= 1 copy sub-pixel k; det 1/s^2."""
    net = InvRescaleNet([1], scale=scale, **LD)  # fresh blocks are the identity
    w = net.operations[0].conv_weights.asnumpy().astype(np.float64)
    assert abs(np.linalg.det(w) - 1.0 / scale ** 2) < 1e-6
    x = np.random.default_rng(0).random((1, 3, 2 * scale, 3 * scale)).astype(np.float32)
    out = net(Tensor(x)).asnumpy()
    mean = x.reshape(1, 3, 2, scale, 3, scale).mean(axis=(3, 5))
    np.testing.assert_allclose(out[:, :3], mean, atol=1e-6)
    for k in range(1, scale * scale):
        i, j = divmod(k, scale)
        np.testing.assert_array_equal(out[:, 3 * k:3 * k + 3], x[:, :, i::scale, j::scale])


def test_ld_x2_at_init_is_irn_x2():
    """Haar/4 init and the same channel order: LD x2 starts as IRN x2 (same seed, same blocks)."""
    ld, base = InvRescaleNet([2], scale=2, seed=5, **LD), InvRescaleNet([2], seed=5)
    x = Tensor(np.random.default_rng(1).random((2, 3, 8, 12)).astype(np.float32))
    np.testing.assert_allclose(ld(x).asnumpy(), base(x).asnumpy(), atol=1e-6, rtol=0)
    assert sum(p.size for p in ld.trainable_params()) - sum(p.size for p in base.trainable_params()) == 16


def test_layout_errors():
    for args, kw, msg in [([8, 8], dict(scale=3, **LD), 'one block count'),
                          ([8], dict(scale=3, **E), 'power-of-two'),
                          ([8], dict(scale=1, **LD), 'integer scale >= 2'),
                          ([8], dict(**E), 'integer scale >= 2'),
                          ([8, 8], dict(scale=2), 'scale 2 needs 1 Haar levels')]:
        with pytest.raises(IRNError, match=msg):
            InvRescaleNet(args, **kw)


def _convert(tmp_path, name, *flags):
    dst = str(tmp_path / (name + '.ckpt'))
    assert convert_main([os.path.join(DATA, name + '.pth'), dst, *flags]) == 0
    return dst


def test_convert_records_the_architecture(tmp_path):
    ld = _convert(tmp_path, 'irn_ld_x3', '--scale', '3')
    e = _convert(tmp_path, 'irn_e_x4')
    base = {'model': 'IRN', 'net': 'InvRescaleNet', 'block_num': [1]}
    assert read_checkpoint(ld)[1] == {**base, 'scale': 3, 'downsampling': 'conv', 'down_first': True}
    assert read_checkpoint(e)[1] == {**base, 'scale': 4, 'down_first': True}
    for path, good, bad in [
            (ld, InvRescaleNet([1], scale=3, **LD), [InvRescaleNet([1]), InvRescaleNet([1], scale=2, **LD)]),
            (e, InvRescaleNet([1], scale=4, **E), [InvRescaleNet([0, 1]), InvRescaleNet([1], scale=2, **E)])]:
        assert load_weights(good, path) == [1]
        for net in bad:
            with pytest.raises(IRNError) as err:
                load_weights(net, path)
            assert '\n' not in str(err.value) and 'but the network is' in str(err.value)
    state = read_pth(os.path.join(DATA, 'irn_ld_x3.pth'))
    net = InvRescaleNet([1], scale=3, **LD)
    load_weights(net, ld)
    np.testing.assert_array_equal(net.operations[0].conv_weights.asnumpy(),
                                  state['operations.0.conv_weights'])


def test_convert_errors(tmp_path, capsys):
    err = convert_main([os.path.join(DATA, 'irn_ld_x3.pth'), str(tmp_path / 'o.ckpt'), '--scale', '2'])
    assert err == 2 and 'x3 with block_num [1], downsampling conv' in capsys.readouterr().err
    state = read_pth(os.path.join(DATA, 'irn_ld_x3.pth'))
    for change, msg in [(lambda s: s.update({'operations.0.conv_weights': np.zeros((9, 8), np.float32)}),
                         'conv_weights has shape'),
                        (lambda s: s.update({'operations.2.haar_weights': np.zeros((108, 1, 2, 2), np.float32)}),
                         'only downsampling')]:
        bad = dict(state)
        change(bad)
        write_pth(str(tmp_path / 'bad.pth'), bad)
        assert convert_main([str(tmp_path / 'bad.pth'), str(tmp_path / 'o.ckpt')]) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith('error: ') and '\n' not in line and msg in line
    assert not os.path.exists(tmp_path / 'o.ckpt')


def test_checkpoints_without_arch_record_load_as_base_irn(tmp_path):
    net = InvRescaleNet([1])
    path = str(tmp_path / 'old.ckpt')  # the format before IRN_LD / IRN_E: irn_block_num only
    ms.save_checkpoint([{'name': p.name, 'data': Tensor(p.asnumpy())} for p in net.get_parameters()],
                       path, append_dict={'irn_block_num': '1'})
    assert read_checkpoint(path)[1] == {'net': 'InvRescaleNet', 'scale': 2, 'block_num': [1]}
    assert load_weights(InvRescaleNet([1]), path) == [1]
    with pytest.raises(IRNError, match='but the network is x2 with block_num \\[1\\], downsampling conv'):
        load_weights(InvRescaleNet([1], scale=2, **LD), path)
    run = os.path.join(ROOT, 'figures', 'irn_x2_cpu_run.ckpt')  # a real file of that format
    assert load_weights(InvRescaleNet(read_checkpoint(run)[1]['block_num']), run) == [8]
    new = str(tmp_path / 'new.ckpt')
    ld = InvRescaleNet([1], scale=2, **LD)
    save_weights({p.name: p.asnumpy() for p in ld.get_parameters()}, new, ld.arch())
    with pytest.raises(IRNError, match='downsampling conv, down_first True .*, but the network is '
                                       'x2 with block_num \\[1\\] '):
        load_weights(InvRescaleNet([1]), new)
    assert fixture_net('irn_e_x4')[0].arch()['down_first']
