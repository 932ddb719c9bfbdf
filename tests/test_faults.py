"""Fault injection: the promises of the README's *Faults* section, proven for every model of the
registry, with real SIGKILLs, real signals, a full disk and corrupt data.

Per model (a tiny config from ``TINY``; a model that lands adds its line there):
- a corrupt LMDB record at iteration 3: train.py saves a state and prints one line naming it;
- re-run with ``--resume datasets.train.skip_bad_images=true``, SIGKILLed inside a state write
  at a seeded random byte: the newest complete state is the one before, the temporary file is
  ignored and then removed;
- resumed three more times, stopped by SIGTERM during the first compile, during data loading and
  during the last validation: each time a resumable state;
- every state and the final weights of that interrupted chain equal an uninterrupted run's;
- states written by forked children SIGKILLed at seeded random points (inside the write, or
  anywhere in write / sync / rename / prune): no state lost, no partial file taken as a state;
- a full disk during a state save and during infer.py output; a bad file in infer.py's and
  val.py's input folders.

The summary line (``faults injected: N, states lost: 0, resumes exact: N``) is printed at the end
of the test session (tests/conftest.py).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib

import cv2
import lmdb
import numpy as np
import pytest

from conftest import DATA, ROOT
from fault_tools import limit_writes
from src.models import MODELS
from src.utils.atomic import TEMP_PREFIX
from src.utils.checkpoint import list_train_states, read_checkpoint
from src.utils.errors import IRNError, WriteError

# model -> (training config, overrides for a tiny network, infer.py mode taking HR images,
#           training patch size GT_size); '{vgg}' in an override: conftest's VGG19 file
TINY = {
    'IRN': ('src/options/train_IRN_x2.yml', ['network_G.block_num=[1]'], 'down', 32),
    'IRN-Color': ('src/options/train_IRN_color.yml', ['network_grey.block_num=[1]'], 'decolor',
                  32),
    'IRN-CRM': ('src/options/train_IRN-Compression_x2_q90.yml',
                ['network_G.block_num=[1]', 'network_R.nf=8', 'network_R.nb=1', 'network_R.gc=4',
                 f"path.pretrain_model_G={os.path.join(DATA, 'irn_crm_x2.pth')}"], 'down', 32),
    'SAIN': ('src/options/train_SAIN_JPEG_x2.yml', ['network.e_blocks=1', 'network.v_blocks=1'],
             'down', 32),
    # D (Discriminator_VGG_128, nf 64: its flatten is fixed) takes 128-159 px; D alone for 4
    # iterations, so the chain's last resume (from state 4) is the switch to G + D steps
    'IRN+': ('src/options/train_IRN+_x4.yml',
             ['network_G.block_num=[1,1]', 'train.D_init_iters=4', 'path.pretrain_model_F={vgg}',
              f"path.pretrain_model_G={os.path.join(DATA, 'irn_x4_tiny.pth')}"], 'down', 128),
}
# forked state writes SIGKILLed per model; IRN+'s states are 0.2 GB (D and its Adam moments)
KILLS = {'IRN+': 8}
COMMON = ['datasets.train.batch_size=2', 'datasets.train.n_workers=1',
          'train.niter=8', 'logger.save_checkpoint_freq=1', 'logger.keep_last=0',
          'logger.print_freq=1', 'train.val_freq=1000', 'name=run']
TALLY = {'faults': 0, 'lost': 0, 'exact': 0}
SAMPLE = os.path.join(ROOT, 'data', 'sample')


def tiny(model, request):
    """(config, overrides with the patch size, infer.py mode, patch size) of ``model``."""
    if model not in TINY:
        pytest.fail(f'{model} is registered in src/models but has no tiny config: add it to '
                    f'TINY in tests/test_faults.py')
    config, overrides, mode, patch = TINY[model]
    overrides = [o.replace('{vgg}', request.getfixturevalue('vgg_file')) if '{vgg}' in o else o
                 for o in overrides]
    return config, [f'datasets.train.GT_size={patch}', *overrides], mode, patch


def test_every_registered_model_has_a_tiny_config():
    assert sorted(TINY) == sorted(MODELS)


# ---------------------------------------------------------------- data
def _crops(folder, names, size):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        img = cv2.imread(os.path.join(SAMPLE, name))
        cv2.imwrite(os.path.join(folder, os.path.basename(name)), img[:size, :size])
    return str(folder)


def _sample_names(side, count):
    """The first ``count`` sample images (``train/x.png``, then ``val/x.png``) with both sides at
    least ``side`` px: the 112 px training crops, the 160 px validation crops for IRN+'s 128."""
    names = [f'{d}/{n}' for d in ('train', 'val')
             for n in sorted(os.listdir(os.path.join(SAMPLE, d)))]
    return [n for n in names if min(cv2.imread(os.path.join(SAMPLE, n)).shape[:2]) >= side][:count]


