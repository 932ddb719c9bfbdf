"""Data parallel for real: msrun with 2 CPU workers vs one process on the same global batch.

One msrun job (tests/dist_worker.py) runs two IRN cases: the CPU default (oneDNN conv, plain
step) with sharded validation, and the off-CPU path (MindSpore's Conv2D, block-wise
``recompute`` then ``invertible`` steps with the reducer) with a stop requested on one rank.
A second job runs IRN-Color's plain case; a third goes through scripts/run_distribute_train.sh
and is stopped with SIGTERM.
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
from src.utils.checkpoint import load_weights

SAMPLE_TRAIN = os.path.join(ROOT, 'data', 'sample', 'train')
SAMPLE_VAL = os.path.join(ROOT, 'data', 'sample', 'val')
TINY = ['name=dp', 'network_G.block_num=[1]', 'datasets.train.GT_size=32',
        'datasets.train.batch_size=4', 'datasets.train.n_workers=1', 'train.niter=4',
        'logger.print_freq=2', 'logger.save_checkpoint_freq=4', 'train.val_freq=1000']
ARGS = ['--config', 'src/options/train_IRN_x2.yml', '--device_target', 'CPU', '--data_path',
        SAMPLE_TRAIN, *TINY]
# IRN-Color convolves at full resolution: GT 16, validation on one small crop. It starts from
# the fixture's weights: from the identity init (zero conv5) its first Adam steps turn
# float-rounding differences of the gradient sum into different updates. Even so, Adam's
# normalised step moves a weight with a near-zero gradient by a rounding-sized amount: the
# parity tests' weight tolerance (EXTENSIONS.md 8.4) applies.
COLOR_ARGS = ['--config', 'src/options/train_IRN_color.yml', '--device_target', 'CPU',
              '--data_path', SAMPLE_TRAIN, '--ckpt', os.path.join(ROOT, 'tests', 'data', 'irn_color.pth'),
              *[kv for kv in TINY if not kv.startswith(('network_G.', 'datasets.train.GT_size'))],
              'network_grey.block_num=[2]', 'datasets.train.GT_size=16']
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


def small_color_val_set(folder):
    """One 24 x 32 crop of data/sample/val's first image (rank 1's shard is empty)."""
    import cv2
    folder.mkdir()
    first = sorted(os.listdir(SAMPLE_VAL))[0]
    cv2.imwrite(str(folder / first), cv2.imread(os.path.join(SAMPLE_VAL, first))[:24, :32])
    return str(folder)


def run_msrun(tmp_path, cases, args, val_path):
    """tests/dist_worker.py under msrun with 2 CPU workers; returns ``{case: [rank0, rank1]}``
    (their npz files) and the output folder of the runs."""
    logs, out = tmp_path / 'logs', tmp_path / 'ranks'
    out.mkdir()
    cmd = [MSRUN, '--worker_num=2', '--local_worker_num=2', f'--master_port={free_port()}',
           '--join=True', f'--log_dir={logs}', 'tests/dist_worker.py', str(out), ','.join(cases),
           *args, '--val_path', val_path, '--output_dir', str(tmp_path / 'dp')]
    proc = subprocess.run(cmd, cwd=ROOT, env=env_with_msrun(), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        pytest.fail(f'msrun failed ({proc.returncode}):\n' + worker_logs(logs))
    ranks = {case: [np.load(out / f'{case}_rank{r}.npz') for r in (0, 1)] for case in cases}
    return ranks, tmp_path / 'dp'


def single(tmp_path, name, *extra, args=ARGS, conv=None):
    """A one-process run of the same config, without validation (``conv``: IRN_CONV for it)."""
    import train
    from src.utils.device import select_conv
    saved = os.environ.get('IRN_CONV')
    if conv:
        os.environ['IRN_CONV'] = conv
    try:
        trainer = train.build_trainer(args + [f'name={name}', *extra,
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
    """Both ranks' weights equal; rank 0's within ``atol`` of ``trainer``'s (99.9% within
    1e-6); returns how far ``trainer``'s weights moved from where training started."""
    r0, r1 = ranks
    params = [p.name for p in trainer.net.get_parameters()]
    assert all(np.array_equal(r0[k], r1[k]) for k in params)  # ranks never diverge
    start = trainer.model.build_net()  # the weights training started from
    ckpt = trainer.opt['path'].get('pretrain_model_G')
    if ckpt:
        load_weights(start, ckpt)
    fresh = {p.name: p.asnumpy() for p in start.get_parameters()}
    moved, diffs = 0.0, []
    for p in trainer.net.get_parameters():
        np.testing.assert_allclose(r0[p.name], p.asnumpy(), rtol=0, atol=atol, err_msg=p.name)
        diffs.append(np.abs(r0[p.name] - p.asnumpy()).ravel())
        moved = max(moved, float(np.abs(p.asnumpy() - fresh[p.name]).max()))
    assert np.mean(np.concatenate(diffs) <= 1e-6) >= 0.999
    return moved


