"""LMDB image stores in the BasicSR and the older mmsr layouts.

Both layouts are a folder ``X.lmdb`` holding the LMDB ``data.mdb`` plus a meta file:

* **BasicSR** (written by :func:`create_lmdb` and ``scripts/create_lmdb.py``):
  ``meta_info.txt`` with one line per image, ``0001.png (1356,2040,3) 1``
  (name with extension, shape H,W,C, PNG compression level); the value under key
  ``0001`` (the name without extension) is the PNG-encoded file (BGR as OpenCV
  writes it, 8 or 16 bit, 1/3/4 channels kept as they were).
* **mmsr** (the authors' codebase): ``meta_info.pkl``, a pickled dict with ``keys``
  (list of names) and ``resolution`` (``["3_1356_2040"]`` = C_H_W, one entry per key
  or a single entry shared by all); the value is the raw ``HxWxC`` BGR uint8 array
  bytes (uint16 is recognised by its size).

:class:`LmdbImages` reads either one and returns float32 RGB in [0, 1], exactly
what :func:`src.data.io.read_image` gives for the original file.
"""

import os
import pickle
import re
import shutil
import threading

import lmdb
import numpy as np

from src.data.io import decode_raw, list_images, read_bytes, to_rgb_uint8, uint8_to_float
from src.utils.errors import IRNError

__all__ = ["is_lmdb", "LmdbImages", "create_lmdb"]

_META_LINE = re.compile(r"^(\S+)\s+\((\d+),\s*(\d+),\s*(\d+)\)(?:\s+(\d+))?\s*$")


def is_lmdb(path):
    """True if ``path`` is a folder containing an LMDB ``data.mdb``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "data.mdb"))


def _read_meta_txt(meta_path):
    """Parse a BasicSR ``meta_info.txt`` into (keys, shapes)."""
    keys, shapes = [], []
    with open(meta_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            match = _META_LINE.match(line.strip())
            if match is None:
                raise IRNError(f"{meta_path}:{lineno}: malformed line {line.strip()!r} "
                               f"(expected 'name.png (H,W,C) level')")
            keys.append(os.path.splitext(match.group(1))[0])
            shapes.append(tuple(int(match.group(i)) for i in (2, 3, 4)))
    return keys, shapes


def _read_meta_pkl(meta_path):
    """Parse an mmsr ``meta_info.pkl`` into (keys, shapes)."""
    try:
        with open(meta_path, "rb") as f:
            meta = pickle.load(f)
        keys = [str(k) for k in meta["keys"]]
        resolution = meta["resolution"]
    except Exception as exc:  # any unpickling / format problem is a corrupt meta file
        raise IRNError(f"{meta_path}: unreadable mmsr meta info ({exc})") from exc
    if isinstance(resolution, str):
        resolution = [resolution]
    if len(resolution) == 1:
        resolution = list(resolution) * len(keys)
    if len(resolution) != len(keys):
        raise IRNError(f"{meta_path}: {len(keys)} keys but {len(resolution)} resolutions")
    shapes = []
    for res in resolution:
        try:
            c, h, w = (int(v) for v in str(res).split("_"))
        except ValueError as exc:
            raise IRNError(f"{meta_path}: bad resolution {res!r} (expected 'C_H_W')") from exc
        shapes.append((h, w, c))
    return keys, shapes


# One environment per LMDB and process: py-lmdb refuses to open the same files twice in
# a process (threads included), and an environment must not cross a fork, so the cached
# environments are closed just before any fork (dataset workers) and reopened lazily.
_ENVS = {}
_ENV_LOCK = threading.Lock()


def _close_all_envs():
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


def _before_fork():
    _ENV_LOCK.acquire()
    _close_all_envs()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_ENV_LOCK.release,
                        after_in_child=_ENV_LOCK.release)


def _env(path):
    """The process's environment for ``path`` (call with ``_ENV_LOCK`` held)."""
    env = _ENVS.get(path)
    if env is None:
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as exc:
            raise IRNError(f"{path}: corrupt or unreadable LMDB ({exc})") from exc
        _ENVS[path] = env
    return env


