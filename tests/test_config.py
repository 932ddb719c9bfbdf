"""Config loading: the authors' files parse, overrides apply, bad keys and values fail in words."""
import os

import pytest

from conftest import ROOT
from src.config import load_config
from src.utils.errors import IRNError


@pytest.mark.parametrize('scale,blocks', [(2, [8]), (4, [8, 8]), (8, [8, 8, 8])])
def test_paper_configs(scale, blocks):
    opt = load_config(os.path.join(ROOT, f'src/options/train_IRN_x{scale}.yml'))
    t = opt['train']
    assert opt['scale'] == scale and opt['network_G']['block_num'] == blocks
    assert t['lambda_fit_forw'] == scale ** 2 and t['lambda_rec_back'] == t['lambda_ce_forw'] == 1
    assert t['lr_G'] == 2e-4 and t['weight_decay_G'] == 1e-5 and t['gradient_clipping'] == 10
    assert t['lr_steps'] == [100000, 200000, 300000, 400000] and t['niter'] == 500000
    assert opt['datasets']['train']['batch_size'] == 16 and opt['datasets']['train']['GT_size'] == 144


def test_overrides_are_typed():
    opt = load_config(None, ['train.niter=1000', 'train.lr_G=1e-4', 'datasets.train.use_flip=false',
                             'train.lr_steps=[10, 20]'])
    assert opt['train']['niter'] == 1000 and opt['train']['lr_G'] == 1e-4
    assert opt['datasets']['train']['use_flip'] is False and opt['train']['lr_steps'] == [10, 20]


@pytest.mark.parametrize('override,message', [
    ('train.lr_g=1', "unknown key 'train.lr_g' \\(did you mean 'train.lr_G'\\?\\)"),
    ('train.niter=abc', 'train.niter must be int'),
    ('train.memory_mode=fast', "train.memory_mode must be one of"),
    ('network_G.block_num=[8]', 'scale 4 needs 2 levels'),
    ('datasets.train.GT_size=30', 'GT_size \\(30\\) must be a multiple of scale 4'),
    ('niter', 'expected section.key=value'),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(IRNError, match=message):
        load_config(os.path.join(ROOT, 'src/options/train_IRN_x4.yml'), [override])


def test_bad_files(tmp_path):
    with pytest.raises(IRNError, match='config file not found'):
        load_config(str(tmp_path / 'missing.yml'))
    bad = tmp_path / 'bad.yml'
    bad.write_text('train: [unclosed\n')
    with pytest.raises(IRNError, match='bad.yml: invalid yaml at line'):
        load_config(str(bad))
    typo = tmp_path / 'typo.yml'
    typo.write_text('train:\n  nitre: 5\n')
    with pytest.raises(IRNError, match="typo.yml: unknown key 'train.nitre'"):
        load_config(str(typo))
