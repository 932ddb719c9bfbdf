"""Data parallel for real: msrun with 2 CPU workers vs one process on the same global batch.

One msrun job (tests/dist_worker.py) runs two cases: the CPU default (oneDNN conv, plain
step) with sharded validation, and the off-CPU path (MindSpore's Conv2D, block-wise
``recompute`` then ``invertible`` steps with the reducer) with a stop requested on one rank.
A second job goes through scripts/run_distribute_train.sh and is stopped with SIGTERM.
"""
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

SAMPLE_TRAIN = os.path.join(ROOT, 'data', 'sample', 'train')
SAMPLE_VAL = os.path.join(ROOT, 'data', 'sample', 'val')
TINY = ['name=dp', 'network_G.block_num=[1]', 'datasets.train.GT_size=32',
        'datasets.train.batch_size=4', 'datasets.train.n_workers=1', 'train.niter=4',
        'logger.print_freq=2', 'logger.save_checkpoint_freq=4', 'train.val_freq=1000']
ARGS = ['--config', 'src/options/train_IRN_x2.yml', '--device_target', 'CPU', '--data_path',
        SAMPLE_TRAIN, *TINY]
MSRUN = shutil.which('msrun', path=os.path.dirname(sys.executable))
needs_msrun = pytest.mark.skipif(MSRUN is None, reason='msrun not installed next to this python')


def free_port():
    """A TCP port nobody listens on right now (tests run next to other jobs)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env_with_msrun():
    return dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])


def worker_logs(logs):
    return '\n----\n'.join(open(f, errors='replace').read()[-1500:]
                           for f in sorted(glob.glob(f'{logs}/*.log')))


def small_val_set(folder):
    """3 validation images of 48 x 48 (crops of data/sample/val): an odd count, so the two
    ranks' shards differ in size."""
    import cv2
    folder.mkdir()
    for name in sorted(os.listdir(SAMPLE_VAL))[:3]:
        cv2.imwrite(str(folder / name), cv2.imread(os.path.join(SAMPLE_VAL, name))[40:88, 56:104])
    return str(folder)


def single(tmp_path, name, *extra, conv=None):
    """A one-process run of the same config, without validation (``conv``: IRN_CONV for it)."""
    import train
    from src.utils.device import select_conv
    saved = os.environ.get('IRN_CONV')
    if conv:
        os.environ['IRN_CONV'] = conv
    try:
        trainer = train.build_trainer(ARGS + [f'name={name}', *extra,
                                              '--output_dir', str(tmp_path / 'single')])
        assert trainer.rank_size == 1
        trainer.run()
    finally:
        if saved is None:
            os.environ.pop('IRN_CONV', None)
        else:
            os.environ['IRN_CONV'] = saved
        select_conv('CPU')
    return trainer


def assert_same_weights(ranks, trainer, atol=1e-6):
    r0, r1 = ranks
    params = [p.name for p in trainer.net.get_parameters()]
    assert all(np.array_equal(r0[k], r1[k]) for k in params)  # ranks never diverge
    for p in trainer.net.get_parameters():
        np.testing.assert_allclose(r0[p.name], p.asnumpy(), rtol=0, atol=atol, err_msg=p.name)