def _train_folder(folder, patch):
    """Two training images of at least 64 px and ``patch``."""
    side = max(64, patch)
    return _crops(folder, _sample_names(side, 2), side)


def corrupt_training_lmdb(tmp_path, config, overrides, patch):
    """5 training images (4 for a patch over 112 px) in an LMDB; 4 KB of one record overwritten
    in data.mdb (as a disk or a copy would damage it), a record first read at iteration 2..4
    (3 if possible). Returns (lmdb path, damaged key, that iteration)."""
    from src.config import load_config
    from src.data.lmdb_io import create_lmdb
    from src.data.pipeline import build_train_source
    side = max(112, patch)
    folder = _crops(tmp_path / 'train', _sample_names(side, 5), side)
    db = str(tmp_path / 'train.lmdb')
    create_lmdb(folder, db, progress=False)
    opt = load_config(config, overrides, data_path=db)
    source = build_train_source(opt)
    per, first = opt['datasets']['train']['batch_size'], {}
    for sample in range(per * opt['train']['niter']):
        first.setdefault(source.schedule.locate(sample)[2], sample // per + 1)
    bad_iter, index = min((abs(it - 3.1), it, i) for i, it in first.items())[1:]
    assert 2 <= bad_iter <= 4, first
    key = source.images.names[index]
    source.images.close()  # one environment per process and database
    env = lmdb.open(db, readonly=True, lock=False)
    with env.begin() as txn:
        value = txn.get(key.encode())
    env.close()
    raw = bytearray(open(os.path.join(db, 'data.mdb'), 'rb').read())
    start = raw.find(value[:256]) + len(value) // 3
    assert start > 0 and len(value) > 3 * 4096
    raw[start:start + 4096] = bytes(4096)
    with open(os.path.join(db, 'data.mdb'), 'wb') as f:
        f.write(raw)
    return db, key, bad_iter


# ---------------------------------------------------------------- processes
def run_py(args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def one_error_line(stderr):
    """The stderr of a failed entry point: exactly one ``error:`` line and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr[-3000:]
    return lines[0]


def trainer_for(argv):
    import train
    return train.build_trainer(argv)


def run_with_signal(trainer, arm):
    """Run ``trainer`` with train.py's signal handlers; ``arm(trainer)`` arranges a SIGTERM."""
    previous = trainer.stop_on_signals()
    try:
        arm(trainer)
        return trainer.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def sigterm_later(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def state_of(path):
    import mindspore as ms
    raw = ms.load_checkpoint(path)
    state = json.loads(str(raw.pop('irn_train_state')))
    arrays = {k: v.asnumpy() for k, v in raw.items() if hasattr(v, 'asnumpy')}
    return arrays, state


def assert_same_state(a, b):
    (wa, sa), (wb, sb) = state_of(a), state_of(b)
    assert sa == sb, (a, b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=f'{a} {k}')


def temp_files(*folders):
    return [n for d in folders if os.path.isdir(d) for n in os.listdir(d)
            if n.startswith(TEMP_PREFIX)]


# ---------------------------------------------------------------- training faults
@pytest.mark.parametrize('model', sorted(MODELS))
def test_training_faults_end_in_states_that_resume_exactly(model, tmp_path, monkeypatch,
                                                           request):
    config, overrides, _, patch = tiny(model, request)
    out = tmp_path / 'out'
    base = ['--config', config, '--device_target', 'CPU', '--output_dir', str(out), *COMMON,
            *overrides]
    db, key, bad_iter = corrupt_training_lmdb(tmp_path, config, COMMON + overrides, patch)
    base += ['--data_path', db]
    run_dir = out / 'run'
    ckpts = str(run_dir / 'checkpoints')
    skip = ['datasets.train.skip_bad_images=true']

    # 1. the corrupt record: one line naming it, a state of the iterations before it
    code, _, err = run_py(['train.py', *base])
    line = one_error_line(err)
    assert code == 2 and f'{db}:{key}: corrupt PNG data' in line, line
    assert f'before iteration {bad_iter}' in line and 'skip_bad_images=true' in line \
        and '--resume' in line, line
    assert [os.path.basename(p) for p in list_train_states(ckpts)][-1] == \
        f'state_{bad_iter - 1:08d}.ckpt'
    TALLY['faults'] += 1

    # 2. resumed skipping it, SIGKILLed inside the write of the state after the skip
    size = os.path.getsize(list_train_states(ckpts)[-1])
    at_byte = int(np.random.default_rng(zlib.crc32(model.encode())).integers(0, size))
    code, _, err = run_py(['tests/fault_tools.py', 'train', json.dumps({'nth': 2, 'at_byte': at_byte}),
                         *base, '--resume', *skip])
    assert code == -signal.SIGKILL, err[-3000:]
    assert [os.path.basename(p) for p in list_train_states(ckpts)][-1] == \
        f'state_{bad_iter:08d}.ckpt'  # the state before the kill is the newest, complete
    assert temp_files(ckpts), 'the kill should have left a partial temporary file'
    log = open(run_dir / 'train.log').read()
    assert f'iter {bad_iter}: skipped a bad training image' in log and f'{db}:{key}' in log
    TALLY['faults'] += 1

    # 3. SIGTERM during the first compile: the step finishes, a state is saved
    trainer = trainer_for(base + ['--resume'] + skip)
    assert trainer.iteration == bad_iter and not temp_files(ckpts, str(run_dir))
    step, seen = trainer.model.train_step, {}

    def signalled_step(*args):
        if not seen:
            seen['timer'] = sigterm_later(0.3)
            seen['t0'] = time.time()
        values = step(*args)
        seen.setdefault('t1', time.time())
        return values

    trainer.model.train_step = signalled_step  # this trainer only (no reference kept after it)
    result = run_with_signal(trainer, lambda t: None)
    seen['timer'].join()
    assert seen['t1'] - seen['t0'] > 0.3  # the signal came while the first step compiled
    assert result['stopped'] and result['iteration'] == bad_iter + 1
    TALLY['faults'] += 1

    # 4. SIGTERM while the data pipeline reads a sample
    from src.data.pipeline import TrainSource
    item = TrainSource.item

    def signalled_item(self, k):
        if k == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return item(self, k)

    monkeypatch.setattr(TrainSource, 'item', signalled_item)
    trainer = trainer_for(base + ['--resume'] + skip)
    result = run_with_signal(trainer, lambda t: None)
    monkeypatch.setattr(TrainSource, 'item', item)
    assert result['stopped'] and os.path.isfile(
        os.path.join(ckpts, f"state_{result['iteration']:08d}.ckpt"))
    TALLY['faults'] += 1

    # 5. SIGTERM during the last validation: not recorded, the state is saved, the run ends
    val = _crops(tmp_path / 'val', ['val/' + sorted(os.listdir(os.path.join(SAMPLE, 'val')))[0]],
                 48)
    from src.data.sources import ValidationSource
    getitem = ValidationSource.__getitem__

    def signalled_getitem(self, index):
        os.kill(os.getpid(), signal.SIGTERM)
        return getitem(self, index)

    monkeypatch.setattr(ValidationSource, '__getitem__', signalled_getitem)
    trainer = trainer_for(base + ['--resume', '--val_path', val, 'train.val_freq=8'] + skip)
    result = run_with_signal(trainer, lambda t: None)
    monkeypatch.setattr(ValidationSource, '__getitem__', getitem)
    assert result['stopped'] and result['iteration'] == 8
    assert 'validation at iteration 8 interrupted' in open(run_dir / 'train.log').read()
    TALLY['faults'] += 1

    # the interrupted chain equals one uninterrupted run, state by state
    ref = trainer_for([a.replace(str(out), str(tmp_path / 'ref')) for a in base] + skip)
    ref.run()
    ref_ckpts = str(tmp_path / 'ref' / 'run' / 'checkpoints')
    assert ref.bad_images_skipped >= 1
    for it in range(bad_iter, 9):
        assert_same_state(os.path.join(ckpts, f'state_{it:08d}.ckpt'),
                          os.path.join(ref_ckpts, f'state_{it:08d}.ckpt'))
    final, _ = read_checkpoint(str(run_dir / 'final_G.ckpt'))
    final_ref, _ = read_checkpoint(str(tmp_path / 'ref' / 'run' / 'final_G.ckpt'))
    assert all(np.array_equal(final[k], final_ref[k]) for k in final_ref)
    TALLY['exact'] += 4  # the resumes of steps 2-5


@pytest.mark.parametrize('model', sorted(MODELS))
def test_sigkill_during_state_writes_never_loses_a_state(model, tmp_path, request):
    config, overrides, _, patch = tiny(model, request)
    train = _train_folder(tmp_path / 'train', patch)
    spec = {'config': config, 'overrides': COMMON + overrides + ['logger.keep_last=3',
                                                                 'train.niter=100'],
            'data_path': train, 'output_dir': str(tmp_path / 'out'), 'kills': KILLS.get(model, 24),
            'seed': zlib.crc32(model.encode())}
    code, out, err = run_py(['tests/fault_tools.py', 'saves', json.dumps(spec)])
    assert code == 0, err[-3000:]
    res = json.loads(out.split('RESULT ', 1)[1])
    assert res['states_lost'] == 0 and res['bad_states'] == 0, res
    assert res['killed'] >= spec['kills'] // 2, res  # at least the kills inside the write
    assert res['temp_files_left'] > 0 and res['temp_files_after_restart'] == 0, res
    assert res['resumed_at'] == res['newest'], res
    TALLY['faults'] += res['killed']
    TALLY['exact'] += 1


# ---------------------------------------------------------------- full disk
@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """``make(nbytes)`` -> a folder where writing more than ``nbytes`` in total fails with
    ENOSPC: a real tmpfs when this process may mount one, else ``open`` patched for that folder."""
    mounted = []

    def make(nbytes):
        folder = tmp_path / f'disk{len(mounted)}'
        folder.mkdir()
        ok = os.geteuid() == 0 and shutil.which('mount') and subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', f'size={nbytes}', 'tmpfs', str(folder)],
            capture_output=True).returncode == 0
        if ok:
            mounted.append(folder)
        else:
            limit_writes(str(folder), nbytes, monkeypatch.setattr)
        return str(folder)

    yield make
    for folder in mounted:
        subprocess.run(['umount', '-l', str(folder)], check=False)  # lazily: logs may be open


@pytest.mark.parametrize('model', sorted(MODELS))
def test_full_disk_during_a_state_save_keeps_the_previous_state(model, tmp_path, full_disk,
                                                                request):
    from src.config import load_config
    from src.trainer import Trainer
    config, overrides, _, patch = tiny(model, request)
    train = _train_folder(tmp_path / 'train', patch)
    probe = Trainer(load_config(config, COMMON + overrides, device_target='CPU', data_path=train,
                                output_dir=str(tmp_path / 'probe')))
    size = os.path.getsize(probe.save_state())
    disk = full_disk(int(1.6 * size) + 64 * 1024)  # one state and its logs fit, two do not
    trainer = Trainer(load_config(config, COMMON + overrides + ['logger.keep_last=1'],
                                  device_target='CPU', data_path=train, output_dir=disk))
    trainer.iteration = 1
    first = trainer.save_state()
    trainer.iteration = 2
    with pytest.raises(WriteError) as info:
        trainer.save_state()
    message = str(info.value)
    assert '\n' not in message and 'state_00000002.ckpt: could not write the training state ' \
        '(No space left on device)' in message and f'newest complete state is {first}' in message
    assert list_train_states(trainer.ckpt_dir) == [first]
    assert not temp_files(trainer.ckpt_dir)
    assert Trainer(load_config(config, COMMON + overrides, device_target='CPU', data_path=train,
                               output_dir=disk), resume=True).iteration == 1
    TALLY['faults'] += 1


# ---------------------------------------------------------------- infer.py and val.py
@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, request):
    """model -> a checkpoint of the tiny network as the trainer saves it (initial weights: the
    infer / val tests need a real checkpoint, not a trained one)."""
    cache = {}

    def get(model):
        if model not in cache:
            config, overrides, _, patch = tiny(model, request)
            out = tmp_path_factory.mktemp(f'ckpt_{model}')
            train = _train_folder(out / 'train', patch)
            trainer = trainer_for(['--config', config, '--device_target', 'CPU', '--output_dir',
                                   str(out), '--data_path', train, *COMMON, *overrides])
            cache[model] = str(out / 'G.ckpt')
            trainer.model.save_net(cache[model])
        return cache[model]

    return get


BAD = 'BSD200_2_broken.png'  # sorts between the good inputs


def _inputs(folder, patch, bad_name=BAD):
    """The val sample images cropped to 40 px (half the patch if more: IRN+'s x4 LR must stay
    at least 11 px for SSIM) and a truncated PNG among them; returns the good names."""
    names = sorted(os.listdir(os.path.join(SAMPLE, 'val')))
    _crops(folder, [f'val/{n}' for n in names], max(40, patch // 2))
    good = sorted(os.listdir(folder))
    data = open(os.path.join(folder, good[0]), 'rb').read()
    with open(os.path.join(folder, bad_name), 'wb') as f:
        f.write(data[:len(data) // 2])  # a truncated PNG between the good ones
    return good


def _complete_outputs(folder):
    """The stems of the image files in ``folder``, each checked to be complete."""
    from src.data.io import read_image
    names = sorted(n for n in os.listdir(folder) if not n.startswith(TEMP_PREFIX))
    for n in names:
        read_image(os.path.join(folder, n))  # raises on a truncated file
    return [os.path.splitext(n)[0] for n in names]


@pytest.mark.parametrize('model', sorted(MODELS))
def test_infer_folder_with_a_bad_file_and_a_full_disk(model, tmp_path, checkpoints, capsys,
                                                      full_disk, request):
    from infer import main as infer_main
    _, _, mode, patch = tiny(model, request)
    ckpt, inputs = checkpoints(model), tmp_path / 'in'
    good = _inputs(inputs, patch)
    assert infer_main([mode, '--ckpt', ckpt, '--input', str(inputs), '--output',
                       str(tmp_path / 'o')]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f'{len(good)} written, 1 failed'
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and errors[0].startswith(
        f'error: {inputs / BAD}: truncated PNG file'), err
    stems = [os.path.splitext(g)[0] for g in good]
    assert _complete_outputs(tmp_path / 'o') == stems
    with pytest.raises(IRNError, match=f'{BAD}: truncated PNG'):
        infer_main([mode, '--ckpt', ckpt, '--input', str(inputs), '--output',
                    str(tmp_path / 'strict'), '--strict'])
    before = [s for s in stems if s < BAD]
    assert 0 < len(before) < len(good) and _complete_outputs(tmp_path / 'strict') == before
    TALLY['faults'] += 2

    size = max(os.path.getsize(tmp_path / 'o' / n) for n in os.listdir(tmp_path / 'o'))
    disk = full_disk(int(1.5 * size))  # the first output fits, the second does not
    with pytest.raises(WriteError, match=r'could not write the .* \(No space left on device\); '
                                         r'nothing was written under this name \(stopped: 1 '
                                         r'written, 0 failed before\)'):
        infer_main([mode, '--ckpt', ckpt, '--input', str(inputs), '--output', disk])
    assert len(_complete_outputs(disk)) == 1 and not temp_files(disk)
    TALLY['faults'] += 1


@pytest.mark.parametrize('model', sorted(MODELS))
def test_val_skips_bad_images_only_when_asked(model, tmp_path, checkpoints, capsys,
                                              request):
    from val import main as val_main
    ckpt = checkpoints(model)
    inputs = tmp_path / 'set'
    # the bad file first: the evaluation stops at once
    good = _inputs(inputs, tiny(model, request)[3], bad_name='0_broken.png')  # first: the evaluation stops at once
    with pytest.raises(IRNError, match='0_broken.png: truncated PNG'):
        val_main(['--ckpt', ckpt, '--data_path', str(inputs), '--no_progress', 'val.z_draws=1'])
    report = tmp_path / 'r.json'
    assert val_main(['--ckpt', ckpt, '--data_path', str(inputs), '--no_progress',
                     '--skip_bad_images', '--report', str(report), 'val.z_draws=1']) == 1
    out, err = capsys.readouterr()
    assert '1 unreadable image(s) skipped' in out and 'error: ' in err and '0_broken' in err
    skipped = json.load(open(report))['sets']['set']
    assert [s['name'] for s in skipped['skipped']] == ['0_broken']
    os.remove(inputs / '0_broken.png')  # the same numbers as the set without it
    val_main(['--ckpt', ckpt, '--data_path', str(inputs), '--no_progress', '--report',
              str(tmp_path / 'clean.json'), 'val.z_draws=1'])
    clean = json.load(open(tmp_path / 'clean.json'))['sets']['set']
    assert [r['name'] for r in skipped['images']] == [os.path.splitext(g)[0] for g in good]
    assert skipped['mean'] == clean['mean']
    TALLY['faults'] += 2
