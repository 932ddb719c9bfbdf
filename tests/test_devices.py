"""GPU / Ascend code paths, checked on CPU: the precision calls made per device, device error
messages, the overflow check and loss scaling in every memory mode, ``auto`` per device, and
no deprecated MindSpore API in the sources."""
import os
import re

import numpy as np
import pytest
import mindspore as ms

from conftest import ROOT
from src.utils.errors import IRNError, describe_error

ASCEND_ERROR = """Call aclrtSetDevice failed, ret[507033]. The details refer to 'Ascend Error Message'.

----------------------------------------------------
- Ascend Error Message:
----------------------------------------------------
EE1001: [PID: 77] The argument is invalid.Reason: rtGetDevMsg execute failed, reason=[context pointer null]
        Solution: 1.Check the input parameter range of the function.
        TraceBack (most recent call last):
        ctx is NULL![FUNC:GetDevErrMsg][FILE:api_impl.cc][LINE:4692]

(Please search "CANN Common Error Analysis" at https://www.mindspore.cn for error code description)

----------------------------------------------------
- C++ Call Stack: (For framework developers)
----------------------------------------------------
mindspore/ccsrc/plugin/device/ascend/hal/device/ascend_device_res_manager.cc:77 Initialize
"""


def test_precision_calls_per_device(monkeypatch):
    """O0 / O1 keep float32 on every device unless ``allow_fast_fp32``; the functions exist in
    this MindSpore with the one argument they are given."""
    import inspect
    from src.utils import device
    calls = []
    modules = {'ascend': ms.device_context.ascend.op_precision,
               'gpu': ms.device_context.gpu.op_precision}
    for dev, module in modules.items():
        for name in ('precision_mode', 'conv_allow_hf32', 'matmul_allow_hf32', 'conv_allow_tf32',
                     'matmul_allow_tf32'):
            if hasattr(module, name):
                assert len(inspect.signature(getattr(module, name)).parameters) == 1
                monkeypatch.setattr(module, name,
                                    lambda v, d=dev, n=name: calls.append((d, n, v)))
    assert device.apply_precision('CPU') == [] and calls == []
    device.apply_precision('Ascend')
    assert calls == [('ascend', 'precision_mode', 'must_keep_origin_dtype'),
                     ('ascend', 'conv_allow_hf32', False), ('ascend', 'matmul_allow_hf32', False)]
    calls.clear()
    device.apply_precision('Ascend', allow_fast_fp32=True)
    assert calls == [('ascend', 'precision_mode', 'must_keep_origin_dtype'),
                     ('ascend', 'conv_allow_hf32', True), ('ascend', 'matmul_allow_hf32', True)]
    calls.clear()
    device.apply_precision('GPU')
    assert calls == [('gpu', 'conv_allow_tf32', False), ('gpu', 'matmul_allow_tf32', False)]


def test_setup_device_sets_precision_after_the_device_and_keeps_ascend_errors(monkeypatch):
    from src.utils import device
    log = []
    monkeypatch.setattr(ms, 'set_device', lambda *a: log.append(('set_device',) + a))
    monkeypatch.setattr(device, 'apply_precision', lambda t, fast: log.append(('precision', t, fast)))
    monkeypatch.setattr(ms, 'set_context', lambda **kw: log.append(('context', kw['mode'])))
    monkeypatch.setattr(device, 'select_conv', lambda t: log.append(('conv', t)))
    monkeypatch.setenv('DEVICE_ID', '3')
    device.setup_device('GPU', allow_fast_fp32=True)
    assert log == [('set_device', 'GPU', 3), ('precision', 'GPU', True),
                   ('context', ms.GRAPH_MODE), ('conv', 'GPU')]

    def fail(*_):
        raise RuntimeError(ASCEND_ERROR)
    monkeypatch.setattr(ms, 'set_device', fail)
    with pytest.raises(IRNError) as err:
        device.setup_device('Ascend')
    text = str(err.value)
    assert text.startswith('cannot use device Ascend: Call aclrtSetDevice failed, ret[507033]')
    assert 'EE1001: [PID: 77] The argument is invalid' in text and 'CANN Common Error' in text
    assert 'C++ Call Stack' not in text and 'ascend_device_res_manager.cc' not in text


def test_describe_error_without_ascend_section():
    assert describe_error(RuntimeError('one line\nmore detail')) == 'one line'
    framework = ('Bad thing.\n\n' + '-' * 52 + '\n- C++ Call Stack: (For framework developers)\n'
                 + '-' * 52 + '\nfoo.cc:1 Bar\n')
    assert describe_error(RuntimeError(framework)) == 'Bad thing.'
    assert describe_error(ValueError('')) == 'ValueError'


