"""System tests of training on CPU with a tiny IRN: loss falls, exact resume, non-finite handling,
amp O1, the evaluation routine, and train.py's one-line config errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

from conftest import ROOT
from src.config import load_config
from src.utils.checkpoint import list_train_states, read_weights
from src.utils.errors import IRNError

SAMPLE = os.path.join(ROOT, 'data', 'sample')
TINY = ['network_G.block_num=[1]', 'datasets.train.GT_size=32', 'datasets.train.batch_size=2',
        'datasets.train.n_workers=1', 'logger.print_freq=5', 'train.val_freq=1000']


def tiny_opt(out, *extra):
    """A tiny x2 config (1 coupling block, 32px patches, batch 2) writing to ``out``."""
    return load_config(os.path.join(ROOT, 'src/options/train_IRN_x2.yml'), TINY + list(extra),
                       device_target='CPU', data_path=os.path.join(SAMPLE, 'train'),
                       output_dir=str(out))


def weights_of(trainer):
    """Network weights and Adam state of a trainer, by name."""
    out = {p.name: p.asnumpy().copy() for p in trainer.net.get_parameters()}
    out.update({p.name: p.asnumpy().copy() for p in trainer.optimizer.get_parameters()})
    return out


class Crash(Exception):
    """Simulated kill."""


def test_loss_falls_and_resume_is_exact(tmp_path, monkeypatch):
    from src.trainer import Trainer
    from src.train_log import read_csv
    common = ('train.niter=20', 'logger.save_checkpoint_freq=10', 'name=run')
    full = Trainer(tiny_opt(tmp_path / 'full', *common))
    full.run()
    rows = read_csv(str(tmp_path / 'full' / 'run' / 'loss.csv'))
    assert [r['iter'] for r in rows] == [5, 10, 15, 20]
    assert rows[-1]['loss'] < 0.95 * rows[0]['loss'], rows
    assert os.path.isfile(tmp_path / 'full' / 'run' / 'config.yml')
    assert 'it/s' in open(tmp_path / 'full' / 'run' / 'train.log').read()

    # same run, killed during iteration 13 (after the checkpoint at 10), then resumed
    original = Trainer.fetch

    def crash_after_12(self, batch):
        if self.iteration == 12:
            raise Crash()
        return original(self, batch)

    monkeypatch.setattr(Trainer, 'fetch', crash_after_12)
    part = Trainer(tiny_opt(tmp_path / 'part', *common))
    with pytest.raises(Crash):
        part.run()
    monkeypatch.setattr(Trainer, 'fetch', original)
    states = list_train_states(str(tmp_path / 'part' / 'run' / 'checkpoints'))
    assert [os.path.basename(s) for s in states] == ['state_00000010.ckpt']
    with pytest.raises(IRNError, match='--resume'):
        Trainer(tiny_opt(tmp_path / 'part', *common))
    resumed = Trainer(tiny_opt(tmp_path / 'part', *common), resume=True)
    assert resumed.iteration == 10
    resumed.run()
    a, b = weights_of(full), weights_of(resumed)
    assert a.keys() == b.keys() and any(k.startswith('moment1.') for k in a)
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst <= 1e-6, worst
    final_a, _ = read_weights(str(tmp_path / 'full' / 'run' / 'final_G.ckpt'))
    final_b, _ = read_weights(str(tmp_path / 'part' / 'run' / 'final_G.ckpt'))
    assert max(float(np.abs(final_a[k] - final_b[k]).max()) for k in final_a) <= 1e-6
    rows = read_csv(str(tmp_path / 'part' / 'run' / 'loss.csv'))
    assert [r['iter'] for r in rows] == [5, 10, 15, 20]
    from src.network import InvRescaleNet
    from src.utils.checkpoint import load_weights
    for name in ('final_G.ckpt', 'checkpoints/state_00000020.ckpt'):  # what val.py / export load
        assert load_weights(InvRescaleNet([1]), str(tmp_path / 'part' / 'run' / name)) == [1]


def test_nonfinite_skips_then_stops(tmp_path, monkeypatch):
    from src.trainer import Trainer
    original = Trainer.fetch

    def poisoned(self, batch):
        hr, lr_ref = original(self, batch)
        if self.iteration == 2 or self.iteration >= 6:  # one bad batch, then only bad ones
            hr = np.full_like(hr, np.nan)
        return hr, lr_ref

    monkeypatch.setattr(Trainer, 'fetch', poisoned)
    trainer = Trainer(tiny_opt(tmp_path, 'train.niter=30', 'logger.save_checkpoint_freq=4',
                               'train.max_nonfinite=3', 'name=nan'))
    with pytest.raises(IRNError, match=r'3 non-finite losses in a row.*state_00000004\.ckpt'):
        trainer.run()
    assert trainer.iteration == 9 and trainer.nonfinite_total == 4
    ckpt_dir = str(tmp_path / 'nan' / 'checkpoints')
    assert [os.path.basename(s) for s in list_train_states(ckpt_dir)] == ['state_00000004.ckpt']
    weights, _ = read_weights(os.path.join(ckpt_dir, 'state_00000004.ckpt'))
    assert all(np.isfinite(w).all() for w in weights.values())
    # the skipped updates left the weights untouched and finite
    assert all(np.isfinite(p.asnumpy()).all() for p in trainer.net.get_parameters())
    log = open(tmp_path / 'nan' / 'train.log').read()
    assert 'iter 3: non-finite loss' in log and 'update skipped (1 in a row, 1 in total)' in log


def test_amp_o1_keeps_names_and_fp32_loss():
    from src.amp import apply_amp
    from src.loss import IRNWithLoss
    from src.network import InvRescaleNet

    def loss_of(level):
        net = InvRescaleNet([1], seed=3)
        rng = np.random.default_rng(0)
        for p in net.get_parameters():
            if 'conv5' in p.name:  # make the sub-networks non-zero
                p.set_data(ms.Tensor(0.02 * rng.standard_normal(p.shape).astype(np.float32)))
        names = [p.name for p in net.get_parameters()]
        apply_amp(net, level)
        assert [p.name for p in net.get_parameters()] == names
        assert all(p.dtype == ms.float32 for p in net.get_parameters())
        data = np.random.default_rng(1)
        hr = ms.Tensor(data.random((2, 3, 16, 16), dtype=np.float32))
        lr = ms.Tensor(data.random((2, 3, 8, 8), dtype=np.float32))
        z = ms.Tensor(data.standard_normal((2, 9, 8, 8), dtype=np.float32))
        out = IRNWithLoss(net, 4.0)(hr, lr, z)
        assert all(o.dtype == ms.float32 for o in out)
        return np.array([float(o.asnumpy()) for o in out])

    o0, o1 = loss_of('O0'), loss_of('O1')
    assert np.all(np.isfinite(o1))
    np.testing.assert_allclose(o1, o0, rtol=2e-3)
    assert not np.array_equal(o1, o0)  # the convolutions really ran in float16


def test_amp_o1_trains(tmp_path):
    """O1 with dynamic loss scaling: trains, and the scale is part of the resumable state."""
    from src.trainer import Trainer
    from src.train_log import read_csv
    trainer = Trainer(tiny_opt(tmp_path, 'train.amp_level=O1', 'train.niter=6',
                               'train.loss_scale=dynamic', 'train.loss_scale_window=2',
                               'logger.print_freq=3', 'logger.save_checkpoint_freq=6', 'name=amp'))
    trainer.run()
    rows = read_csv(str(tmp_path / 'amp' / 'loss.csv'))
    assert trainer.nonfinite_total == 0 and rows[-1]['loss'] < rows[0]['loss']
    assert 'amp O1' in open(tmp_path / 'amp' / 'train.log').read()
    state = ms.load_checkpoint(str(tmp_path / 'amp' / 'checkpoints' / 'state_00000006.ckpt'))
    assert float(state['loss_scale.loss_scale.value'].asnumpy()) == 2.0 ** 3  # doubled every 2


def test_evaluate_protocol():
    from src.data.sources import ValidationSource
    from src.evaluate import evaluate, summarize, METRICS
    from src.network import InvRescaleNet
    net = InvRescaleNet([1], seed=0)
    source = ValidationSource(os.path.join(SAMPLE, 'val'), 2, max_images=2)
    zero = evaluate(net, source, 2, 'zero', 0, 3)
    assert len(zero) == 2 and zero[0]['draws'] == 1 and set(METRICS) <= set(zero[0])
    # a fresh IRN is the Haar cascade: z = 0 reconstructs a 2x2-box upsampling of its LR
    assert 20 < zero[0]['psnr_y'] < 60 and zero[0]['lr_psnr_rgb'] > 30
    a = evaluate(net, source, 2, 'sample', 7, 2)
    b = evaluate(net, source, 2, 'sample', 7, 2)
    assert a == b and a[0]['draws'] == 2
    assert a[0]['psnr_y'] < zero[0]['psnr_y']  # untrained net: noise in z hurts
    assert summarize(a)['psnr_y'] == pytest.approx(np.mean([r['psnr_y'] for r in a]))
    with pytest.raises(IRNError, match='scale'):
        evaluate(net, source, 4)


def run_train_cli(*args):
    """train.py in a subprocess; returns (returncode, stderr)."""
    proc = subprocess.run([sys.executable, 'train.py', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stderr.strip()


@pytest.mark.parametrize('args, message', [
    (['train.nitre=5'], "unknown key 'train.nitre' (did you mean 'train.niter'?)"),
    (['--data_path', '/nonexistent/irn'], '/nonexistent/irn: data path not found'),
])
def test_train_cli_errors_are_one_line(tmp_path, args, message):
    code, err = run_train_cli('--config', 'src/options/train_IRN_x2.yml', '--output_dir',
                              str(tmp_path), *args)
    assert code == 2, err
    assert err.splitlines()[-1] == f'error: {message}' or message in err.splitlines()[-1]
    assert len([line for line in err.splitlines() if line.startswith('error:')]) == 1
    assert not os.listdir(tmp_path)  # nothing written before the inputs were checked


def test_stop_request_saves_a_resumable_state(tmp_path, monkeypatch):
    """A signal (Ctrl-C / SIGTERM) stops after the current step with a state on disk."""
    from src.trainer import Trainer
    original = Trainer.fetch

    def signal_during_iteration_4(self, batch):
        if self.iteration == 3:
            self.stop_requested = True  # what train.py's signal handler does
        return original(self, batch)

    monkeypatch.setattr(Trainer, 'fetch', signal_during_iteration_4)
    out = Trainer(tiny_opt(tmp_path, 'train.niter=50', 'logger.save_checkpoint_freq=10',
                           'name=run')).run()
    assert out['stopped'] and out['iteration'] == 4
    states = list_train_states(str(tmp_path / 'run' / 'checkpoints'))
    assert [os.path.basename(p) for p in states] == ['state_00000004.ckpt']
    monkeypatch.setattr(Trainer, 'fetch', original)
    resumed = Trainer(tiny_opt(tmp_path, 'train.niter=6', 'name=run'), resume=True)
    assert resumed.iteration == 4


def test_failed_validation_leaves_a_resumable_state(tmp_path, monkeypatch):
    """An error while validating re-raises, but the step it followed is saved first."""
    from src.trainer import Trainer

    def broken(self):
        raise RuntimeError('validation broke')

    monkeypatch.setattr(Trainer, 'validate', broken)
    with pytest.raises(RuntimeError, match='validation broke'):
        Trainer(tiny_opt(tmp_path, 'train.niter=50', 'train.val_freq=3',
                         'logger.save_checkpoint_freq=10', 'name=run')).run()
    states = list_train_states(str(tmp_path / 'run' / 'checkpoints'))
    assert [os.path.basename(p) for p in states] == ['state_00000003.ckpt']