@needs_msrun
def test_two_msrun_workers_equal_single_process(tmp_path):
    logs, out = tmp_path / 'logs', tmp_path / 'ranks'
    out.mkdir()
    cmd = [MSRUN, '--worker_num=2', '--local_worker_num=2', f'--master_port={free_port()}',
           '--join=True', f'--log_dir={logs}', 'tests/dist_worker.py', str(out), *ARGS,
           '--val_path', small_val_set(tmp_path / 'val'), '--output_dir', str(tmp_path / 'dp')]
    proc = subprocess.run(cmd, cwd=ROOT, env=env_with_msrun(), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        pytest.fail(f'msrun failed ({proc.returncode}):\n' + worker_logs(logs))
    ranks = {case: [np.load(out / f'{case}_rank{r}.npz') for r in (0, 1)]
             for case in ('plain', 'blockwise')}

    # the CPU default: same samples, same z rows, same update as one process
    log = open(tmp_path / 'dp' / 'dp' / 'train.log').read()
    assert '2 device(s), batch 4 (2 per device)' in log and 'iter 4/4' in log
    assert 'conv dnnl' in log and 'val iter 4 (3 images' in log
    assert os.path.isfile(tmp_path / 'dp' / 'dp' / 'checkpoints' / 'state_00000004.ckpt')
    plain = single(tmp_path, 'dp')
    assert_same_weights(ranks['plain'], plain)
    from src.network import InvRescaleNet
    fresh = InvRescaleNet([1], seed=plain.opt['train']['manual_seed'])
    moved = max(float(np.abs(p.asnumpy() - q.asnumpy()).max())
                for p, q in zip(plain.net.get_parameters(), fresh.get_parameters()))
    assert moved > 1e-4  # the comparison is not between untouched weights
    single_log = open(tmp_path / 'single' / 'dp' / 'train.log').read()
    assert logged_losses(log) == pytest.approx(logged_losses(single_log), rel=1e-4)
    # sharded validation (each rank half the images, values gathered) = all images on one
    # rank, bit for bit; a flag True on rank 0 only: 'all' False, 'any' True on both ranks; a
    # non-finite loss on rank 1 only skips the update on both (the parameter is unchanged),
    # and the next, finite step is applied on both
    for r in ranks['plain']:
        np.testing.assert_array_equal(r['sharded'], r['whole'])
        assert list(r['flags']) == [False, True, False, True, True]

    # off CPU: MindSpore's conv, the block-wise walk (recompute in iteration 1, invertible in
    # 2: they compute the same update), reducer after it; a stop asked on rank 1 alone during
    # iteration 2 stops both ranks after it, with a state saved
    log = open(tmp_path / 'dp' / 'blockwise' / 'train.log').read()
    assert 'recompute, amp O0, conv mindspore' in log and 'stop requested at iteration 2' in log
    assert os.path.isfile(tmp_path / 'dp' / 'blockwise' / 'checkpoints' / 'state_00000002.ckpt')
    for r in ranks['blockwise']:
        assert int(r['iteration']) == 2 and bool(r['stopped']) and not bool(r['stored'])
    recompute = single(tmp_path, 'recompute', 'train.memory_mode=recompute', 'train.niter=2',
                       conv='mindspore')
    assert_same_weights(ranks['blockwise'], recompute)


@needs_msrun
def test_sigterm_to_the_launcher_stops_every_worker_cleanly(tmp_path):
    """msrun starts each worker in its own session and kills them on Ctrl-C; the launch script
    forwards SIGTERM / SIGINT to the workers, which stop after the same step and save."""
    run = tmp_path / 'out' / 'stop'
    env = dict(env_with_msrun(), OUTPUT_DIR=str(tmp_path / 'out'), MASTER_PORT=str(free_port()),
               PYTHON=sys.executable)
    cmd = ['bash', os.path.join(ROOT, 'scripts', 'run_distribute_train.sh'), '2', SAMPLE_TRAIN,
           '2', 'CPU', *TINY, 'name=stop', 'train.niter=100000', 'logger.print_freq=1',
           'logger.save_checkpoint_freq=100000']
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if os.path.isfile(run / 'train.log') and 'iter 2/' in open(run / 'train.log').read():
                break
            time.sleep(2)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert 'forwarding SIGTERM to 2 worker(s)' in output
    log = open(run / 'train.log').read()
    stopped = int(re.search(r'stop requested at iteration (\d+)', log).group(1))
    assert [os.path.basename(p) for p in glob.glob(str(run / 'checkpoints' / '*.ckpt'))] == \
        [f'state_{stopped:08d}.ckpt']
    assert os.path.isfile(run / 'final_G.ckpt')
    other = open(run / 'msrun_logs' / 'worker_1.log').read()  # rank 1 prints warnings only
    assert f'stop requested at iteration {stopped}' in other


def logged_losses(log):
    """(loss, l_fit, l_ce, l_rec) of the 'iter 4/4' line."""
    line = next(line for line in log.splitlines() if 'iter 4/4' in line)
    words = line.split(' loss ')[1].split(' |')[0].replace('(', '').replace(')', '').split()
    return [float(words[0]), float(words[2]), float(words[4]), float(words[6])]
