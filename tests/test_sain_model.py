"""SAIN through the registry: configs, training with exact resume (mixture and noise state
included), and the one-line config errors."""
import os

import numpy as np
import pytest

from conftest import ROOT
from src.config import load_config
from src.utils.checkpoint import list_train_states, read_weights
from src.utils.errors import IRNError

SAMPLE = os.path.join(ROOT, 'data', 'sample')
TINY = ['network.e_blocks=1', 'network.v_blocks=1', 'datasets.train.GT_size=32',
        'datasets.train.batch_size=2', 'datasets.train.n_workers=1', 'logger.print_freq=2',
        'train.val_freq=1000']


def tiny_opt(out, *extra, config='train_SAIN_JPEG_x2.yml'):
    return load_config(os.path.join(ROOT, 'src', 'options', config), TINY + list(extra),
                       device_target='CPU', data_path=os.path.join(SAMPLE, 'train'),
                       output_dir=str(out))


@pytest.mark.parametrize('config,scale,e,v,lam,fmt', [
    ('train_SAIN_JPEG_x2.yml', 2, 5, 3, 4.0, 'JPEG'), ('train_SAIN_WebP_x2.yml', 2, 5, 3, 4.0, 'WebP'),
    ('train_SAIN_JPEG_x4.yml', 4, 10, 6, 16.0, 'JPEG'), ('test_SAIN_JPEG_x2.yml', 2, 5, 3, 4.0, 'JPEG'),
    ('test_SAIN_WebP_x2.yml', 2, 5, 3, 4.0, 'WebP'), ('test_SAIN_JPEG_x4.yml', 4, 10, 6, 16.0, 'JPEG')])
def test_paper_configs(config, scale, e, v, lam, fmt):
    opt = load_config(os.path.join(ROOT, 'src', 'options', config))
    n, t = opt['network'], opt['train']
    assert (opt['model'], opt['scale'], n['e_blocks'], n['v_blocks'], n['gmm_components']) == \
        ('SAIN', scale, e, v, 5)
    assert (t['lambda_fit_forw'], t['lambda_rec_back'], t['comp_quality'], t['lr_G'],
            t['weight_decay_G'], t['gradient_clipping']) == (lam, 1.0, 75, 2e-4, 1e-5, 10.0)
    assert opt['datasets']['train']['GT_size'] == 128 and opt['datasets']['train']['batch_size'] == 16
    assert (t['comp_format'] if config.startswith('train') else opt['test']['format']) == fmt


@pytest.mark.parametrize('override,message', [
    ('datasets.train.GT_size=144', 'multiples of 16'),
    ('train.lr_G=1e-3', 'train.lr .* and train.lr_G .* disagree'),
    ('train.memory_mode=invertible', "train.memory_mode must be one of \\['auto', 'plain'\\]"),
    ('train.comp_format=PNG', 'train.comp_format must be one of'),
    ('train.comp_quality=100', 'divides by zero'),
    ('network.e_blocks=0', 'e_blocks >= 1'),
    ('network.block_count=3', "unknown key 'network.block_count'"),
])
def test_config_errors(override, message):
    with pytest.raises(IRNError, match=message):
        load_config(os.path.join(ROOT, 'src', 'options', 'train_SAIN_JPEG_x2.yml'), [override])


class Crash(Exception):
    """Simulated kill."""


def _state(trainer):
    out = {p.name: p.asnumpy().copy() for p in trainer.net.get_parameters()}
    out.update({p.name: p.asnumpy().copy() for p in trainer.optimizer.get_parameters()})
    return out


def test_train_and_resume_exactly(tmp_path, monkeypatch, pynative):
    from src.trainer import Trainer
    from src.train_log import read_csv
    common = ('train.niter=2', 'logger.save_checkpoint_freq=1', 'logger.print_freq=1', 'name=run')
    full = Trainer(tiny_opt(tmp_path / 'full', *common))
    full.run()
    rows = read_csv(str(tmp_path / 'full' / 'run' / 'loss.csv'))
    assert [r['iter'] for r in rows] == [1, 2]
    for key in ('l_forw_fit1', 'l_forw_fit2', 'l_reg', 'l_rel', 'l_back_rec', 'mu0', 'logvar4'):
        assert np.isfinite(rows[-1][key]), key
    original = Trainer.fetch

    def crash_after_1(self, batch):
        if self.iteration == 1:
            raise Crash()
        return original(self, batch)

    monkeypatch.setattr(Trainer, 'fetch', crash_after_1)
    part = Trainer(tiny_opt(tmp_path / 'part', *common))
    with pytest.raises(Crash):
        part.run()
    monkeypatch.setattr(Trainer, 'fetch', original)
    assert [os.path.basename(s) for s in list_train_states(str(tmp_path / 'part' / 'run' / 'checkpoints'))] \
        == ['state_00000001.ckpt']
    resumed = Trainer(tiny_opt(tmp_path / 'part', *common), resume=True)
    assert resumed.iteration == 1
    resumed.run()
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys() and 'gmm.gmm_para' in a and any(k.startswith('moment2.') for k in a)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) == 0.0
    assert np.abs(a['gmm.gmm_para'] - full.model.build_net().gmm.gmm_para.asnumpy()).max() > 0
    weights, arch = read_weights(str(tmp_path / 'part' / 'run' / 'final_G.ckpt'))
    assert 'gmm.gmm_para' in weights
