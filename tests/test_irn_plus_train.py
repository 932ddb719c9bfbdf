"""IRN+ as a registry model: config checks, train.py with the VGG file, exact resume of both nets,
both optimizers, D's BatchNorm statistics and the schedule, data parallel over msrun, val.py.

Tiny setting: G x4 [1, 1] from tests/data/irn_x4_tiny.pth, 128 px patches (the smallest D
takes) of the four 160 px sample images, batch 2, D alone for the first step. The VGG19 file
is conftest's ``vgg_file`` (random weights).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, ROOT
from test_distributed import MSRUN, env_with_msrun, free_port, needs_msrun, worker_logs
from src.config import load_config
from src.utils.checkpoint import list_train_states, read_checkpoint
from src.utils.errors import IRNError

CONFIG = os.path.join(ROOT, 'src', 'options', 'train_IRN+_x4.yml')
IMAGES = os.path.join(ROOT, 'data', 'sample', 'val')
TINY = ['network_G.block_num=[1,1]', 'datasets.train.GT_size=128', 'datasets.train.batch_size=2',
        'datasets.train.n_workers=1', 'train.D_init_iters=1', 'logger.print_freq=2',
        'train.val_freq=1000', f"path.pretrain_model_G={os.path.join(DATA, 'irn_x4_tiny.pth')}"]


def tiny_opt(out, vgg, *extra):
    return load_config(CONFIG, TINY + [f'path.pretrain_model_F={vgg}'] + list(extra),
                       device_target='CPU', data_path=IMAGES, output_dir=str(out))


def state_of(trainer):
    """Every resumable value of an IRN+ trainer (nets, BN stats, both Adams, the counter)."""
    return {f'{group}.{p.name}': p.asnumpy().copy()
            for group, cell in trainer.model.state_cells().items() for p in cell.get_parameters()}


def test_config_errors(vgg_file):
    with pytest.raises(IRNError, match='lambda_ce_forw is not used by IRN\\+'):
        load_config(CONFIG, ['train.lambda_ce_forw=1', f'path.pretrain_model_F={vgg_file}'])
    with pytest.raises(IRNError, match='GT_size is 160, but Discriminator_VGG_128 takes 128-159'):
        load_config(CONFIG, ['datasets.train.GT_size=160', f'path.pretrain_model_F={vgg_file}'])
    with pytest.raises(IRNError, match='gan_type must be one of'):
        load_config(CONFIG, ['train.gan_type=lsgan', f'path.pretrain_model_F={vgg_file}'])
    opt = load_config(CONFIG, [f'path.pretrain_model_F={vgg_file}'])
    t = opt['train']
    assert (t['lr_G'], t['lr_D'], t['beta2_D'], t['D_init_iters'], t['lambda_fit_forw'],
            t['lambda_rec_back'], t['feature_weight'], t['gan_weight']) == \
        (1e-4, 1e-4, 0.99, 5000, 16.0, 0.01, 0.01, 1.0)
    assert t['lr_steps'] == [50000, 100000, 200000, 300000] and t['niter'] == 400000


def test_missing_vgg_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, 'train.py', '--config', CONFIG, '--output_dir',
                           str(tmp_path), '--data_path', IMAGES, 'path.pretrain_model_F=~'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'vgg19-dcbb9e9d.pth' in last and '--vgg19' in last
    assert not os.listdir(tmp_path)


def run_worker(tmp_path, out, *args):
    """tests/irn_plus_worker.py in a subprocess (one trainer per process: bounded memory)."""
    proc = subprocess.run([sys.executable, 'tests/irn_plus_worker.py', str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    return proc.returncode, proc.stderr


def train_args(out, vgg, *extra):
    return ['--config', CONFIG, '--device_target', 'CPU', '--data_path', IMAGES, '--output_dir',
            str(out), *TINY, f'path.pretrain_model_F={vgg}', 'train.niter=4',
            'logger.save_checkpoint_freq=2', 'name=run', *extra]


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, vgg_file):
    """4 iterations (1 D-only, 3 G + D) without interruption."""
    root = tmp_path_factory.mktemp('full')
    code, err = run_worker(root, root / 'state.npz', *train_args(root, vgg_file))
    assert code == 0, err[-3000:]
    return root


def test_train_and_resume_is_exact(tmp_path, vgg_file, full_run):
    from src.train_log import read_csv
    rows = read_csv(str(full_run / 'run' / 'loss.csv'))
    assert [r['iter'] for r in rows] == [2, 4]
    assert all(np.isfinite(r[k]) for r in rows for k in ('loss', 'l_fea', 'l_gan', 'l_d'))
    full = np.load(full_run / 'state.npz')
    assert int(full['netD.bn0_1.num_batches_tracked']) == 2 + 3 * 3  # 2 per D-only step, 3 per G + D
    # the same run killed after iteration 3 (its last state: iteration 2), then resumed
    code, err = run_worker(tmp_path, tmp_path / 'none.npz', '--crash-after', '3',
                           *train_args(tmp_path, vgg_file))
    assert code == 3, err[-3000:]
    states = list_train_states(str(tmp_path / 'run' / 'checkpoints'))
    assert [os.path.basename(s) for s in states] == ['state_00000002.ckpt']
    code, err = run_worker(tmp_path, tmp_path / 'state.npz', *train_args(tmp_path, vgg_file),
                           '--resume')
    assert code == 0, err[-3000:]
    assert 'resumed from' in open(tmp_path / 'run' / 'train.log').read()
    resumed = np.load(tmp_path / 'state.npz')
    assert sorted(full.files) == sorted(resumed.files)
    for prefix in ('net.', 'netD.', 'opt.moment1.', 'optD.d_moment2.', 'netD.bn4_1.running_var',
                   'sched.iteration', 'optD.d_adam_step'):
        assert any(k.startswith(prefix) for k in full.files), prefix
    worst = max(float(np.abs(full[k].astype(np.float64) - resumed[k]).max()) for k in full.files)
    assert worst <= 1e-6, worst
    assert int(resumed['sched.iteration']) == 4
    weights, arch = read_checkpoint(str(tmp_path / 'run' / 'final_G.ckpt'))
    assert arch['model'] == 'IRN+' and arch['block_num'] == [1, 1]
    assert not any(k.startswith('conv') for k in weights)  # final_G holds G only


def test_discriminator_from_a_training_state(full_run):
    """path.pretrain_model_D: D's weights and BatchNorm statistics from a state's netD entries."""
    from src.network.discriminator import Discriminator_VGG_128, load_discriminator
    full = np.load(full_run / 'state.npz')
    net_d = Discriminator_VGG_128(seed=123)
    load_discriminator(net_d, str(full_run / 'run' / 'checkpoints' / 'state_00000004.ckpt'))
    for p in net_d.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), full[f'netD.{p.name}'], err_msg=p.name)
    with pytest.raises(IRNError, match='Discriminator_VGG_128.*missing'):
        load_discriminator(net_d, str(full_run / 'run' / 'final_G.ckpt'))


def test_val_on_irn_plus_checkpoint(tmp_path, vgg_file, full_run):
    """val.py recognises an IRN+ checkpoint; the perceptual score only with a VGG file."""
    import json
    import val
    base = ['--ckpt', str(full_run / 'run' / 'final_G.ckpt'), '--data_path', IMAGES,
            '--max_images', '1', '--no_progress', 'val.z_draws=1']
    assert val.main(base + ['--report', str(tmp_path / 'plain.json')]) == 0
    plain = json.load(open(tmp_path / 'plain.json'))
    assert plain['model'] == 'IRN+' and plain['protocol']['perceptual'] is None
    row = plain['sets']['val']['images'][0]
    assert 'vgg54_mse' not in row and np.isfinite(row['psnr_y'])
    assert val.main(base + ['--vgg19', vgg_file, '--report', str(tmp_path / 'vgg.json')]) == 0
    scored = json.load(open(tmp_path / 'vgg.json'))
    row_v = scored['sets']['val']['images'][0]
    assert row_v['psnr_y'] == row['psnr_y'] and row_v['vgg54_mse'] > 0
    assert scored['protocol']['perceptual']['metric'] == 'vgg54_mse'


def test_infer_and_export_on_irn_plus_checkpoint(tmp_path, full_run):
    """infer.py and export.py take an IRN+ checkpoint: its G is an IRN x4 (IRN's graphs)."""
    import cv2
    from export import main as export_main
    from infer import main as infer_main
    ckpt = str(full_run / 'run' / 'final_G.ckpt')
    image = cv2.imread(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0]))[:40, :56]
    cv2.imwrite(str(tmp_path / 'a.png'), image)
    assert infer_main(['down', '--ckpt', ckpt, '--input', str(tmp_path / 'a.png'),
                       '--output', str(tmp_path / 'lr')]) == 0
    assert cv2.imread(str(tmp_path / 'lr' / 'a.png')).shape == (10, 14, 3)
    assert infer_main(['up', '--ckpt', ckpt, '--input', str(tmp_path / 'lr'), '--output',
                       str(tmp_path / 'hr')]) == 0
    assert cv2.imread(str(tmp_path / 'hr' / 'a.png')).shape == (40, 56, 3)
    assert export_main(['--ckpt', ckpt, '--file_name', str(tmp_path / 'g')]) == 0
    graphs = sorted(n for n in os.listdir(tmp_path) if n.endswith('.mindir'))
    assert graphs == ['g_down.mindir', 'g_up.mindir'], graphs


