"""msrun worker for tests/test_distributed.py: train.py's own set-up and loop, then every rank
dumps its final weights (train.py itself saves on rank 0 only)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


def main():
    """Build the trainer exactly as train.py does, run it, write rank<r>.npz."""
    trainer = train.build_trainer(sys.argv[1:])
    trainer.run()
    os.makedirs(trainer.out_dir, exist_ok=True)
    np.savez(os.path.join(trainer.out_dir, f'rank{trainer.rank_id}.npz'),
             **{p.name: p.asnumpy() for p in trainer.net.get_parameters()})


if __name__ == '__main__':
    main()
