"""Launch scripts: argument checks, resolved commands (DRY_RUN=1) and one real standalone run."""
import os
import re
import signal
import subprocess
import sys
import time

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


def fake_tools(tmp_path, npus=None, gpus=None):
    """A bin folder with a fake npu-smi (``npus`` devices) and / or nvidia-smi (``gpus``)."""
    folder = tmp_path / 'bin'
    folder.mkdir(parents=True, exist_ok=True)
    if npus is not None:
        (folder / 'npu-smi').write_text(
            '#!/bin/sh\n[ "$1" = info ] || exit 1\n'
            f'[ "$2" = -l ] && printf "\\tTotal Count                    : {npus}\\n\\n"\nexit 0\n')
    if gpus is not None:
        lines = ''.join(f'GPU {i}: Tesla V100 (UUID: GPU-{i})\\n' for i in range(gpus))
        (folder / 'nvidia-smi').write_text(f'#!/bin/sh\n[ "$1" = -L ] && printf "{lines}"\nexit 0\n')
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return f'{folder}:/usr/bin:/bin'


def test_standalone_command_is_absolute_and_picks_device(tmp_path):
    div2k = tmp_path / 'DIV2K'
    (div2k / 'DIV2K_train_HR').mkdir(parents=True)
    (div2k / 'DIV2K_valid_HR.lmdb').mkdir()
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
    # the device order of every launcher: npu-smi, then nvidia-smi, then CPU
    for path, device in ((fake_tools(tmp_path / 'a', npus=8, gpus=2), 'Ascend'),
                         (fake_tools(tmp_path / 'b', gpus=2), 'GPU'), ('/usr/bin:/bin', 'CPU')):
        code, out, err = bash(STANDALONE, '2', SAMPLE_TRAIN, DRY_RUN='1', PATH=path)
        assert code == 0 and out.splitlines()[0] == f'device: {device}', err
        assert '--val_path' not in out


def test_distribute_defaults(tmp_path):
    ascend = fake_tools(tmp_path / 'a', npus=4)
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, DRY_RUN='1', PATH=ascend)
    assert code == 0, err
    assert out.splitlines()[0] == 'device: Ascend x 4'  # detected and counted
    assert '--worker_num=4 --local_worker_num=4' in out and '--device_target Ascend' in out
    assert '--tail_worker_log=0 ' in out  # the console shows rank 0, not 4 interleaved streams
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, DRY_RUN='1', PATH=ascend,
                          ASCEND_RT_VISIBLE_DEVICES='0,1', TAIL_WORKER_LOG='-1')
    assert code == 0 and 'device: Ascend x 2' in out and '--tail_worker_log=-1 ' in out, err
    gpu = fake_tools(tmp_path / 'g', gpus=3)
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, DRY_RUN='1', PATH=gpu)
    assert code == 0 and out.splitlines()[0] == 'device: GPU x 3', err
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, '8', DRY_RUN='1', PATH=gpu)
    assert code == 2 and 'DEVICE_NUM 8 is more than the 3 GPU device(s)' in err
    code, out, err = bash(DISTRIBUTE, '4', SAMPLE_TRAIN, DRY_RUN='1', DEVICE_TARGET='GPU',
                          PATH='/usr/bin:/bin')
    assert code == 2 and 'no GPU device counted on this host; give DEVICE_NUM' in err
    code, out, err = bash(DISTRIBUTE, '2', SAMPLE_TRAIN, '2', 'CPU', 'name=x', DRY_RUN='1')
    assert code == 0, err
    assert 'msrun --worker_num=2' in out and '/x/train.log' in out


def test_ranktable_commands(tmp_path):
    table = tmp_path / 'rank_table.json'
    table.write_text('{"server_list": [{"device": [' + ', '.join(
        f'{{"device_id": "{i % 2}", "rank_id": "{i}"}}' for i in range(4)) + ']}]}')
    div2k = tmp_path / 'DIV2K'
    (div2k / 'DIV2K_valid_HR.lmdb').mkdir(parents=True)
    code, out, err = bash(RANKTABLE, str(table), '4', str(div2k), '2', DRY_RUN='1',
                          RANK_START='2', OUTPUT_DIR=str(tmp_path / 'out'))
    assert code == 0, err
    assert out.splitlines()[0].startswith('device: Ascend x 2, ranks 2..3 of 4')
    rank3 = next(line for line in out.splitlines() if 'RANK_ID=3' in line)
    assert rank3.startswith(f'cd {tmp_path}/out/IRN_x4/device1 && DEVICE_ID=1 RANK_ID=3 ')
    assert '--distribute' in rank3 and f'--val_path {div2k}' in rank3
    code, _, err = bash(RANKTABLE, str(table), '4', str(div2k), '2', DRY_RUN='1', RANK_START='3')
    assert code == 2 and 'ranks 3..4 exceed RANK_SIZE 4' in err


FAKE_RANK = """#!/bin/bash
pwd > "$PWD/started"
trap 'echo term > "$PWD/terminated"; exit 0' TERM
if [ "$RANK_ID" = "${FAIL_RANK:-}" ]; then sleep 1; exit 3; fi
sleep 120 & wait
"""


def start_ranks(tmp_path, **env):
    """The rank-table launcher with 2 fake ranks (a shell script as PYTHON)."""
    tmp_path.mkdir()
    fake = tmp_path / 'fake_python'
    fake.write_text(FAKE_RANK)
    fake.chmod(0o755)
    table = tmp_path / 'rank_table.json'
    table.write_text('{"rank_id": "0", "rank_id": "1"}')
    full_env = {k: v for k, v in os.environ.items() if k not in ('DEVICE_TARGET', 'DRY_RUN')}
    full_env.update(PYTHON=str(fake), OUTPUT_DIR=str(tmp_path / 'out'), **env)
    proc = subprocess.Popen(['bash', RANKTABLE, str(table), '4', SAMPLE_TRAIN, '2', 'name=rt'],
                            cwd=str(tmp_path), env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, [tmp_path / 'out' / 'rt' / f'device{i}' for i in (0, 1)]


def test_ranktable_launcher_waits_stops_the_others_and_forwards_sigterm(tmp_path):
    proc, ranks = start_ranks(tmp_path / 'a', FAIL_RANK='1')
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3, out  # the failed rank's status
    assert 'exited with status 3: stopping the others' in out
    assert [open(r / 'started').read().strip() for r in ranks] == [str(r) for r in ranks]
    assert os.path.isfile(ranks[0] / 'terminated')  # not left blocked in a collective

    proc, ranks = start_ranks(tmp_path / 'b')
    deadline = time.time() + 30
    while not all(os.path.isfile(r / 'started') for r in ranks) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert all(os.path.isfile(r / 'terminated') for r in ranks), out


def test_arrays_that_may_be_empty_expand_safely_on_old_bash():
    """bash < 4.4 with ``set -u`` aborts on "${A[@]}" of an empty array: arrays a script
    starts empty must be expanded as ${A[@]+"${A[@]}"}."""
    bad = []
    for name in sorted(os.listdir(os.path.join(ROOT, 'scripts'))):
        if name.endswith('.sh'):
            text = open(os.path.join(ROOT, 'scripts', name)).read()
            for array in sorted(set(re.findall(r'\b(\w+)=\(\)', text))):
                bare = re.findall(r'(?<!\+)"\$\{%s\[@\]\}"' % array, text)
                bad += [f'{name}: {array}'] * len(bare)
    assert not bad, bad


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