class LmdbImages:
    """Random-access reader of an LMDB image folder (BasicSR or mmsr layout).

    Environments are opened lazily, once per process and shared by all readers of
    the same folder (safe with thread or forked-process dataset workers).
    ``names`` lists the keys in meta-file order.

    Args:
        path (str): the ``*.lmdb`` folder.

    Raises:
        IRNError: missing folder / data.mdb / meta info, or a corrupt database.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise IRNError(f"{self.path}: LMDB folder not found")
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise IRNError(f"{self.path}: not an LMDB folder (no data.mdb)")
        txt = os.path.join(self.path, "meta_info.txt")
        pkl = os.path.join(self.path, "meta_info.pkl")
        if os.path.isfile(txt):
            self.layout = "basicsr"
            self.names, self.shapes = _read_meta_txt(txt)
        elif os.path.isfile(pkl):
            self.layout = "mmsr"
            self.names, self.shapes = _read_meta_pkl(pkl)
        else:
            raise IRNError(f"{self.path}: corrupt LMDB, neither meta_info.txt nor meta_info.pkl")
        if not self.names:
            raise IRNError(f"{self.path}: LMDB meta info lists no image")
        self._key = os.path.realpath(self.path)
        with _ENV_LOCK:
            try:
                entries = _env(self._key).stat()["entries"]
            except lmdb.Error as exc:
                raise IRNError(f"{self.path}: corrupt or unreadable LMDB ({exc})") from exc
        if entries < len(self.names):
            raise IRNError(f"{self.path}: corrupt LMDB, meta info lists {len(self.names)} "
                           f"images but the database holds {entries} entries")

    def close(self):
        """Close this folder's environment in this process (it reopens on the next read)."""
        with _ENV_LOCK:
            env = _ENVS.pop(self._key, None)
            if env is not None:
                env.close()

    def __len__(self):
        return len(self.names)

    def describe(self, index):
        """``folder.lmdb:key`` for messages."""
        return f"{self.path}:{self.names[index]}"

    def read(self, index):
        """Image ``index`` as float32 HxWx3 RGB in [0, 1]."""
        return uint8_to_float(self.read_uint8(index))

    def read_uint8(self, index):
        """Image ``index`` as HxWx3 RGB uint8 (same conversions as ``read_image``)."""
        key, (h, w, c) = self.names[index], self.shapes[index]
        name = self.describe(index)
        with _ENV_LOCK:
            try:
                with _env(self._key).begin(write=False) as txn:
                    buf = txn.get(key.encode("ascii"))
            except lmdb.Error as exc:
                raise IRNError(f"{name}: corrupt LMDB entry ({exc})") from exc
        if buf is None:
            raise IRNError(f"{name}: key listed in the meta info is missing from the LMDB")
        if self.layout == "basicsr":
            img = decode_raw(buf, name)
        else:
            n = h * w * c
            if len(buf) == n:
                img = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, c)
            elif len(buf) == 2 * n:
                img = np.frombuffer(buf, dtype=np.uint16).reshape(h, w, c)
            else:
                raise IRNError(f"{name}: {len(buf)} bytes stored, expected {n} for shape "
                               f"({h},{w},{c}) (corrupt LMDB or wrong meta info)")
        if img.shape[:2] != (h, w):
            raise IRNError(f"{name}: decoded size {img.shape[:2]} differs from the meta "
                           f"info ({h},{w})")
        return to_rgb_uint8(img, name)


def create_lmdb(input_folder, output_path, compress_level=1, recursive=False, progress=True):
    """Pack an image folder into an LMDB in the BasicSR layout.

    Each file is decoded (checked for truncation) and re-encoded as PNG with
    ``compress_level``, unchanged otherwise (bit depth, channels); keys are the
    file names without extension (relative paths with ``/`` when recursive).
    The database is written to ``output_path + '.tmp'`` and renamed at the end.

    Args:
        input_folder (str): folder of images.
        output_path (str): new folder, must end with ``.lmdb`` and not exist.
        compress_level (int): PNG compression level 0-9 (BasicSR default 1).
        recursive (bool): include sub-folders.
        progress (bool): show a tqdm progress bar.

    Returns:
        int: number of images written.
    """
    import cv2
    from tqdm import tqdm

    output_path = os.fspath(output_path).rstrip("/")
    if not output_path.endswith(".lmdb"):
        raise IRNError(f"{output_path}: the LMDB output folder name must end with '.lmdb'")
    if os.path.exists(output_path):
        raise IRNError(f"{output_path}: already exists, refusing to overwrite it")
    if not 0 <= int(compress_level) <= 9:
        raise IRNError(f"compress_level must be in 0..9, got {compress_level}")
    paths = list_images(input_folder, recursive=recursive)
    keys = [os.path.splitext(os.path.relpath(p, input_folder))[0].replace(os.sep, "/")
            for p in paths]
    seen = set()
    for key, path in zip(keys, paths):
        if not key.isascii() or " " in key:
            raise IRNError(f"{path}: LMDB keys must be ASCII without spaces")
        if key in seen:
            raise IRNError(f"{path}: another image has the same name {key!r}")
        seen.add(key)
    tmp_path = output_path + ".tmp"
    if os.path.exists(tmp_path):
        shutil.rmtree(tmp_path)
    os.makedirs(tmp_path)
    env = lmdb.open(tmp_path, map_size=1 << 40)  # sparse file: grows as needed
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)]
    try:
        with open(os.path.join(tmp_path, "meta_info.txt"), "w", encoding="utf-8") as meta:
            txn = env.begin(write=True)
            for i, (key, path) in enumerate(tqdm(list(zip(keys, paths)), unit="img",
                                                 disable=not progress, desc="create_lmdb")):
                img = decode_raw(read_bytes(path), path)
                h, w = img.shape[:2]
                c = 1 if img.ndim == 2 else img.shape[2]
                ok, enc = cv2.imencode(".png", img, params)
                if not ok:
                    raise IRNError(f"{path}: could not encode the image as PNG")
                txn.put(key.encode("ascii"), enc.tobytes())
                meta.write(f"{key}.png ({h},{w},{c}) {int(compress_level)}\n")
                if (i + 1) % 500 == 0:
                    txn.commit()
                    txn = env.begin(write=True)
            txn.commit()
    except BaseException:
        env.close()
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    env.close()
    os.rename(tmp_path, output_path)
    return len(paths)
