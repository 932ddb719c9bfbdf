"""One IRN+ training run in its own process, for tests/test_irn_plus_train.py (each run's
graphs then do not add up in the test's memory).

    python tests/irn_plus_worker.py OUT.npz [--crash-after N] <train.py arguments>

Builds the trainer exactly as train.py does (``--resume`` included), runs it and writes every
resumable value (both nets with D's BatchNorm statistics, both Adam states, the step counter)
to OUT.npz (``{rank}`` in the name is the data-parallel rank: under msrun every rank writes). ``--crash-after N`` stops the run with exit status 3 when N iterations are done,
as a kill would (the last saved training state stays on disk).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


def main(argv):
    out, argv = argv[0], argv[1:]
    crash = None
    if argv[:1] == ['--crash-after']:
        crash, argv = int(argv[1]), argv[2:]
    trainer = train.build_trainer(argv)
    if crash is not None:
        fetch = trainer.fetch

        def crashing(batch):
            if trainer.iteration == crash:
                sys.exit(3)
            return fetch(batch)

        trainer.fetch = crashing
    trainer.run()
    np.savez(out.format(rank=trainer.rank_id), **{f'{group}.{p.name}': p.asnumpy()
                     for group, cell in trainer.model.state_cells().items()
                     for p in cell.get_parameters()})


if __name__ == '__main__':
    main(sys.argv[1:])
