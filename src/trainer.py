"""The training loop of every model: data, explicit noise, per-iteration lr, logging,
validation, resume.

What an iteration computes is the model's (:mod:`src.models`); the loop is shared. Everything
that decides the numbers of iteration ``i`` is a function of the saved state: the model's
weights and optimizer states, the numpy generator that draws every noise sample (its state is
checkpointed), and the data position (the pipeline is a pure function of the iteration, see
``src/data/pipeline.py``). So a run resumed from a checkpoint computes exactly what the
uninterrupted run computes.

Data parallel: every rank draws the same full-batch noise from the same generator and keeps
the rows of its own samples (rank r holds global batch rows r, r + R, ...), so R ranks do
the same arithmetic as one process on the global batch, up to the order of the gradient sum.
"""
import functools
import logging
import os
import time

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from src.config import dump_config
from src.data.pipeline import build_train_source, create_train_dataset
from src.data.sources import ValidationSource
from src.models import create_model
from src.optim import resolve_memory_mode
from src.schedule import build_lr
from src.train_log import CsvLog, ProgressBar, format_seconds, setup_train_logger
from src.utils.checkpoint import (describe_arch, list_train_states, load_train_state, load_weights,
                                  prune_train_states, save_train_state, state_path)
from src.network.fast_conv import backend as conv_backend
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
            self.rank_mean = RankMean(rank_size)
        self.model.setup_training(make_reducer)
        self.net = self.model.net
        self.optimizer = getattr(self.model, 'optimizer', None)
        self.fields = ('loss',) + tuple(self.model.loss_names) + ('grad_norm',)
        self.lrs = build_lr(t)
        self.rng = np.random.default_rng(t['manual_seed'])
        self.iteration, self.nonfinite_total, self.best = 0, 0, None
        self.stop_requested = False  # set by a signal handler: save and stop after this step
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
            self.log.info('resumed from %s at iteration %d', path, self.iteration)
        elif self.opt['path']['pretrain_model_G']:
            if not self.opt['path']['strict_load']:
                self.log.warning('path.strict_load: false is ignored, weights are always loaded '
                                 'strictly (every key, every shape)')
            load_weights(self.net, self.opt['path']['pretrain_model_G'])  # checks the arch
            self.log.info('initialised from %s', self.opt['path']['pretrain_model_G'])
        if self.iteration > self.niter:
            raise IRNError(f'resume state is at iteration {self.iteration}, beyond train.niter '
                           f'{self.niter}')

    def _state(self):
        return {'iteration': self.iteration, 'rng': self.rng.bit_generator.state,
                'nonfinite_total': self.nonfinite_total, 'best': self.best,
                'global_batch': self.global_batch, 'rank_size': self.rank_size,
                'data_position': {'iteration': self.iteration,
                                  'sample': self.iteration * self.global_batch}}

    def save_state(self):
        """Write ``checkpoints/state_<iter>.ckpt`` atomically and keep the newest K (rank 0)."""
        if not self.is_main:
            return None
        path = state_path(self.ckpt_dir, self.iteration)
        save_train_state(path, self.model.state_cells(), self._state(), self.model.arch())
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

    # ------------------------------------------------------------------ validation
    def validate(self):
        """Evaluate on ``datasets.val.dataroot_GT`` (rank 0); keep ``best_G.ckpt`` by the
        model's ``best_metric``."""
        root = self.opt['datasets']['val']['dataroot_GT']
        if not self.is_main or not root:
            return None
        start = time.time()
        source = ValidationSource(root, self.opt['scale'])
        res = self.model.validate(source)
        self.val_csv.append({'iter': self.iteration, **res})
        key = self.model.best_metric
        is_best = self.best is None or res[key] > self.best[key]
        self.log.info('val iter %d (%s | %.1fs%s', self.iteration,
                      self.model.validation_text(res, len(source)), time.time() - start,
                      ' (best)' if is_best else '')
        if is_best:
            self.best = {'iteration': self.iteration, **{k: res[k] for k in self.model.val_fields}}
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
                batch = self.fetch(next(batches))
                window['data_s'] += time.time() - t0
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
                if self.stop_requested:
                    self.log.warning('stop requested at iteration %d: saving a resumable state',
                                     self.iteration)
                    if self.iteration % lg['save_checkpoint_freq']:
                        self.save_state()
                    break
        finally:
            bar.close()
        if self.is_main:
            final = os.path.join(self.out_dir, 'final_G.ckpt')
            self.model.save_net(final)
            self.log.info('done: %d iterations in %s, %d non-finite skipped; weights %s%s',
                          self.iteration - start_iter, format_seconds(time.time() - started),
                          self.nonfinite_total, final,
                          f"; best {self.model.best_metric} {self.best[self.model.best_metric]:.4f}"
                          f" at iteration {self.best['iteration']}" if self.best else '')
        return {'iteration': self.iteration, 'best': self.best, 'stopped': self.stop_requested,
                'nonfinite_total': self.nonfinite_total}


class RankMean(nn.Cell):
    """Mean of a tensor over the data-parallel ranks (all-reduce sum / world size)."""

    def __init__(self, rank_size):
        super().__init__()
        self.all_reduce = ops.AllReduce()
        self.rank_size = rank_size

    def construct(self, x):
        return self.all_reduce(x) / self.rank_size


def _new_window(fields):
    return {**{k: [] for k in fields}, 'count': 0, 'skipped': 0, 'data_s': 0.0, 't0': time.time()}


class _NoCsv:
    """Stand-in for :class:`CsvLog` on ranks other than 0."""

    def append(self, row):
        """Ignore the row."""


logging.getLogger('irn').addHandler(logging.NullHandler())