def test_saturation_mode_follows_the_soc_and_the_overflow_mode():
    from src.amp import OverflowReset, saturation_mode
    a910 = {'amp_loss_scale_train_classic_target': True, 'train_hq_dtype_line': False}.get
    a910b = {'amp_loss_scale_train_classic_target': False, 'train_hq_dtype_line': True}.get
    assert not saturation_mode('CPU') and not saturation_mode('GPU', a910, 'SATURATION_MODE')
    assert saturation_mode('Ascend', a910, None)
    assert not saturation_mode('Ascend', a910b, None)
    assert not saturation_mode('Ascend', a910b, 'INFNAN_MODE')
    assert saturation_mode('Ascend', a910b, 'SATURATION_MODE')
    assert not saturation_mode()  # this machine: CPU
    reset = OverflowReset(enabled=True)  # the Ascend primitive exists (not run: no kernel here)
    assert type(reset.clear).__name__ == 'NPUClearFloatStatusV2'
    assert not OverflowReset().enabled  # CPU: the train steps get no clearing op


def test_auto_memory_mode_per_device(monkeypatch):
    from src.network import fast_conv
    from src.optim import resolve_memory_mode
    for backend, target, want in (('dnnl', 'CPU', 'plain'), ('mindspore', 'CPU', 'recompute'),
                                  ('mindspore', 'GPU', 'plain'), ('mindspore', 'Ascend', 'plain')):
        monkeypatch.setattr(fast_conv, 'backend', lambda b=backend: b)
        assert resolve_memory_mode('auto', target) == want
    assert resolve_memory_mode('invertible', 'Ascend') == 'invertible'


def test_sharded_validation_stops_every_rank_together(monkeypatch):
    """A stop request during a rank's shard: the rank still joins the gather (the other ranks
    are in it), then every rank drops the validation when any rank was interrupted."""
    from src import distributed
    from src.train_signals import StopRequested
    gathered = []

    def fake_gather(results, total, keys, rank_id, rank_size):
        gathered.append([r['psnr'] for r in results])
        return [{'psnr': float(i)} for i in range(total)]
    monkeypatch.setattr(distributed, 'gather_results', fake_gather)

    class Owner:
        stop_requested = False

    class Model:
        metrics = ('psnr',)

        def validate_images(self, source):
            rows = []
            for name, _ in source:
                rows.append({'psnr': float(name)})
                owner.stop_requested = owner.stop_requested or name == 2  # a signal, on rank 0
            return rows

        def summarize(self, rows):
            return {'psnr': float(np.mean([r['psnr'] for r in rows]))}

    owner, images = Owner(), [(i, None) for i in range(6)]
    with pytest.raises(StopRequested):  # rank 0 of 2 (images 0, 2, 4), stopped after image 2
        distributed.validate_sharded(Model(), images, 0, 2, bool, owner=owner)
    owner.stop_requested = False
    with pytest.raises(StopRequested):  # rank 1 finishes its shard, but rank 0 was stopped
        distributed.validate_sharded(Model(), images, 1, 2, lambda stopped: True, owner=owner)
    assert gathered == [[], [1.0, 3.0, 5.0]]
    assert distributed.validate_sharded(Model(), images, 1, 2, bool, owner=owner) == {'psnr': 2.5}


def test_no_deprecated_mindspore_api_in_sources():
    """ops.conv2d(pad_mode=...) loses pad_mode and ops.select changes meaning after 2.9;
    ops.identity is deprecated."""
    pattern = re.compile(r'ops\.(conv2d\(|select\(|identity\b)')
    found = []
    for folder, _, names in os.walk(ROOT):
        rel = os.path.relpath(folder, ROOT)
        if rel != '.' and not rel.startswith(('src', 'scripts')):
            continue
        for name in names:
            if name.endswith('.py'):
                with open(os.path.join(folder, name), encoding='utf-8') as f:
                    found += [f'{rel}/{name}: {m.group(0)}' for m in pattern.finditer(f.read())]
    assert not found, found


