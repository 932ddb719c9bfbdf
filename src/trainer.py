"""The training loop of every model: data, explicit noise, per-iteration lr, logging,
validation, resume.

What an iteration computes is the model's (:mod:`src.models`); the loop is shared. Everything
that decides the numbers of iteration ``i`` is a function of the saved state: the model's
weights and optimizer states, the numpy generator that draws every noise sample (its state is
checkpointed), and the data position (the pipeline is a pure function of the iteration, see
``src/data/pipeline.py``). So a run resumed from a checkpoint computes exactly what the
uninterrupted run computes.

Faults: an unreadable training image arrives from the data workers as a ``fault`` row
(``src/data/faults.py``); the loop saves a resumable state and stops with one line naming the
image, or, with ``datasets.train.skip_bad_images``, logs and counts the images skipped. A
signal (train.py: SIGINT / SIGTERM) stops after the current step, or in the middle of a
validation, with a state saved. Every file is written atomically (``src/utils/atomic.py``), so
a kill leaves only complete states; temporary files it leaves are deleted at the next start.

Data parallel: every rank draws the same full-batch noise from the same generator and keeps
the rows of its own samples (rank r holds global batch rows r, r + R, ...), so R ranks do
the same arithmetic as one process on the global batch, up to the order of the gradient sum.
Every decision that changes what the ranks do next is agreed by all of them: whether an
update is applied (inside the step), hence the non-finite streak and the stop it can cause,
and a stop request (a signal reaches the ranks at different steps). Validation is sharded:
each rank evaluates every R-th image and the per-image metrics are gathered.
"""
import functools
import logging
import os
import signal
import time

import numpy as np
import mindspore as ms
from mindspore import nn

from src.config import dump_config
from src.data.faults import FAULT_FAILED, decode_faults
from src.data.pipeline import build_train_source, create_train_dataset
from src.data.sources import ValidationSource
from src.distributed import RankMean, RanksAgree, validate_sharded
from src.models import create_model
from src.optim import resolve_memory_mode
from src.schedule import build_lr
from src.train_log import FILE_ONLY, CsvLog, ProgressBar, format_seconds, setup_train_logger
from src.train_signals import StopRequested, Stoppable, stop_on_signals
from src.utils.checkpoint import (describe_arch, list_train_states, load_train_state,
                                  prune_train_states, save_train_state, state_path)
from src.utils.compile_cache import graph_cache
from src.network.fast_conv import backend as conv_backend
from src.utils.atomic import remove_temp_files
from src.utils.errors import IRNError

__all__ = ['Trainer', 'experiment_dir']


def experiment_dir(opt):
    """Where a run writes: ``path.root/name``."""
    return os.path.abspath(os.path.join(opt['path']['root'], opt['name']))


