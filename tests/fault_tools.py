"""Processes that tests/test_faults.py kills for real (SIGKILL) in the middle of writing a file.

    python tests/fault_tools.py train '{"nth": 2, "at_byte": 5000}' <train.py arguments>
        train.py, except that it SIGKILLs itself inside its ``nth`` training-state write, after
        ``at_byte`` bytes of the file (the bytes written so far stay on disk, as after a crash)
    python tests/fault_tools.py saves '<json spec>'
        builds a Trainer (no step is compiled) and writes training states in forked children
        that it SIGKILLs at seeded random points (half inside the file write at a random byte,
        half after a random delay: anywhere in write, sync, rename, prune); after each kill it
        checks what is on disk; prints one ``RESULT {json}`` line
"""
import builtins
import errno
import json
import os
import signal
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from src.utils.atomic import TEMP_PREFIX  # noqa: E402


class _Watched:
    """A file opened for writing whose ``write`` goes through ``on_write(file, data)``."""

    def __init__(self, f, on_write):
        self._f, self._on_write = f, on_write

    def write(self, data):
        return self._on_write(self._f, data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def patch_writes(select, on_write, setattr=setattr):
    """Send the writes of every file opened for writing whose path passes ``select(path)``
    through ``on_write(file, data)``: ``open`` and MindSpore's checkpoint writer (which holds
    its own reference to ``open``). ``setattr``: e.g. pytest's ``monkeypatch.setattr``."""
    from mindspore.train import serialization
    real_open = builtins.open

    def patched(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(m in mode for m in 'wax') \
                and select(os.path.abspath(os.fspath(file))):
            return _Watched(f, on_write)
        return f

    setattr(builtins, 'open', patched)
    setattr(serialization._ckpt_fs, 'create', patched)


def arm_kill_in_write(nth, at_byte, folder_name='checkpoints'):
    """Make the ``nth`` temporary file opened for writing in a folder called ``folder_name``
    kill the process (SIGKILL) after ``at_byte`` bytes."""
    opened, left = [0], [at_byte]

    def select(path):
        if os.path.basename(path).startswith(TEMP_PREFIX) \
                and os.path.basename(os.path.dirname(path)) == folder_name:
            opened[0] += 1
            return opened[0] == nth
        return False

    def on_write(f, data):
        if len(data) >= left[0]:
            f.write(data[:left[0]])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        left[0] -= len(data)
        return f.write(data)

    patch_writes(select, on_write)


def limit_writes(folder, nbytes, setattr=setattr):
    """Writes under ``folder`` beyond ``nbytes`` in total fail with ENOSPC (a full disk)."""
    used = [0]

    def on_write(f, data):
        if used[0] + len(data) > nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        used[0] += len(data)
        return f.write(data)

    patch_writes(lambda path: path.startswith(os.path.abspath(folder) + os.sep), on_write, setattr)


def train_child(spec, argv):
    """train.py with a kill armed inside one state write."""
    import train
    from src.utils.cli import run
    arm_kill_in_write(spec['nth'], spec['at_byte'])
    run(lambda: train.main(argv))


def fill_state(trainer, iteration):
    """Give every saved quantity a value that identifies ``iteration``."""
    trainer.iteration = iteration
    trainer.rng = np.random.default_rng(iteration)
    for k, p in enumerate(_params(trainer)):
        p.set_data(_value(p, iteration, k))


def _params(trainer):
    from src.utils.checkpoint import _grouped
    return list(_grouped(trainer.model.state_cells()).values())


def _value(p, iteration, k):
    import mindspore as ms
    return ms.Tensor(np.full(p.shape, iteration + k % 97, dtype=p.asnumpy().dtype))


def check_states(trainer):
    """Load every state on disk; returns (newest iteration or None, number of bad ones)."""
    from src.utils.checkpoint import list_train_states, load_train_state
    from src.utils.errors import IRNError
    newest, bad = None, 0
    for path in list_train_states(trainer.ckpt_dir):
        it = int(os.path.basename(path)[6:-5])
        try:
            state = load_train_state(path, trainer.model.state_cells())
        except IRNError:
            bad += 1
            continue
        rng = np.random.default_rng(it).bit_generator.state
        ok = state['iteration'] == it and state['rng'] == rng and all(
            np.array_equal(p.asnumpy(), _value(p, it, k).asnumpy())
            for k, p in enumerate(_params(trainer)))
        bad += not ok
        newest = it
    return newest, bad


def save_and_kill(trainer, at_byte=None, delay=None):
    """Save the trainer's state in a forked child killed by SIGKILL (inside the file write
    after ``at_byte`` bytes, or after ``delay`` seconds); returns True if it died first."""
    pid = os.fork()
    if pid == 0:  # the child: write, and die where told
        import faulthandler
        import logging
        faulthandler.dump_traceback_later(30, exit=True)  # a hang: its stack, exit status 1
        log = logging.getLogger('irn')
        for handler in list(log.handlers):  # the console goes through tqdm, whose lock is a
            if not isinstance(handler, logging.FileHandler):  # semaphore shared with the
                log.removeHandler(handler)  # parent: a child killed while printing keeps it
        try:
            if at_byte is not None:
                arm_kill_in_write(1, at_byte)
            trainer.save_state()
        finally:
            os._exit(0)
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
        raise RuntimeError('a forked writer hung (its stack is on stderr)')
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def saves_child(spec):
    """The fork-and-kill loop (see the module docstring)."""
    from src.config import load_config
    from src.trainer import Trainer
    from src.utils.device import setup_device
    opt = load_config(spec['config'], spec['overrides'], device_target='CPU',
                      data_path=spec['data_path'], output_dir=spec['output_dir'])
    setup_device('CPU', graph=True)
    trainer = Trainer(opt)
    rng = np.random.default_rng(spec['seed'])
    fill_state(trainer, 1)
    start = time.time()
    assert not save_and_kill(trainer)  # a complete save: its duration and size
    duration = time.time() - start
    size = os.path.getsize(trainer.save_state())
    done, killed, lost, bad, last_complete = [1], 0, 0, 0, 1
    for it in range(2, 2 + spec['kills']):
        fill_state(trainer, it)
        if it % 2:
            died = save_and_kill(trainer, at_byte=int(rng.integers(0, size)))
        else:
            died = save_and_kill(trainer, delay=float(rng.uniform(0, 1.3 * duration)))
        killed += died
        newest, bad_now = check_states(trainer)
        bad += bad_now
        if newest is None or newest < last_complete:
            lost += 1
        if newest == it:  # the rename happened before the kill: that state is complete
            last_complete = it
        if not died:
            done.append(it)
    temps = sorted(n for d in (trainer.ckpt_dir, trainer.out_dir) for n in os.listdir(d)
                   if n.startswith(TEMP_PREFIX))
    resumed = Trainer(opt, resume=True)
    left = [n for d in (trainer.ckpt_dir, trainer.out_dir) for n in os.listdir(d)
            if n.startswith(TEMP_PREFIX)]
    print('RESULT ' + json.dumps({
        'killed': killed, 'completed': len(done), 'states_lost': lost, 'bad_states': bad,
        'temp_files_left': len(temps), 'temp_files_after_restart': len(left),
        'newest': last_complete, 'resumed_at': resumed.iteration, 'write_s': duration,
        'state_bytes': size}), flush=True)


if __name__ == '__main__':
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    if mode == 'train':
        train_child(spec, sys.argv[3:])
    elif mode == 'saves':
        saves_child(spec)
    else:
        sys.exit(f'unknown mode {mode}')
