"""msrun worker for tests/test_distributed.py: several data-parallel cases in one job (one
msrun start-up), each with train.py's own set-up and loop; every rank writes what it ended with.

    dist_worker.py OUT_DIR ARG... : the train.py arguments of the first case (it also does
    train.py's device and parallel set-up); the others reuse them with overrides.

Case ``plain``: the default CPU path (oneDNN conv, plain step), then sharded and unsharded
validation of the same weights on every rank. Cases ``recompute`` and ``invertible``: the
off-CPU path (MindSpore's Conv2D, block-wise steps, the reducer after them), 2 iterations
without validation; ``invertible`` (of 3) gets a stop request on rank 1 only, during iteration 2. Also the agreement of a rank-local flag
and of a rank-local non-finite loss inside the update step.
"""
import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


def dump(trainer, path, **extra):
    """The rank's final weights (and ``extra`` arrays) as ``path``."""
    np.savez(path, **{p.name: p.asnumpy() for p in trainer.net.get_parameters()}, **extra)


def run_case(opt, rank_id, rank_size, stop_on_rank=None):
    """Train ``opt`` with the Trainer of train.py; ``stop_on_rank`` asks that rank alone to
    stop during iteration 2 (what a signal reaching one rank does)."""
    from src.trainer import Trainer
    trainer = Trainer(opt, rank_id=rank_id, rank_size=rank_size)
    if stop_on_rank == rank_id:
        fetch = trainer.fetch

        def fetch_and_signal(batch):
            if trainer.iteration == 1:
                trainer.stop_requested = True
            return fetch(batch)
        trainer.fetch = fetch_and_signal
    return trainer, trainer.run()


def step_agreement(rank):
    """The update step of a data-parallel run (reducer, check, agreement, Adam) on one
    parameter: finite gradients on both ranks, a non-finite loss on rank 1 only. Returns
    ``[applied, parameter unchanged]`` for that step and ``applied`` for a finite one."""
    import mindspore as ms
    from mindspore import nn
    from src.optim import ApplyGradients, ClippedAdam
    w = ms.Parameter(ms.Tensor(np.ones(3, np.float32)), name='w')
    adam = ClippedAdam([w])
    update = ApplyGradients(adam, nn.DistributedGradReducer(adam.params, mean=True, degree=2))
    grads = (ms.Tensor(np.full(3, 0.5, np.float32)),)
    lr = ms.Tensor(0.1, ms.float32)
    _, applied = update(grads, ms.Tensor(np.inf if rank == 1 else 1.0, ms.float32), lr)
    unchanged = bool(np.array_equal(w.asnumpy(), np.ones(3, np.float32)))
    _, finite = update(grads, ms.Tensor(1.0, ms.float32), lr)
    return [bool(applied.asnumpy()), unchanged, bool(finite.asnumpy())]


def main():
    out, argv = sys.argv[1], sys.argv[2:]
    import mindspore as ms
    from src.data.sources import ValidationSource
    from src.distributed import RanksAgree
    from src.utils.device import select_conv
    trainer = train.build_trainer(argv)  # plain, oneDNN conv
    rank, size = trainer.rank_id, trainer.rank_size
    trainer.run()
    sharded = trainer.validate()
    source = ValidationSource(trainer.opt['datasets']['val']['dataroot_GT'], trainer.opt['scale'])
    whole = trainer.model.validate(source)  # this rank alone, every image
    keys = sorted(whole)
    local = ms.Tensor(rank == 0)
    flags = [bool(RanksAgree(mode)(local).asnumpy()) for mode in ('all', 'any')]
    flags += step_agreement(rank)
    dump(trainer, os.path.join(out, f'plain_rank{rank}.npz'), flags=np.array(flags),
         sharded=np.array([sharded[k] for k in keys]), whole=np.array([whole[k] for k in keys]))

    os.environ['IRN_CONV'] = 'mindspore'
    assert select_conv('CPU') == 'mindspore'
    for mode, stop in (('recompute', None), ('invertible', 1)):
        opt = copy.deepcopy(trainer.opt)
        opt['name'], opt['train']['memory_mode'] = mode, mode
        opt['datasets']['val']['dataroot_GT'] = None  # validated above; spare the compiles
        opt['train']['niter'] = 2 if stop is None else 3
        case, result = run_case(opt, rank, size, stop)
        dump(case, os.path.join(out, f'{mode}_rank{rank}.npz'),
             iteration=np.array(result['iteration']), stopped=np.array(result['stopped']))


if __name__ == '__main__':
    main()