def test_loss_scale_config_needs_o1():
    from src.config import load_config
    opt = load_config(None, ['train.amp_level=O1', 'train.loss_scale=dynamic'])
    assert opt['train']['loss_scale_value'] == 1.0 and opt['allow_fast_fp32'] is False
    with pytest.raises(IRNError, match='train.loss_scale .* needs train.amp_level O1'):
        load_config(None, ['train.loss_scale=dynamic'])
    with pytest.raises(IRNError, match="train.loss_scale must be one of"):
        load_config(None, ['train.amp_level=O1', 'train.loss_scale=static'])


def _o1_step(mode, micro, scale):
    from src.amp import LossScale, apply_amp
    from src.loss import IRNWithLoss
    from src.network import InvRescaleNet
    from src.optim import ClippedAdam, build_train_step
    net = InvRescaleNet([1], seed=3)
    rng = np.random.default_rng(0)
    for p in net.get_parameters():
        if 'conv5' in p.name:  # non-zero sub-networks
            p.set_data(ms.Tensor(0.02 * rng.standard_normal(p.shape).astype(np.float32)))
    apply_amp(net, 'O1')
    adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, 1e-5, 10.0)
    scaler = LossScale(scale, 2, 1000) if scale else None
    opt = {'train': {'memory_mode': mode, 'micro_batch': micro}}
    return build_train_step(IRNWithLoss(net, 4.0), adam, opt, None, scaler), net, adam, scaler


BATCH = tuple(ms.Tensor(a) for a in (
    np.random.default_rng(1).random((2, 3, 16, 16), dtype=np.float32),
    np.random.default_rng(2).random((2, 3, 8, 8), dtype=np.float32),
    np.random.default_rng(3).standard_normal((2, 9, 8, 8), dtype=np.float32)))


def _values(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _restore(cells, saved):
    for cell in cells:
        for p in cell.get_parameters():
            p.set_data(ms.Tensor(saved[p.name]))


@pytest.mark.parametrize('mode,micro', [('plain', None), ('plain', 1), ('invertible', None)])
def test_loss_scaling_in_every_memory_mode(mode, micro):
    """O1 with a dynamic loss scale (the plain step, micro-batches, the block-wise walk, which
    ``recompute`` shares): scale 1 is the step without a scaler; scale 64 gives the same update
    to float16 precision; an overflowing gradient skips the update and halves the scale."""
    lr = ms.Tensor(2e-4, ms.float32)
    step, net, adam, scaler = _o1_step(mode, micro, 1.0)  # one compile serves every scale
    cells = (net, adam, scaler)
    start = {k: v for cell in cells for k, v in _values(cell).items()}
    out = step(*BATCH, lr)
    assert bool(out[5].asnumpy())
    w, m = _values(net), _values(adam)
    if mode == 'plain' and micro is None:  # a scale of 1 is exactly no scaling
        plain, net_p, adam_p, _ = _o1_step(mode, micro, None)
        out_p = plain(*BATCH, lr)
        assert [float(o.asnumpy()) for o in out_p] == [float(o.asnumpy()) for o in out]
        assert all(np.array_equal(v, w[k]) for k, v in _values(net_p).items())

    _restore(cells, start)
    scaler.value.set_data(ms.Tensor(2.0 ** 6, ms.float32))
    out_s = step(*BATCH, lr)
    assert bool(out_s[5].asnumpy())
    np.testing.assert_allclose([float(o.asnumpy()) for o in out_s[:5]],
                               [float(o.asnumpy()) for o in out[:5]], rtol=1e-5)
    m_s = _values(adam)
    for name in m:
        if name.startswith('moment1.'):  # (1 - beta1) * the clipped gradient, to float16 precision
            np.testing.assert_allclose(m_s[name], m[name], rtol=0,
                                       atol=1e-3 * max(float(np.abs(m[name]).max()), 1e-12))
    w_s = _values(net)
    assert max(float(np.abs(w[k] - w_s[k]).max()) for k in w) <= 4e-4  # at most ~2 lr
    assert float(scaler.value.asnumpy()) == 2.0 ** 6 and int(scaler.counter.asnumpy()) == 1

    scaler.value.set_data(ms.Tensor(2.0 ** 40, ms.float32))  # float16 cotangents overflow
    before, moments = _values(net), _values(adam)
    out = step(*BATCH, lr)
    assert not bool(out[5].asnumpy()) and np.isfinite(float(out[0].asnumpy()))
    assert float(scaler.value.asnumpy()) == 2.0 ** 39 and int(scaler.counter.asnumpy()) == 0
    assert all(np.array_equal(before[k], v) for k, v in _values(net).items())
    assert all(np.array_equal(moments[k], v) for k, v in _values(adam).items())