class Trainer:
    """Build everything a config describes and train.

    Args:
        opt (dict): parsed config (:func:`src.config.load_config`).
        resume (bool): continue from ``path.resume_state`` or the newest state in the
            experiment's ``checkpoints/`` folder (starts fresh when there is none).
        rank_id, rank_size (int): data-parallel rank and world size (0, 1 standalone).
    """

    def __init__(self, opt, resume=False, rank_id=0, rank_size=1):
        self.opt, self.rank_id, self.rank_size = opt, rank_id, rank_size
        self.is_main = rank_id == 0
        # fail on data problems before anything is built or written
        build_train_source(opt, rank_id, rank_size, start_iter=0)
        if opt['datasets']['val']['dataroot_GT']:
            ValidationSource(opt['datasets']['val']['dataroot_GT'], opt['scale'])
        self.out_dir = experiment_dir(opt)
        self.ckpt_dir = os.path.join(self.out_dir, 'checkpoints')
        self.log, self.log_path = setup_train_logger(self.out_dir, self.is_main)
        t, d = opt['train'], opt['datasets']['train']
        self.niter, self.global_batch = t['niter'], d['batch_size']
        if self.global_batch % rank_size:
            raise IRNError(f'datasets.train.batch_size ({self.global_batch}) must be a multiple '
                           f'of the number of devices ({rank_size})')
        if t['max_nonfinite'] < 1:
            raise IRNError(f"train.max_nonfinite must be >= 1, got {t['max_nonfinite']}")
        ms.set_seed(t['manual_seed'])
        self.model = create_model(opt, rank_id, rank_size)
        make_reducer = None  # params -> the gradient all-reduce of a data-parallel run
        if rank_size > 1:
            make_reducer = functools.partial(nn.DistributedGradReducer, mean=True, degree=rank_size)
            self.rank_mean, self._agree_any = RankMean(rank_size), RanksAgree('any')
        self.model.setup_training(make_reducer)
        self.net = self.model.net
        self.optimizer = getattr(self.model, 'optimizer', None)
        self.fields = ('loss',) + tuple(self.model.loss_names) + ('grad_norm',)
        self.lrs = build_lr(self.model.lr_options())
        self.rng = np.random.default_rng(t['manual_seed'])
        self.iteration, self.nonfinite_total, self.best = 0, 0, None
        self.bad_images_skipped, self._bad_seen = 0, set()
        self.stop_requested = False  # set by a signal handler: save and stop after this step
        self._saved_at = None
        if self.is_main:  # what a save killed half-way left behind
            for path in remove_temp_files(self.ckpt_dir) + remove_temp_files(self.out_dir):
                self.log.warning('removed %s, left by an interrupted save', path)
        self._resume_or_init(resume)

    # ------------------------------------------------------------------ set-up
    def _resume_or_init(self, resume):
        explicit = self.opt['path']['resume_state']
        path = explicit
        if path is None and resume:
            states = list_train_states(self.ckpt_dir)
            path = states[-1] if states else None
            if path is None:
                self.log.info('resume: no training state in %s, starting from scratch', self.ckpt_dir)
        if path is None and not resume and list_train_states(self.ckpt_dir):
            raise IRNError(f'{self.ckpt_dir}: holds training states of an earlier run; pass '
                           f'--resume to continue it or choose another --output_dir')
        if path is not None:
            state = load_train_state(path, self.model.state_cells())
            if state['global_batch'] != self.global_batch:
                raise IRNError(f"{path}: trained with datasets.train.batch_size "
                               f"{state['global_batch']}, config says {self.global_batch}")
            self.iteration = int(state['iteration'])
            self.rng.bit_generator.state = state['rng']
            self.nonfinite_total, self.best = state['nonfinite_total'], state['best']
            self.bad_images_skipped = state.get('bad_images_skipped', 0)
            self.log.info('resumed from %s at iteration %d', path, self.iteration)
        else:
            loaded = self.model.load_pretrained()  # checks the architectures
            if loaded and not self.opt['path']['strict_load']:
                self.log.warning('path.strict_load: false is ignored, weights are always loaded '
                                 'strictly (every key, every shape)')
            for path in loaded:
                self.log.info('initialised from %s', path)
        if self.iteration > self.niter:
            raise IRNError(f'resume state is at iteration {self.iteration}, beyond train.niter '
                           f'{self.niter}')

    def _state(self):
        return {'iteration': self.iteration, 'rng': self.rng.bit_generator.state,
                'nonfinite_total': self.nonfinite_total, 'best': self.best,
                'bad_images_skipped': self.bad_images_skipped,
                'global_batch': self.global_batch, 'rank_size': self.rank_size,
                'data_position': {'iteration': self.iteration,
                                  'sample': self.iteration * self.global_batch}}

    def save_state(self):
        """Write ``checkpoints/state_<iter>.ckpt`` atomically and keep the newest K (rank 0)."""
        if not self.is_main:
            return None
        path = state_path(self.ckpt_dir, self.iteration)
        try:
            save_train_state(path, self.model.state_cells(), self._state(), self.model.arch())
        except IRNError as exc:  # e.g. a full disk: the earlier states are intact
            last = list_train_states(self.ckpt_dir)
            raise type(exc)(f'{exc}; training stopped at iteration {self.iteration}, the newest '
                            f'complete state is {last[-1] if last else "none"}') from None
        self._saved_at = self.iteration
        removed = prune_train_states(self.ckpt_dir, self.opt['logger']['keep_last'])
        self.log.info('saved %s%s', path, f' (removed {len(removed)} older)' if removed else '')
        return path

    # ------------------------------------------------------------------ data & noise
    def _batches(self):
        dataset = create_train_dataset(self.opt, self.rank_id, self.rank_size,
                                       start_iter=self.iteration, total_iters=self.niter)
        self.epoch_size = dataset.irn_source.schedule.batches_per_epoch
        return dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)

    def fetch(self, batch):
        """(hr, lr_ref) numpy arrays of one batch from the pipeline (a hook for tests)."""
        return batch[0], batch[1]

    def check_data(self, faults, streak):
        """Act on the ``fault`` column of the next batch (iteration ``self.iteration + 1``).

        Skipped images are logged (each image the first time) and counted; an unreadable
        image, on any rank, saves a state (unless the last steps were non-finite) and raises
        the one-line IRNError naming it.
        """
        failed, skipped = None, []
        for _, status, message in decode_faults(faults):
            if status == FAULT_FAILED:
                failed = failed or message
            else:
                skipped.extend(message.split('\n'))
        for message in skipped:
            self.bad_images_skipped += 1
            if message not in self._bad_seen:
                self._bad_seen.add(message)
                self.log.warning('iter %d: skipped a bad training image (datasets.train.'
                                 'skip_bad_images): %s (%d skipped so far)', self.iteration + 1,
                                 message, self.bad_images_skipped)
        if self.any_rank(failed is not None) and failed is None:  # every rank stops
            failed = 'an unreadable training image on another rank (see its message)'
        if failed is None:
            return
        if streak:
            states = list_train_states(self.ckpt_dir)
            saved = f'newest good state {states[-1] if states else "none"}'
        else:
            path = self.save_state()
            saved = f'state saved: {path}' if path else 'rank 0 saved the state'
        raise IRNError(f'{failed}: training stopped before iteration {self.iteration + 1} '
                       f'({saved}); to go on, fix or remove that file and re-run the same '
                       f'command with --resume, or add datasets.train.skip_bad_images=true '
                       f'to skip unreadable images')

    def any_rank(self, flag):
        """``flag`` or'ed over the data-parallel ranks (a collective call on every rank)."""
        if self.rank_size == 1:
            return bool(flag)
        return bool(self._agree_any(ms.Tensor(bool(flag))).asnumpy())

    def stop_on_signals(self, signals=(signal.SIGINT, signal.SIGTERM)):
        """Stop after the current step (or during a validation) with a state saved on the first
        of ``signals``, at once on a second; returns the previous handlers."""
        return stop_on_signals(self, signals)

    def _step_key(self):
        """What fixes the train step's graphs, the compile cache key (src/utils/compile_cache):
        the config without the sections that only name paths, logging or validation."""
        graph_opt = {k: v for k, v in self.opt.items()
                     if k not in ('name', 'path', 'logger', 'val', 'test', 'datasets')}
        d = self.opt['datasets']['train']
        return {'graph': 'train_step', 'opt': graph_opt, 'batch': d['batch_size'],
                'GT_size': d['GT_size'], 'conv': conv_backend(), 'rank': [self.rank_id, self.rank_size]}

    # ------------------------------------------------------------------ validation
    def validate(self):
        """Evaluate on ``datasets.val.dataroot_GT``; keep ``best_G.ckpt`` by the model's
        ``best_metric`` (rank 0 logs and writes).

        Data parallel: every rank evaluates its shard of the images (for a model with
        ``validate_images``) and all ranks get the same metrics, equal to one process's. A
        model without it validates on rank 0 alone while the others wait.
        """
        root = self.opt['datasets']['val']['dataroot_GT']
        sharded = self.rank_size > 1 and self.model.shards_validation()
        if not root or not (self.is_main or sharded):
            return None
        start = time.time()
        source = ValidationSource(root, self.opt['scale'])
        if sharded:
            res = validate_sharded(self.model, source, self.rank_id, self.rank_size,
                                   self.any_rank, owner=self)
        else:
            if self.rank_size > 1 and not getattr(self, '_warned_unsharded', False):
                self._warned_unsharded = True
                self.log.warning('%s has no validate_images: rank 0 validates alone while the '
                                 'others wait in their next collective (raise HCCL_EXEC_TIMEOUT '
                                 'on Ascend if that takes long)', self.model.name)
            res = self.model.validate(Stoppable(source, self))
        key = self.model.best_metric
        is_best = self.best is None or res[key] > self.best[key]
        if is_best:
            self.best = {'iteration': self.iteration, **{k: res[k] for k in self.model.val_fields}}
        if self.is_main:
            self.val_csv.append({'iter': self.iteration, **res})
            self.log.info('val iter %d (%s | %.1fs%s', self.iteration,
                          self.model.validation_text(res, len(source)), time.time() - start,
                          ' (best)' if is_best else '')
            if is_best:
                self.model.save_net(os.path.join(self.out_dir, 'best_G.ckpt'))
        return res

    # ------------------------------------------------------------------ loop
    def _log_window(self, window, started, start_iter):
        now = time.time()
        rate = window['count'] / max(now - window['t0'], 1e-9) if window['count'] else float('nan')
        eta = (self.niter - self.iteration) / rate if rate > 0 else float('nan')
        # nan marks a term a step did not compute (IRN+'s G terms during D_init_iters)
        means = {k: float(np.nanmean(window[k])) if np.isfinite(window[k]).any() else float('nan')
                 for k in self.fields}
        losses = self.fields[:-1]
        if self.rank_size > 1:  # each rank's losses are over its own samples: average them
            local = np.array([means[k] for k in losses], np.float32)
            glob = self.rank_mean(ms.Tensor(np.nan_to_num(local))).asnumpy()
            means.update(zip(losses, map(float, glob)))
        lr = float(self.lrs[self.iteration - 1])
        data_share = 100.0 * window['data_s'] / max(now - window['t0'], 1e-9)
        terms = ' '.join(f'{k} {means[k]:.5g}' for k in losses[1:])
        self.log.info('iter %d/%d lr %.3e loss %.5g (%s) |g| %.4g | %.3f it/s, data %.0f%% | '
                      'elapsed %s ETA %s%s', self.iteration, self.niter, lr, means['loss'], terms,
                      means['grad_norm'], rate, data_share, format_seconds(now - started),
                      format_seconds(eta), f' | {window["skipped"]} skipped' if window['skipped'] else '')
        self.loss_csv.append({'iter': self.iteration, 'lr': lr, 'it_per_s': rate, **means})

    def run(self):
        """Train from ``self.iteration`` to ``train.niter``; returns a summary dict."""
        t, lg = self.opt['train'], self.opt['logger']
        start_iter = self.iteration
        if self.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            dump_config(self.opt, os.path.join(self.out_dir, 'config.yml'))
        loss_fields = ['iter', 'lr', *self.fields, 'it_per_s']
        val_fields = ['iter', *self.model.val_fields]
        self.loss_csv = CsvLog(os.path.join(self.out_dir, 'loss.csv'), loss_fields, start_iter) \
            if self.is_main else _NoCsv()
        self.val_csv = CsvLog(os.path.join(self.out_dir, 'val.csv'), val_fields, start_iter) \
            if self.is_main else _NoCsv()
        nparams = sum(p.size for p in self.net.trainable_params())
        self.log.info('%s %s, %d parameters | %d device(s), batch %d (%d per device), '
                      'GT %d | iterations %d..%d | %s, amp %s, conv %s | output %s',
                      self.model.name, describe_arch(self.net.arch()), nparams, self.rank_size,
                      self.global_batch, self.global_batch // self.rank_size,
                      self.opt['datasets']['train']['GT_size'], start_iter, self.niter,
                      resolve_memory_mode(t['memory_mode']), t['amp_level'], conv_backend(),
                      self.out_dir)
        if self.iteration >= self.niter:
            self.log.info('nothing to do: already at iteration %d of %d', self.iteration, self.niter)
            return {'iteration': self.iteration, 'best': self.best, 'stopped': False}
        bar = ProgressBar(self.niter, start_iter, self.is_main)
        window = _new_window(self.fields)
        streak, started = 0, time.time()
        batches = self._batches()
        try:
            while self.iteration < self.niter:
                t0 = time.time()
                *data, faults = next(batches)
                self.check_data(faults, streak)
                batch = self.fetch(tuple(data))
                window['data_s'] += time.time() - t0
                with graph_cache(self._step_key()):  # a re-run of the config skips compiling
                    values, applied = self.model.train_step(
                        batch, ms.Tensor(self.lrs[self.iteration], ms.float32), self.rng)
                loss, norm = values['loss'], values['grad_norm']
                self.iteration += 1
                window['count'] += 1
                if applied:
                    streak = 0
                    for key in self.fields:
                        window[key].append(values[key])
                else:
                    streak += 1
                    window['skipped'] += 1
                    self.nonfinite_total += 1
                    self.log.warning('iter %d: non-finite loss %.4g / gradient norm %.4g, update '
                                     'skipped (%d in a row, %d in total)', self.iteration, loss,
                                     norm, streak, self.nonfinite_total)
                    if streak >= t['max_nonfinite']:
                        last = list_train_states(self.ckpt_dir)
                        raise IRNError(f'training stopped at iteration {self.iteration}: '
                                       f'{streak} non-finite losses in a row (train.max_nonfinite);'
                                       f' last good checkpoint: {last[-1] if last else "none"}')
                bar.update({'loss': loss})
                if self.iteration == start_iter + 1:  # exclude graph compilation from it/s
                    self.log.info('first step (includes graph compilation): %.1fs',
                                  time.time() - window['t0'])
                    window.update(t0=time.time(), count=0, data_s=0.0)
                if self.iteration % lg['print_freq'] == 0 or self.iteration == self.niter:
                    self._log_window(window, started, start_iter)
                    window = _new_window(self.fields)
                if self.iteration % t['val_freq'] == 0 or self.iteration == self.niter:
                    try:
                        self.validate()
                    except StopRequested:
                        self.log.warning('validation at iteration %d interrupted by the stop '
                                         'request (not recorded)', self.iteration)
                    except BaseException:
                        if not streak:  # a failed validation must not cost the training done
                            self.save_state()
                        raise
                if self.iteration % lg['save_checkpoint_freq'] == 0 or self.iteration == self.niter:
                    if streak:
                        self.log.warning('iter %d: checkpoint not written during a run of '
                                         'non-finite losses', self.iteration)
                    else:
                        self.save_state()
                if self.any_rank(self.stop_requested):  # all ranks stop together
                    self.stop_requested = True
                    self.log.warning('stop requested at iteration %d: saving a resumable state',
                                     self.iteration)
                    if self._saved_at != self.iteration:
                        self.save_state()
                    break
        except IRNError as exc:  # why the run stopped, in train.log (the console prints it once)
            self.log.error('stopped: %s', exc, extra=FILE_ONLY)
            raise
        finally:
            bar.close()
        if self.is_main:
            final = os.path.join(self.out_dir, 'final_G.ckpt')
            self.model.save_net(final)
            self.log.info('done: %d iterations in %s, %d non-finite skipped%s; weights %s%s',
                          self.iteration - start_iter, format_seconds(time.time() - started),
                          self.nonfinite_total, f', {self.bad_images_skipped} bad images skipped'
                          if self.bad_images_skipped else '', final,
                          f"; best {self.model.best_metric} {self.best[self.model.best_metric]:.4f}"
                          f" at iteration {self.best['iteration']}" if self.best else '')
        return {'iteration': self.iteration, 'best': self.best, 'stopped': self.stop_requested,
                'nonfinite_total': self.nonfinite_total,
                'bad_images_skipped': self.bad_images_skipped}


def _new_window(fields):
    return {**{k: [] for k in fields}, 'count': 0, 'skipped': 0, 'data_s': 0.0, 't0': time.time()}


class _NoCsv:
    """Stand-in for :class:`CsvLog` on ranks other than 0."""

    def append(self, row):
        """Ignore the row."""


logging.getLogger('irn').addHandler(logging.NullHandler())
