"""Pack an image folder into an LMDB (BasicSR layout) for faster training reads.

Usage:
    python scripts/create_lmdb.py --input /data/DIV2K/DIV2K_train_HR \
        --output /data/DIV2K/DIV2K_train_HR.lmdb [--compress_level 1] [--recursive]

The result holds data.mdb and meta_info.txt (``0001.png (1356,2040,3) 1`` per line);
point ``datasets.train.dataroot_GT`` at it. Images are stored losslessly as PNG, so
training reads exactly the same pixels as from the folder.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.data.lmdb_io import create_lmdb  # noqa: E402
from src.utils.errors import IRNError  # noqa: E402


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of images (png/jpg/bmp/tif)")
    parser.add_argument("--output", required=True, help="new folder ending with .lmdb")
    parser.add_argument("--compress_level", type=int, default=1,
                        help="PNG compression level 0-9 (default 1, as BasicSR)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    args = parser.parse_args(argv)
    try:
        count = create_lmdb(args.input, args.output, args.compress_level, args.recursive)
    except IRNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} images to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