def assert_plain_case(ranks, dp_log, trainer, num_val, atol=1e-6):
    """The plain case: weights and logged losses (global-batch means on both, all-reduced)
    equal one process's; sharded validation equals all images on one rank, bit for bit; a
    flag True on rank 0 only: 'all' False, 'any' True on both ranks; a non-finite loss on
    rank 1 only skips the update on both (the parameter is unchanged), and the next, finite
    step is applied on both."""
    assert '2 device(s), batch 4 (2 per device)' in dp_log and 'iter 4/4' in dp_log
    assert f'val iter 4 ({num_val} images' in dp_log
    assert assert_same_weights(ranks, trainer, atol) > 1e-4  # not between untouched weights
    single_log = open(os.path.join(trainer.out_dir, 'train.log')).read()
    assert logged_losses(dp_log) == pytest.approx(logged_losses(single_log), rel=1e-4)
    for r in ranks:
        np.testing.assert_array_equal(r['sharded'], r['whole'])
        assert list(r['flags']) == [False, True, False, True, True]


@needs_msrun
def test_two_msrun_workers_equal_single_process(tmp_path):
    ranks, dp = run_msrun(tmp_path, ('plain', 'blockwise'), ARGS, small_val_set(tmp_path / 'val'))

    # the CPU default: same samples, same z rows, same update as one process
    log = open(dp / 'dp' / 'train.log').read()
    assert 'conv dnnl' in log
    assert os.path.isfile(dp / 'dp' / 'checkpoints' / 'state_00000004.ckpt')
    assert_plain_case(ranks['plain'], log, single(tmp_path, 'dp'), 3)

    # off CPU: MindSpore's conv, the block-wise walk (recompute in iteration 1, invertible in
    # 2: they compute the same update), reducer after it; a stop asked on rank 1 alone during
    # iteration 2 stops both ranks after it, with a state saved
    log = open(dp / 'blockwise' / 'train.log').read()
    assert 'recompute, amp O0, conv mindspore' in log and 'stop requested at iteration 2' in log
    assert os.path.isfile(dp / 'blockwise' / 'checkpoints' / 'state_00000002.ckpt')
    for r in ranks['blockwise']:
        assert int(r['iteration']) == 2 and bool(r['stopped']) and not bool(r['stored'])
    recompute = single(tmp_path, 'recompute', 'train.memory_mode=recompute', 'train.niter=2',
                       conv='mindspore')
    assert_same_weights(ranks['blockwise'], recompute)


@needs_msrun
def test_irn_color_two_msrun_workers_equal_single_process(tmp_path):
    ranks, dp = run_msrun(tmp_path, ('plain',), COLOR_ARGS, small_color_val_set(tmp_path / 'val'))
    log = open(dp / 'dp' / 'train.log').read()
    trainer = single(tmp_path, 'dp', args=COLOR_ARGS)
    assert trainer.model.name == 'IRN-Color'
    assert_plain_case(ranks['plain'], log, trainer, 1, atol=5e-5)


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
