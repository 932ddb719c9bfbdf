"""Launch scripts: argument checks, resolved commands (DRY_RUN=1) and one real standalone run."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SAMPLE_TRAIN = os.path.join(ROOT, 'data', 'sample', 'train')
STANDALONE = os.path.join(ROOT, 'scripts', 'run_standalone_train.sh')
DISTRIBUTE = os.path.join(ROOT, 'scripts', 'run_distribute_train.sh')
RANKTABLE = os.path.join(ROOT, 'scripts', 'run_distribute_train_ranktable.sh')


def bash(script, *args, cwd=None, **env):
    """Run a script; returns (code, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ('DEVICE_TARGET', 'DRY_RUN')}
    full_env.update(PYTHON=sys.executable, **env)
    proc = subprocess.run(['bash', script, *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize('script, args, error', [
    (STANDALONE, [], 'expected at least SCALE and DATA_PATH'),
    (STANDALONE, ['5', SAMPLE_TRAIN], "SCALE must be 2, 3, 4 or 8, got '5'"),
    (STANDALONE, ['4', '/nonexistent/div2k'], "DATA_PATH '/nonexistent/div2k' is not a directory"),
    (STANDALONE, ['4', SAMPLE_TRAIN, 'niter'], "must be section.key=value, got 'niter'"),
    (DISTRIBUTE, ['4'], 'expected at least SCALE and DATA_PATH'),
    (DISTRIBUTE, ['4', SAMPLE_TRAIN, 'two'], "DEVICE_NUM must be a positive integer, got 'two'"),
    (DISTRIBUTE, ['4', SAMPLE_TRAIN, '2', 'TPU'], "DEVICE_TARGET must be CPU, GPU or Ascend"),
    (DISTRIBUTE, ['4', SAMPLE_TRAIN, '2', 'CPU', 'x'], "must be section.key=value, got 'x'"),
    (RANKTABLE, ['/nonexistent/rank.json', '4', SAMPLE_TRAIN], 'is not a file'),
])
def test_argument_errors(script, args, error):
    code, out, err = bash(script, *args)
    assert code == 2
    assert err.splitlines()[0].startswith('usage: bash ')
    assert error in err.splitlines()[-1]
    assert out == ''


def test_standalone_command_is_absolute_and_picks_device(tmp_path):
    div2k = tmp_path / 'DIV2K'
    (div2k / 'DIV2K_train_HR').mkdir(parents=True)
    (div2k / 'DIV2K_valid_HR').mkdir()
    code, out, err = bash(STANDALONE, '4', os.path.relpath(div2k, tmp_path), 'train.niter=10',
                          cwd=str(tmp_path), DRY_RUN='1', OUTPUT_DIR='out', DEVICE_TARGET='GPU')
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == 'device: GPU'
    assert lines[1] == f'log file: {tmp_path}/out/IRN_x4/train.log'
    cmd = lines[2]
    assert f'{ROOT}/train.py --config {ROOT}/src/options/train_IRN_x4.yml' in cmd
    assert f'--data_path {div2k} --val_path {div2k} --output_dir {tmp_path}/out --resume' in cmd
    assert cmd.rstrip().endswith('train.niter=10')
    code, out, _ = bash(STANDALONE, '2', SAMPLE_TRAIN, DRY_RUN='1',
                        PATH='/usr/bin:/bin')  # no nvidia-smi on this PATH -> CPU
    assert code == 0 and out.splitlines()[0] == 'device: CPU' and '--val_path' not in out


def test_distribute_defaults(tmp_path):
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, DRY_RUN='1', DEVICE_TARGET='Ascend')
    assert code == 0, err
    assert out.splitlines()[0] == 'device: Ascend x 8'
    assert '--worker_num=8 --local_worker_num=8' in out and '--device_target Ascend' in out
    code, out, err = bash(DISTRIBUTE, '2', SAMPLE_TRAIN, '2', 'CPU', 'name=x', DRY_RUN='1')
    assert code == 0, err
    assert 'msrun --worker_num=2' in out and '/x/train.log' in out
    table = tmp_path / 'rank_table.json'
    table.write_text('{}')
    code, out, err = bash(RANKTABLE, str(table), '4', SAMPLE_TRAIN, '2', DRY_RUN='1')
    assert code == 0, err
    assert 'DEVICE_ID=1 RANK_ID=1' in out and '--distribute' in out


def test_standalone_really_trains(tmp_path):
    code, out, err = bash(STANDALONE, '2', SAMPLE_TRAIN, 'name=tiny', 'network_G.block_num=[1]',
                          'datasets.train.GT_size=16', 'datasets.train.batch_size=2',
                          'datasets.train.n_workers=1', 'train.niter=3', 'logger.print_freq=1',
                          OUTPUT_DIR=str(tmp_path), DEVICE_TARGET='CPU')
    assert code == 0, err[-2000:]
    log = tmp_path / 'tiny' / 'train.log'
    assert f'log file: {log}' in out
    text = log.read_text()
    assert 'iter 3/3' in text and os.path.isfile(tmp_path / 'tiny' / 'final_G.ckpt')
    # the same command again resumes (and has nothing left to do)
    code, out, err = bash(STANDALONE, '2', SAMPLE_TRAIN, 'name=tiny', 'network_G.block_num=[1]',
                          'datasets.train.GT_size=16', 'datasets.train.batch_size=2',
                          'datasets.train.n_workers=1', 'train.niter=3',
                          OUTPUT_DIR=str(tmp_path), DEVICE_TARGET='CPU')
    assert code == 0, err[-2000:]
    assert 'resumed from' in log.read_text() and 'nothing to do' in log.read_text()


def test_quickstart_smoke(tmp_path):
    code, out, err = bash(os.path.join(ROOT, 'scripts', 'quickstart.sh'), OUTPUT_DIR=str(tmp_path),
                          IRN_VENV=sys.prefix, IRN_SKIP_INSTALL='1', QUICK_ITERS='2')
    assert code == 0, err[-2000:]
    run_dir = tmp_path / 'IRN_x2_quickstart'
    for name in ('train.log', 'final_G.ckpt', 'eval/report.json', 'loss_curve.png',
                 'before_after.png'):
        assert os.path.isfile(run_dir / name), name
    assert 'val (4)' in out