@needs_msrun
def test_msrun_reduces_both_nets(tmp_path):
    """2 workers, each on its own half of the batch: identical G and D (and Adam states) on
    both ranks after G + D steps means both nets' gradients were all-reduced."""
    args = ['--config', CONFIG, '--device_target', 'CPU', '--data_path', IMAGES,
            '--output_dir', str(tmp_path / 'dp'), *TINY, 'datasets.train.batch_size=4',
            'train.feature_weight=0', 'train.niter=2', 'logger.save_checkpoint_freq=2', 'name=dp']
    logs = tmp_path / 'logs'
    cmd = [MSRUN, '--worker_num=2', '--local_worker_num=2', f'--master_port={free_port()}',
           '--join=True', f'--log_dir={logs}', 'tests/irn_plus_worker.py',
           str(tmp_path / 'rank{rank}.npz'), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env_with_msrun(), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        pytest.fail(f'msrun failed ({proc.returncode}):\n' + worker_logs(logs))
    r0, r1 = np.load(tmp_path / 'rank0.npz'), np.load(tmp_path / 'rank1.npz')
    assert sorted(r0.files) == sorted(r1.files)
    assert any(k.startswith('netD.conv') for k in r0.files)
    assert any(k.startswith('optD.d_moment1') for k in r0.files)
    for k in r0.files:
        if '.running_' not in k:  # each rank's BatchNorm statistics are over its own images
            np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    assert not np.array_equal(r0['netD.bn0_1.running_mean'], r1['netD.bn0_1.running_mean'])
    assert int(r0['sched.iteration']) == 2 and int(r0['optD.d_adam_step']) == 2
    assert '2 device(s), batch 4 (2 per device)' in open(tmp_path / 'dp' / 'dp' / 'train.log').read()
